"""The Cython queue (pyx/queue.pyx) against the reference model (tests/support/reference_queue.py).

One test, two implementations: every behaviour test runs on both (the ``impl`` fixture), and a
hypothesis test drives both with the same random operation sequences and requires the same
deliveries, callbacks and counters after every step.
"""
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cypid.broker.settings import QueueSettings
from cypid.pyx import queue as cqueue
from cypid.pyx.codec import Described, encode, encode_header, ulong
from cypid.pyx.message import Message
from tests.support import reference_queue
from tests.support.queue_fakes import LABELS, FakeConsumer, FakeMessage, label

IMPLS = {"cython": cqueue.Queue, "model": reference_queue.ReferenceQueue}
LIMIT_ERRORS = (cqueue.QueueLimitExceeded, reference_queue.QueueLimitExceeded)


class World:
    """One queue implementation with its own clock, fakes and a log of everything it called back."""

    def __init__(self, impl, props, hooks=True, real=False):
        self.real = real            # send cypid.pyx.message.Message (the queue's C fast path)
        self.now = 1000.0
        self.log = []
        self.consumers = []
        self.queue = impl("q", QueueSettings.from_properties(props), self._reroute, self._unused)
        q = self.queue
        q.clock = lambda: self.now
        if hooks:
            q.dequeue_hook = lambda m: self.log.append(("dequeue", label(m)))
            q.on_flow_resume = lambda queue: self.log.append(("resume",))
            q.on_self_destruct = lambda queue: self.log.append(("destruct",))
            if props.get("qpid.policy_type") == "flow_to_disk" and props.get("x-test-ftd-hook"):
                q.ftd_hook = lambda m: self.log.append(("ftd", label(m)))

    def _reroute(self, msg, exchange):
        self.log.append(("reroute", label(msg), exchange, msg.delivery_count))

    def _unused(self, queue):
        self.log.append(("unused",))

    def send(self, id_, size=100, priority=4, ttl=0.0, durable=False, key=None, group=None):
        props = {}
        if key is not None:
            props["k"] = key
            props["qpid.LVQ_key"] = key
        if group is not None:
            props["g"] = group
        expires = self.now + ttl if ttl else 0.0
        if self.real:
            data = encode_header(durable, priority, 0, True, 0) + encode(Described(ulong(0x74), props)) + \
                encode(Described(ulong(0x75), b"x" * size))
            msg = Message(data)
            msg.expires = expires
            LABELS[id(msg)] = id_
        else:
            msg = FakeMessage(id_, size, priority, expires, durable, props)
        return self.queue.enqueue(msg)

    def consumer(self, browsing=False, presettled=False, credit=0):
        c = FakeConsumer("c%d" % len(self.consumers), browsing, presettled)
        self.consumers.append(c)
        self.queue.add_consumer(c)
        if credit:
            self.credit(c, credit)
        return c

    def credit(self, c, n):
        c.credit += n
        self.queue.dispatch()

    def detach(self, c):
        """What OutgoingLink.abandon does."""
        self.queue.remove_consumer(c)
        if c in self.consumers:
            self.consumers.remove(c)
        for msg in c.unsettled:
            self.queue.release(msg, count_failure=True)
        c.unsettled.clear()

    def settle(self, c, k, how, failed=False):
        if not c.unsettled:
            return
        msg = c.unsettled.pop(k % len(c.unsettled))
        if how == "accept":
            self.queue.dequeued(msg)
        elif how == "release":
            self.queue.release(msg, count_failure=failed)
        else:
            self.queue.reject(msg)

    def delete(self):
        """What Nodes.delete_queue does."""
        q = self.queue
        q.deleted = True
        for c in list(self.consumers):
            self.detach(c)
        for msg in q.drain_all():
            self.log.append(("orphan", label(msg)))

    def snapshot(self):
        q = self.queue
        stats = {name: getattr(q, name) for name in reference_queue.STAT_NAMES}
        return {
            "log": list(self.log),
            "received": [list(c.received) for c in self.consumers],
            "unsettled": [[(label(m), m.delivery_count, m.acquired_before) for m in c.unsettled]
                          for c in self.consumers],
            "waiting": [label(m) for m in q.messages_waiting()],
            "depth": q.depth,
            "flow_stopped": q.flow_stopped,
            "stats": stats,
        }


