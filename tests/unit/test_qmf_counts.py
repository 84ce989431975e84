"""The binding and producer counts a QMF query reports, kept as bindings and links come and go, so
that a query of one queue or exchange costs O(1) in the number of queues, bindings and links
(issue 15), and a query of every queue O(queues):

* a hypothesis test drives a broker in this process through random declares, deletes, binds
  (exclusive bindings included) and unbinds, and after every step compares the counts a query
  reports, and the counters the exchanges keep on each queue, with a recount over every binding;
* a query of one queue or one exchange reads no other queue, exchange, binding or connection;
* a queue's bindingCountHigh/Low cover the period since the last publish;
* an exchange's producerCount follows producer links attaching and going.
"""
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cypid.broker import exchanges as exchanges_module
from cypid.broker.management.objects import Snapshot

from tests.support.inprocess import inprocess_broker

QUEUES = ["q0", "q1", "q2", "q3"]
EXCHANGES = ["amq.direct", "amq.topic", "amq.fanout", "amq.match", "qmf.default.direct", "x0", "x1"]
TYPES = ["direct", "topic", "fanout", "headers"]
KEYS = ["", "a", "b", "a.b", "#", "a.*"]


@pytest.fixture
def broker():
    with inprocess_broker() as broker:
        yield broker


def recount(broker):
    """Bindings per queue (the default exchange's included) and per exchange (the agent's own left
    out), counted the straightforward way: over every binding of every exchange."""
    nodes, sink = broker.nodes, broker.management.sink
    per_queue = {name: 1 for name in nodes.queues}
    per_exchange = {}
    for ex in nodes.exchanges:
        if ex is nodes.exchanges.default:
            per_exchange[ex.name] = len(nodes.queues)
            continue
        mine = [q for q, _, _ in ex.bindings if q is not sink]
        per_exchange[ex.name] = len(mine)
        for q in mine:
            per_queue[q.name] += 1
    return per_queue, per_exchange


def check(broker):
    per_queue, per_exchange = recount(broker)
    nodes, snap = broker.nodes, Snapshot(broker.management)
    for name, count in per_queue.items():
        v = snap.find("queue", name).values
        assert v["bindingCount"] == count, name
        assert v["bindingCountHigh"] >= count >= v["bindingCountLow"] >= 1, name
        assert nodes.queues[name].bindingCount == count - 1, name     # the engine's own counter
    assert {e.key: e.values["bindingCount"] for e in snap.entries("queue")} == per_queue
    for name, count in per_exchange.items():
        assert snap.find("exchange", name).values["bindingCount"] == count, name
    assert {e.key: e.values["bindingCount"] for e in snap.entries("exchange")} == per_exchange


OPS = st.one_of(
    st.tuples(st.just("declare_queue"), st.sampled_from(QUEUES)),
    st.tuples(st.just("delete_queue"), st.sampled_from(QUEUES)),
    st.tuples(st.just("declare_exchange"), st.sampled_from(EXCHANGES[-2:]), st.sampled_from(TYPES)),
    st.tuples(st.just("delete_exchange"), st.sampled_from(EXCHANGES[-2:])),
    st.tuples(st.just("bind"), st.sampled_from(EXCHANGES), st.sampled_from(QUEUES), st.sampled_from(KEYS),
              st.booleans()),
    st.tuples(st.just("unbind"), st.sampled_from(EXCHANGES), st.sampled_from(QUEUES), st.sampled_from(KEYS)),
    st.tuples(st.just("publish")),
)


def apply(broker, op):
    nodes = broker.nodes
    kind = op[0]
    if kind == "declare_queue":
        nodes.declare_queue(op[1])
    elif kind == "delete_queue":
        queue = nodes.queues.get(op[1])
        if queue is not None:
            nodes.delete_queue(queue)
    elif kind == "declare_exchange":
        if op[1] not in nodes.exchanges:
            nodes.declare_exchange(op[1], {"exchange-type": op[2]})
    elif kind == "delete_exchange":
        if op[1] in nodes.exchanges:
            nodes.delete_exchange(op[1])
    elif kind == "publish":
        broker.management.publish_data()        # a new High/Low period
    else:
        ex, queue = nodes.exchanges.get(op[1]), nodes.queues.get(op[2])
        if ex is None or queue is None:
            return
        if kind == "bind":
            args = {"qpid.exclusive-binding": True} if op[4] and ex.type == "direct" else None
            nodes.bind(ex, queue, op[3], args)
        else:
            nodes.unbind(ex, queue, op[3])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=st.lists(OPS, min_size=1, max_size=40))
