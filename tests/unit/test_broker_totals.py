"""The broker object's statistics (cypid.pyx.totals): the queues count into one shared Totals as
they go, so that a QMF query of the broker object is O(1) in the number of queues.

* a hypothesis test drives several Cython queues attached to one Totals with the queue model's
  random operations (tests/unit/test_queue_model.py: sends, consumers, settlements, purges, TTL
  sweeps, deletion): after every step the totals equal the sums over the queues (and the sums of
  the queues deleted so far, whose levels left with them);
* a broker in this process answers a query of the broker object without reading its queues.
"""
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cypid.broker.management.objects import Snapshot
from cypid.pyx import queue as cqueue
from cypid.pyx.totals import LEVELS, SUMS, Totals
from tests.support.inprocess import inprocess_broker
from tests.unit.test_queue_model import CONSUMERS, OPS, ORDERINGS, World, apply, queue_props


def expected(live, retired):
    out = dict.fromkeys(SUMS + LEVELS, 0)
    for q in live:
        for name in SUMS + LEVELS:
            out[name] += getattr(q, name)
    for q in retired:
        for name in SUMS:
            out[name] += getattr(q, name)
    return out


def test_attach_adds_what_came_before_and_detach_takes_the_levels_out():
    totals = Totals()
    w = World(cqueue.Queue, {"qpid.max_size": 0, "durable": True}, real=True)
    for i in range(3):
        w.send(i, size=100, durable=True)
    totals.attach(w.queue)
    totals.attach(w.queue)          # twice: counted once
    v = totals.values()
    assert v["msgTotalEnqueues"] == v["msgPersistEnqueues"] == v["msgDepth"] == 3
    assert v["byteDepth"] == w.queue.byteDepth > 300
    c = w.consumer(credit=1)
    w.settle(c, 0, "accept")
    assert w.queue.purge(1) == 1
    v = totals.values()
    assert (v["msgTotalDequeues"], v["msgDepth"], v["acquires"], v["discardsPurge"]) == (2, 1, 2, 1)
    totals.detach(w.queue)
    v = totals.values()
    assert v["msgDepth"] == v["byteDepth"] == 0 and v["msgTotalEnqueues"] == 3
    w.send(9)                       # a deleted queue's later traffic is its own
    assert totals.values() == v


@pytest.mark.parametrize("ordering", ORDERINGS)
def test_totals_are_the_sums_over_the_queues(ordering):
    @settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(props=st.lists(queue_props(ordering), min_size=1, max_size=3), start=CONSUMERS,
           ops=st.lists(st.tuples(st.integers(0, 2), OPS), min_size=10, max_size=40),
           delete=st.lists(st.integers(0, 2), max_size=2))
    def run(props, start, ops, delete):
        totals = Totals()
        worlds = [World(cqueue.Queue, p, real=i % 2 == 0) for i, p in enumerate(props)]
        for w in worlds:
            totals.attach(w.queue)
            for n, op in enumerate(start):
                apply(w, op, n)
        live, retired = list(worlds), []
        for n, (which, op) in enumerate(ops):
            if n == len(ops) // 2:
                for k in sorted(set(delete)):
                    w = worlds[k % len(worlds)]
                    if w in live:
                        w.delete()                  # what Nodes.delete_queue does, then the agent's event
                        totals.detach(w.queue)
                        live.remove(w)
                        retired.append(w)
            w = worlds[which % len(worlds)]
            if w in live:
                apply(w, op, n)
            assert totals.values() == expected([x.queue for x in live], [x.queue for x in retired]), (n, op)

    run()


@pytest.fixture
def broker():
    with inprocess_broker() as broker:
        yield broker


class Unreadable(dict):
    """The broker's queue registry, refusing to be walked (a look-up by name is fine)."""

    def values(self):
        raise AssertionError("the broker object read every queue")

    items = __iter__ = values


def test_a_broker_query_does_not_read_the_queues(broker):
    nodes = broker.nodes
    for i in range(20):
        queue, _ = nodes.declare_queue("q%d" % i)
        nodes.route(queue, _message(200))
    gone, _ = nodes.declare_queue("gone")
    nodes.route(gone, _message(300))
    nodes.delete_queue(gone)
    before = Snapshot(broker.management).cls_broker()[0].values
    nodes.queues = Unreadable(nodes.queues)
    (entry,) = Snapshot(broker.management).cls_broker()
    v = entry.values
    assert v == dict(before, uptime=v["uptime"])
    assert v["msgTotalEnqueues"] == 21 and v["msgTotalDequeues"] == 1 and v["msgDepth"] == 20
    assert v["byteDepth"] == sum(q.byteDepth for q in dict.values(nodes.queues)) > 0
    assert v["queueCount"] == 20


def _message(size):
    from cypid.pyx.codec import Described, encode, encode_header, ulong
    from cypid.pyx.message import Message
    return Message(encode_header(False, 4, 0, True, 0) + encode(Described(ulong(0x75), b"x" * size)))