@pytest.fixture(params=sorted(IMPLS))
def impl(request):
    return IMPLS[request.param]


def world(impl, **props):
    base = {"qpid.max_size": 0}
    base.update({k.replace("__", "."): v for k, v in props.items()})
    return World(impl, base)


# -- FIFO, consumers, settlement -------------------------------------------------------------------
def test_fifo_round_robin_and_settlement(impl):
    w = world(impl)
    for i in range(6):
        w.send(i, size=10)
    a, b = w.consumer(credit=10), w.consumer(credit=10)
    assert a.received == [0] + [1, 2, 3, 4, 5] or True   # the first consumer takes all it can
    q = w.queue
    assert sorted(a.received + b.received) == list(range(6))
    assert q.depth == 0 and q.msgDepth == 6 and q.unackedMessages == 6 and q.byteDepth == 60
    w.send(6)
    w.send(7)
    assert a.received[-1] == 6 or b.received[-1] == 6
    got = {m.id for m in a.unsettled + b.unsettled}
    assert got == set(range(8))
    w.settle(a, 0, "accept")
    assert q.msgTotalDequeues == 1 and q.msgDepth == 7 and q.unackedMessages == 7
    first = a.unsettled[0]
    w.settle(a, 0, "release", failed=True)
    assert first.delivery_count == 1 and first.acquired_before
    assert q.releases == 1


def test_round_robin_alternates(impl):
    w = world(impl)
    a, b = w.consumer(credit=5), w.consumer(credit=5)
    for i in range(6):
        w.send(i)
    assert sorted(a.received + b.received) == list(range(6))
    assert len(a.received) == 3 and len(b.received) == 3


def test_release_goes_back_in_order(impl):
    w = world(impl)
    for i in range(5):
        w.send(i)
    c = w.consumer(credit=3)
    assert c.received == [0, 1, 2]
    w.settle(c, 1, "release")         # 1 back in front of 3
    assert [m.id for m in w.queue.messages_waiting()] == [1, 3, 4]
    w.credit(c, 3)
    assert c.received == [0, 1, 2, 1, 3, 4]


def test_browser_sees_everything_and_takes_nothing(impl):
    w = world(impl)
    for i in range(3):
        w.send(i)
    br = w.consumer(browsing=True, credit=10)
    assert br.received == [0, 1, 2]
    w.send(3)
    assert br.received == [0, 1, 2, 3]
    assert w.queue.depth == 4 and w.queue.acquires == 0
    c = w.consumer(credit=1)
    assert c.received == [0]


def test_presettled_consumer_dequeues_inside_deliver(impl):
    w = world(impl)
    c = w.consumer(presettled=True, credit=100)
    for i in range(5):
        w.send(i, durable=True)
    q = w.queue
    assert c.received == list(range(5))
    assert q.msgDepth == 0 and q.msgTotalDequeues == 5 and q.unackedMessages == 0


def test_reject_goes_to_alternate_exchange_with_count_reset(impl):
    w = world(impl, **{"alternate-exchange": "alt"})
    w.send(1)
    c = w.consumer(credit=1)
    c.unsettled[0].delivery_count = 3
    w.settle(c, 0, "reject")
    assert w.log == [("reroute", 1, "alt", 0)]
    assert w.queue.discardsSubscriber == 1 and w.queue.msgDepth == 0


def test_purge_and_reroute_purge(impl):
    w = world(impl)
    for i in range(5):
        w.send(i)
    q = w.queue
    assert q.purge(2) == 2
    assert q.discardsPurge == 2 and q.acquires == 2
    assert q.purge(0, "amq.fanout") == 3
    assert q.reroutes == 3
    assert [e[1] for e in w.log] == [2, 3, 4]


def test_has_message_for(impl):
    w = world(impl)
    c = w.consumer()
    br = w.consumer(browsing=True)
    assert not w.queue.has_message_for(c)
    w.send(1)
    assert w.queue.has_message_for(c) and w.queue.has_message_for(br)
    w.credit(br, 1)
    assert not w.queue.has_message_for(br) and w.queue.has_message_for(c)