def test_counts_equal_a_recount_after_every_step(ops):
    with inprocess_broker() as broker:
        for op in ops:
            apply(broker, op)
            check(broker)


class Unreadable(dict):
    """A registry that may be looked up by name but not walked."""

    def values(self):
        raise AssertionError("the query read every entry")

    items = __iter__ = values


class UnreadableSet(set):
    def __iter__(self):
        raise AssertionError("the query read every connection")


def _refuse(*args, **kwargs):
    raise AssertionError("the query walked all bindings or exchanges")


def test_a_query_of_one_object_reads_no_other(broker, monkeypatch):
    nodes = broker.nodes
    fanout, _ = nodes.declare_exchange("fan", {"exchange-type": "fanout"})
    for i in range(50):
        queue, _ = nodes.declare_queue("q%d" % i)
        nodes.bind(nodes.exchanges.get("amq.direct"), queue, "k%d" % i)
        nodes.bind(nodes.exchanges.get("amq.topic"), queue, "t.%d.#" % i)
        nodes.bind(fanout, queue, "")
    names = [("queue", "q7"), ("exchange", "amq.direct"), ("exchange", "fan"), ("exchange", ""),
             ("exchange", "qmf.default.direct"), ("exchange", "qmf.default.topic")]
    before = {n: Snapshot(broker.management).find(*n).values for n in names}
    assert before[("queue", "q7")]["bindingCount"] == 4
    assert before[("exchange", "fan")]["bindingCount"] == before[("exchange", "")]["bindingCount"] == 50
    assert before[("exchange", "qmf.default.direct")]["bindingCount"] == 0

    monkeypatch.setattr(nodes, "queues", Unreadable(nodes.queues))
    monkeypatch.setattr(broker, "connections", UnreadableSet(broker.connections))
    monkeypatch.setattr(exchanges_module.ExchangeRegistry, "__iter__", _refuse)
    for cls in (exchanges_module.Exchange, exchanges_module.DefaultExchange):
        monkeypatch.setattr(cls, "bindings", property(_refuse))
    for name in names:
        assert Snapshot(broker.management).find(*name).values == before[name], name


def test_binding_high_and_low_cover_the_period(broker):
    nodes = broker.nodes
    queue, _ = nodes.declare_queue("q")
    direct = nodes.exchanges.get("amq.direct")
    for key in ("a", "b", "c"):
        nodes.bind(direct, queue, key)
    for key in ("a", "b"):
        nodes.unbind(direct, queue, key)
    v = Snapshot(broker.management).find("queue", "q").values
    assert (v["bindingCount"], v["bindingCountHigh"], v["bindingCountLow"]) == (2, 4, 1)
    broker.management.publish_data()    # a new period starts at the current value
    v = Snapshot(broker.management).find("queue", "q").values
    assert (v["bindingCount"], v["bindingCountHigh"], v["bindingCountLow"]) == (2, 2, 2)


class ProducerLink:
    """What Nodes.resolve_target registers for a producer (an IncomingLink); only identity matters."""


def test_producer_count_follows_producers(broker):
    nodes = broker.nodes
    ex = nodes.exchanges.get("amq.topic")
    links = [ProducerLink() for _ in range(3)]
    for link in links:
        nodes.producer_attached(ex, link)
    nodes.producer_attached(nodes.exchanges.get("amq.direct"), ProducerLink())

    def producers(name):
        return Snapshot(broker.management).find("exchange", name).values["producerCount"]

    assert producers("amq.topic") == 3 and producers("amq.direct") == 1 and producers("amq.fanout") == 0
    nodes.producer_detached(ex, links[0])
    assert producers("amq.topic") == 2


def test_a_query_of_every_queue_sends_each_chunk_as_it_is_made(broker, monkeypatch):
    """A console's query of 250 queues: three replies of 100, 100 and 50 objects (the last not
    partial), each sent once its objects are made, so the agent holds at most 100 maps at a time."""
    for i in range(250):
        broker.nodes.declare_queue("q%03d" % i)
    agent = broker.management
    made, replies = [0], []
    object_map = agent.object_map

    def counting_map(cls_name, entry):
        made[0] += 1
        return object_map(cls_name, entry)

    monkeypatch.setattr(agent, "object_map", counting_map)
    monkeypatch.setattr(agent, "_reply", lambda request, opcode, body, content=None, partial=False:
                        replies.append((made[0], len(body), partial)))
    agent._query(None, {"_what": "OBJECT", "_schema_id": {"_class_name": "queue"}})
    assert replies == [(100, 100, True), (200, 100, True), (250, 50, False)]