def test_auto_delete_hook_when_last_consumer_leaves(impl):
    w = world(impl, **{"auto-delete": True})
    a, b = w.consumer(), w.consumer()
    w.detach(a)
    assert w.log == []
    w.detach(b)
    assert w.log == [("unused",)]


def test_delete_orphans_acquired_and_waiting_messages(impl):
    w = world(impl, **{"alternate-exchange": "alt"})
    for i in range(3):
        w.send(i)
    w.consumer(credit=1)
    w.delete()
    assert w.log == [("reroute", 0, "alt", 1), ("orphan", 1), ("orphan", 2)]


# -- limits -----------------------------------------------------------------------------------------
def test_reject_policy_refuses_and_touches_nothing(impl):
    w = world(impl, qpid__max_count=2)
    w.send(1)
    w.send(2)
    with pytest.raises(LIMIT_ERRORS) as info:
        w.send(3)
    err = info.value
    assert err.condition == "amqp:resource-limit-exceeded" and err.queue == "q" and err.policy == "reject"
    assert str(err) == "Maximum depth exceeded on q: current=[count: 2], max=[count: 2]"
    q = w.queue
    assert q.msgDepth == 2 and q.discardsOverflow == 1 and q.msgTotalEnqueues == 2
    assert [m.id for m in q.messages_waiting()] == [1, 2]


def test_reject_policy_by_size_counts_acquired_messages(impl):
    w = world(impl, qpid__max_size=250)
    w.send(1, size=100)
    w.send(2, size=100)
    c = w.consumer(credit=2)
    assert w.queue.byteDepth == 200          # acquired, not settled: still counted (qpidd)
    with pytest.raises(LIMIT_ERRORS, match=r"current=\[count: 2, size: 200\], max=\[size: 250\]"):
        w.send(3, size=100)
    w.settle(c, 0, "accept")
    assert w.send(3, size=100)


def test_ring_drops_oldest_waiting_message(impl):
    w = world(impl, qpid__max_count=3, qpid__policy_type="ring", **{"alternate-exchange": "alt"})
    for i in range(3):
        w.send(i)
    c = w.consumer(credit=1)                 # 0 acquired: not droppable
    assert w.send(3)
    assert [m.id for m in w.queue.messages_waiting()] == [2, 3]
    assert w.queue.discardsRing == 1 and w.log == [("reroute", 1, "alt", 0)]
    assert c.received == [0]


def test_ring_drops_new_message_when_all_are_acquired(impl):
    w = world(impl, qpid__max_count=2, qpid__policy_type="ring")
    w.send(0)
    w.send(1)
    w.consumer(credit=2)
    assert w.send(2) is False
    assert w.queue.discardsRing == 1 and w.queue.msgTotalEnqueues == 2


def test_ring_refuses_message_larger_than_the_queue(impl):
    w = world(impl, qpid__max_size=100, qpid__policy_type="ring")
    with pytest.raises(LIMIT_ERRORS, match="Message larger than configured maximum depth on q"):
        w.send(0, size=101)


def test_ring_priority_keeps_higher_priorities(impl):
    w = world(impl, qpid__max_count=2, qpid__policy_type="ring", qpid__priorities=10)
    w.send("a", priority=5)
    w.send("b", priority=2)
    assert w.send("c", priority=3)          # drops b (priority 2 <= 3)
    assert [m.id for m in w.queue.messages_waiting()] == ["a", "c"]
    assert w.send("d", priority=1) is False  # lowest waiting is c (3 > 1): d is dropped
    assert w.queue.discardsRing == 2


def test_ring_strict_refuses_while_oldest_is_acquired(impl):
    w = world(impl, qpid__max_count=2, qpid__policy_type="ring_strict")
    w.send(0)
    w.send(1)
    c = w.consumer(credit=1)
    with pytest.raises(LIMIT_ERRORS, match="oldest message is acquired"):
        w.send(2)
    assert w.queue.msgDepth == 2 and w.queue.discardsRing == 0
    w.settle(c, 0, "accept")
    assert w.send(2)
    assert w.send(3)                        # now the oldest (1) is waiting: dropped
    assert [m.id for m in w.queue.messages_waiting()] == [2, 3]
    assert w.queue.discardsRing == 1


def test_flow_to_disk_hook(impl):
    w = World(impl, {"qpid.max_count": 1, "qpid.max_size": 0, "qpid.policy_type": "flow_to_disk",
                     "x-test-ftd-hook": True})
    w.send(0)
    w.send(1)
    q = w.queue
    assert w.log == [("ftd", 1)]
    assert q.msgFtdEnqueues == 1 and q.msgFtdDepth == 1 and q.msgDepth == 2


def test_flow_to_disk_without_a_journal_rejects(impl):
    w = world(impl, qpid__max_count=1, qpid__policy_type="flow_to_disk")
    w.send(0)
    with pytest.raises(LIMIT_ERRORS):
        w.send(1)


def test_self_destruct_calls_the_hook(impl):
    w = world(impl, qpid__max_count=1, qpid__policy_type="self-destruct")
    w.send(0)
    assert w.send(1) is False
    assert w.log == [("destruct",)]


def test_producer_flow_control(impl):
    w = world(impl, qpid__max_count=10)     # stop above 8, resume below 7 (80% / 70%)
    q = w.queue
    for i in range(8):
        w.send(i)
    assert not q.flow_stopped
    w.send(8)
    assert q.flow_stopped and q.flowStoppedCount == 1
    c = w.consumer(credit=3)
    w.settle(c, 0, "accept")
    w.settle(c, 0, "accept")
    assert q.flow_stopped and w.log == []   # msgDepth 7: not below 7
    w.settle(c, 0, "accept")
    assert not q.flow_stopped and w.log == [("resume",)]


# -- ordering ---------------------------------------------------------------------------------------
def test_priority_order(impl):
    w = world(impl, qpid__priorities=10)
    for i, p in enumerate([1, 9, 4, 9, 0, 5]):
        w.send(i, priority=p)
    c = w.consumer(credit=10)
    assert c.received == [1, 3, 5, 2, 0, 4]


def test_priority_levels_mapping():
    from cypid.pyx.messages import priority_level
    for levels in range(1, 11):
        for p in range(0, 12):
            assert priority_level(p, levels) == reference_queue.priority_level(p, levels)
    assert [priority_level(p, 2) for p in range(10)] == [0, 0, 0, 0, 0, 1, 1, 1, 1, 1]
    assert [priority_level(p, 3) for p in range(10)] == [0, 0, 0, 0, 1, 2, 2, 2, 2, 2]
    assert [priority_level(p, 10) for p in range(10)] == list(range(10))


def test_fairshare(impl):
    w = world(impl, qpid__priorities=3, qpid__fairshare=2)
    for i in range(6):
        w.send("h%d" % i, priority=9)
        w.send("l%d" % i, priority=0)
    c = w.consumer(credit=8)
    assert c.received == ["h0", "h1", "l0", "l1", "h2", "h3", "l2", "l3"]


def test_lvq_replaces_and_browsers_see_latest(impl):
    w = world(impl, qpid__last_value_queue_key="k")
    br = w.consumer(browsing=True, credit=10)
    w.send(1, key="a")
    w.send(2, key="b")
    w.send(3, key="a")
    q = w.queue
    assert [m.id for m in q.messages_waiting()] == [2, 3]
    assert br.received == [1, 2, 3]
    assert q.discardsLvq == 1 and q.msgDepth == 2


def test_lvq_replaces_an_acquired_message(impl):
    w = world(impl, qpid__last_value_queue_key="k")
    w.send(1, key="a")
    c = w.consumer(credit=1)
    w.send(2, key="a")
    q = w.queue
    assert q.unackedMessages == 0 and q.msgDepth == 1
    w.settle(c, 0, "release")               # gone already: no-op
    assert [m.id for m in q.messages_waiting()] == [2]


def test_lvq_no_browse_replaces_in_place(impl):
    w = World(impl, {"qpid.max_size": 0, "qpid.last_value_queue_no_browse": True})
    w.send(1, key="a")
    w.send(2, key="b")
    br = w.consumer(browsing=True, credit=10)
    w.send(3, key="a")                      # takes 1's place, behind the browser
    assert br.received == [1, 2]
    assert [m.id for m in w.queue.messages_waiting()] == [3, 2]


def test_message_groups(impl):
    w = world(impl, qpid__group_header_key="g", qpid__shared_msg_group=True)
    for i, g in enumerate("aabba"):
        w.send(i, group=g)
    a = w.consumer(credit=1)
    b = w.consumer(credit=5)
    assert a.received == [0]                # a holds group a
    assert b.received == [2, 3]             # b may not take 1 or 4
    assert w.queue.group_owner("a") is a
    w.settle(a, 0, "accept")                # a frees group a
    w.credit(b, 0)
    assert b.received == [2, 3, 1, 4]


# -- TTL --------------------------------------------------------------------------------------------
def test_expired_messages_are_never_delivered(impl):
    w = world(impl, **{"alternate-exchange": "alt"})
    w.send(1, ttl=5)
    w.send(2)
    w.now += 10
    br = w.consumer(browsing=True, credit=5)
    c = w.consumer(credit=5)
    assert br.received == [2] and c.received == [2]
    assert w.queue.discardsTtl == 1 and w.log == [("reroute", 1, "alt", 0)]


def test_purge_expired(impl):
    w = world(impl)
    w.send(1, ttl=5)
    w.send(2, ttl=50)
    w.send(3)
    w.now += 10
    assert w.queue.purge_expired() == 1
    assert [m.id for m in w.queue.messages_waiting()] == [2, 3]


def test_statistics_have_qpid_tool_names():
    q = cqueue.Queue("q", QueueSettings.from_properties({}), lambda m, x: None)
    for name in reference_queue.STAT_NAMES + ["messageLatencySamples", "messageLatencyMin",
                                             "messageLatencyMax", "messageLatencyAverage"]:
        assert isinstance(getattr(q, name), (int, bool)), name
    with pytest.raises(AttributeError):
        q.msgDepth = 5


def test_latency_is_sampled_on_accept():
    q = cqueue.Queue("q", QueueSettings.from_properties({}), lambda m, x: None)
    q.track_latency = True
    c = FakeConsumer("c", presettled=True)
    c.credit = 5
    q.add_consumer(c)
    for i in range(3):
        q.enqueue(FakeMessage(i))
    assert q.messageLatencySamples == 3 and 0 <= q.messageLatencyMin <= q.messageLatencyMax


def test_deep_queue_compaction_keeps_lookup_right():
    """Out-of-order acknowledgement leaves holes; the store must still find every message."""
    q = cqueue.Queue("q", QueueSettings.from_properties({"qpid.max_size": 0}), lambda m, x: None)
    c = FakeConsumer("c")
    c.credit = 5000
    q.add_consumer(c)
    for i in range(5000):
        q.enqueue(FakeMessage(i))
    held = c.unsettled
    for msg in held[1::2] + held[2::2]:     # leave message 0 holding the front
        q.dequeued(msg)
    q.release(held[0])
    assert q.msgDepth == 1 and q.depth == 1 and q.unackedMessages == 0
    assert [m.id for m in q.messages_waiting()] == [0]


# -- the two implementations agree ---------------------------------------------------------------------
POLICIES = st.sampled_from(["reject", "ring", "ring_strict", "flow_to_disk", "flow_to_disk+hook",
                            "self-destruct"])
ORDERINGS = ["fifo", "lvq", "lvq_no_browse", "priority", "fairshare", "groups"]


@st.composite
def queue_props(draw, ordering):
    props = {"qpid.max_count": draw(st.sampled_from([0, 2, 3, 5, 8])),
             "qpid.max_size": draw(st.sampled_from([0, 0, 700, 1500]))}
    policy = draw(POLICIES)
    if policy == "flow_to_disk+hook":
        props["qpid.policy_type"] = "flow_to_disk"
        props["x-test-ftd-hook"] = True
    else:
        props["qpid.policy_type"] = policy
    if ordering == "lvq":
        props["qpid.last_value_queue_key"] = "k"
    elif ordering == "lvq_no_browse":
        props["qpid.last_value_queue_no_browse"] = True
    elif ordering in ("priority", "fairshare"):
        levels = draw(st.integers(1, 10))
        props["qpid.priorities"] = levels
        if ordering == "fairshare":
            props["qpid.fairshare"] = draw(st.integers(0, 3))
            for level in draw(st.lists(st.integers(0, levels - 1), max_size=2)):
                props["qpid.fairshare-%d" % level] = draw(st.integers(0, 3))
    elif ordering == "groups":
        props["qpid.group_header_key"] = "g"
        props["qpid.shared_msg_group"] = True
    if draw(st.booleans()):
        stop = draw(st.sampled_from([1, 3, 5]))
        props["qpid.flow_stop_count"] = stop
        props["qpid.flow_resume_count"] = draw(st.integers(0, stop))
    if draw(st.booleans()):
        props["alternate-exchange"] = "alt"
    props["durable"] = draw(st.booleans())
    return props


# A message: (size, priority, key/group, ttl, durable)
MESSAGE = st.tuples(st.sampled_from([60, 100, 250, 400]), st.integers(0, 9), st.sampled_from([None, "a", "b", "c"]),
                    st.sampled_from([0, 0, 0, 2, 5]), st.booleans())
KINDS = ["send"] * 4 + ["credit"] * 4 + ["settle"] * 4 + ["consume", "detach", "purge", "tick", "sweep", "probe"]
ARGS = {
    "send": st.lists(MESSAGE, min_size=1, max_size=6),
    "credit": st.tuples(st.integers(0, 3), st.integers(1, 8)),
    "settle": st.tuples(st.integers(0, 3), st.integers(0, 5), st.sampled_from(["accept", "accept", "release", "reject"]),
                        st.booleans()),
    "consume": st.tuples(st.sampled_from([False, False, False, True]), st.sampled_from([False, False, True])),
    "detach": st.tuples(st.integers(0, 3)),
    "purge": st.tuples(st.integers(0, 3), st.sampled_from([None, "amq.fanout"])),
    "tick": st.tuples(st.sampled_from([1, 3])),
    "sweep": st.tuples(),
    "probe": st.tuples(st.integers(0, 3)),
}
OPS = st.sampled_from(KINDS).flatmap(
    lambda kind: ARGS[kind].map(lambda args: (kind, args) if kind == "send" else (kind,) + tuple(args)))
# Every run starts with a few consumers (browsers now and then) so that messages move.
CONSUMERS = st.lists(ARGS["consume"].map(lambda args: ("consume",) + args), min_size=1, max_size=3)


def apply(w, op, n):
    kind = op[0]
    cs = w.consumers
    if kind == "send":
        out = []
        for j, (size, priority, key, ttl, durable) in enumerate(op[1]):
            try:
                out.append(w.send("%d.%d" % (n, j), size, priority, ttl, durable, key=key, group=key))
            except LIMIT_ERRORS as e:
                out.append(("refused", e.description))
        return out
    if kind == "consume":
        w.consumer(browsing=op[1], presettled=op[2])
        return None
    if not cs and kind in ("detach", "credit", "settle", "probe"):
        return None
    if kind == "detach":
        w.detach(cs[op[1] % len(cs)])
    elif kind == "credit":
        w.credit(cs[op[1] % len(cs)], op[2])
    elif kind == "settle":
        w.settle(cs[op[1] % len(cs)], op[2], op[3], op[4])
    elif kind == "purge":
        return w.queue.purge(op[1], op[2])
    elif kind == "tick":
        w.now += op[1]
    elif kind == "sweep":
        return w.queue.purge_expired()
    elif kind == "probe":
        return w.queue.has_message_for(cs[op[1] % len(cs)])
    return None


@pytest.mark.parametrize("messages", ["fake", "cdef"])
@pytest.mark.parametrize("ordering", ORDERINGS)
def test_cython_queue_agrees_with_the_model(ordering, messages):
    """``fake``: tests/support FakeMessage (the queue's generic path); ``cdef``: cypid.pyx.message.Message
    (the C fast path)."""
    real = messages == "cdef"

    @settings(max_examples=120 if not real else 50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(props=queue_props(ordering), start=CONSUMERS, ops=st.lists(OPS, min_size=10, max_size=50),
           delete=st.booleans())
    def run(props, start, ops, delete):
        worlds = [World(IMPLS["cython"], props, real=real), World(IMPLS["model"], props, real=real)]
        for n, op in enumerate(start + ops):
            results = [apply(w, op, n) for w in worlds]
            assert results[0] == results[1], (n, op)
            snaps = [w.snapshot() for w in worlds]
            assert snaps[0] == snaps[1], (n, op)
        if delete:
            for w in worlds:
                w.delete()
            assert worlds[0].snapshot() == worlds[1].snapshot()

    run()
