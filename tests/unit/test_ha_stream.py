"""cypid.pyx.ha_stream: the HA live stream's records and the holds on producers' settlements
(ha/README.md, "The stream" and "At least once"), without brokers: a fake queue and loop."""
import pytest

from cypid.client import encode_message
from cypid.pyx.ha_stream import AllOf, PrimaryCore, ReplicatedQueue, apply_records, pack_records
from cypid.pyx.message import Message
from cypid.pyx.store_core import Pending

from cypid.ha.stream import decode_op


class FakeQueue:
    def __init__(self, name="q"):
        self.name = name
        self.enqueue_hook = self.dequeue_hook = None
        self.observe_dequeues = False
        self.messages = []

    def all_messages(self):
        return list(self.messages)

    def enqueue(self, msg):
        self.messages.append(msg)


class FakeLoop:
    def __init__(self):
        self.soon = []

    def call_soon(self, fn, *args):
        self.soon.append((fn, args))

    def run(self):
        soon, self.soon = self.soon, []
        for fn, args in soon:
            fn(*args)


class Core(PrimaryCore):
    """PrimaryCore with its sending half recorded, as ha/primary.py's Primary does it."""

    def __init__(self, senders, ready):
        self.loop = FakeLoop()
        self.senders, self.ready = senders, ready
        self.sent = []          # (queue names, records, holds)
        self.dequeues = []

    def flush(self):
        batch = self.take_enqueues()
        if batch is not None:
            self.sent.append(batch)
            self.arm(batch[2], self.ready)
        self.dequeues.extend(self.take_dequeues().items())

    def wire(self, rq, msg):
        return msg.encoded()


class Delivery:
    """What Pending.attach holds: the producer's delivery, settled on the last release."""

    def __init__(self):
        self.settled = False

    def hold(self):
        return self

    def release(self, outcome=None):
        self.settled = True


def routed(core, rq, n=1):
    """Queue n messages on rq as a producer's routing does: the hook, then hold(); each delivery."""
    out = []
    for k in range(n):
        msg = Message(encode_message(b"m%d" % k, durable=True))
        rq.queue.enqueue(msg)
        rq.enqueued(msg)
        pending = core.hold(None)
        delivery = Delivery()
        if pending is not None:
            pending.attach(delivery)
        else:
            delivery.settled = True
        out.append((msg, delivery))
    return out


def test_records_round_trip_into_the_backup_queues():
    core = Core(senders=1, ready=0)
    a, b = ReplicatedQueue(core, FakeQueue("a")), ReplicatedQueue(core, FakeQueue("b"))
    sent = routed(core, a, 2) + routed(core, b, 1)
    core.loop.run()
    (names, data, holds), = core.sent
    assert names == ["a", "b"] and holds is None
    op, fields = decode_op(data)        # the enqb stream message, as a backup reads it
    assert op == "enqb" and fields["qs"] == ["a", "b"]
    recs = fields["recs"]
    qa, qb = FakeQueue("a"), FakeQueue("b")
    ida, idb = {}, {}
    assert apply_records([(qa, ida), (qb, idb)], recs, None, None) is None     # no store: nothing to wait for
    assert sorted(ida) == [1, 2] and sorted(idb) == [1]
    assert [m.body for m in qa.messages + qb.messages] == [m.body for m, _ in sent]
    assert all(m.durable for m in qa.messages)
    skipped = FakeQueue("a")
    apply_records([(skipped, {}), None], recs, None, None)                      # queue b not replicated here
    assert len(skipped.messages) == 2


def test_snapshot_records_and_truncated_blob():
    datas = [encode_message(b"x" * k) for k in (1, 100, 1000)]
    recs = pack_records([7, 8, 9], datas)
    q, ids = FakeQueue(), {}
    apply_records([(q, ids)], recs, None, None)
    assert sorted(ids) == [7, 8, 9] and [m.body for m in q.messages] == [Message(d).body for d in datas]
    with pytest.raises(ValueError, match="truncated"):
        apply_records([(FakeQueue(), {})], recs[:-1], None, None)


def test_settled_only_when_every_ready_backup_acknowledged():
    core = Core(senders=2, ready=2)
    rq = ReplicatedQueue(core, FakeQueue())
    (msg, delivery), = routed(core, rq)
    core.loop.run()
    holds = core.sent[0][2]
    core.acknowledged(holds)
    assert not delivery.settled, "settled with one of two ready backups still to acknowledge"
    core.acknowledged(holds)
    assert delivery.settled
    assert rq.segs == []


def test_a_copy_consumed_first_is_settled_at_once_and_later_acks_do_nothing():
    core = Core(senders=1, ready=1)
    rq = ReplicatedQueue(core, FakeQueue())
    (msg, delivery), (other, waiting) = routed(core, rq, 2)
    rq.dequeued(msg)
    assert delivery.settled and not waiting.settled
    core.loop.run()
    assert core.dequeues == [(rq, [1])]
    core.acknowledged(core.sent[0][2])
    assert waiting.settled


def test_no_ready_backup_holds_nothing_and_a_catching_up_one_still_gets_the_stream():
    core = Core(senders=1, ready=0)
    rq = ReplicatedQueue(core, FakeQueue())
    (msg, delivery), = routed(core, rq)
    assert delivery.settled
    core.loop.run()
    assert len(core.sent) == 1


def test_held_until_sent_when_the_ready_backup_goes_before_the_flush():
    core = Core(senders=1, ready=1)
    rq = ReplicatedQueue(core, FakeQueue())
    (msg, delivery), = routed(core, rq)
    assert not delivery.settled
    core.ready = 0                  # gone before the turn's blob went: nobody to wait for
    core.loop.run()
    assert delivery.settled


def test_recovering_holds_every_message():
    core = Core(senders=0, ready=0)
    core.recovering = True
    rq = ReplicatedQueue(core, FakeQueue())
    (msg, delivery), = routed(core, rq)
    assert not delivery.settled and len(core.recovering_holds) == 1
    core.recovering_holds.pop().release()
    assert delivery.settled


def test_a_refused_outcome_is_returned_unheld():
    core = Core(senders=1, ready=1)
    rq = ReplicatedQueue(core, FakeQueue())
    msg = Message(encode_message(b"x"))
    rq.enqueued(msg)
    refused = object()
    assert core.hold(refused) is refused
    assert core.routed == []


class RefusingStore:
    def enqueue(self, queue, msg):
        return "journal full"


def test_backup_never_accepts_what_its_store_refused_or_failed_to_sync():
    recs = pack_records([1], [encode_message(b"x", durable=True)])
    with pytest.raises(ValueError, match="refused"):
        apply_records([(FakeQueue(), {})], recs, RefusingStore(), None)
    waits = AllOf()
    p = Pending()
    p.count = 1
    p.attach(waits)
    seen = []
    waits.start(seen.append)
    assert seen == []
    p.release("sync failed")
    assert seen == ["sync failed"]


class SyncingStore:
    """A store whose enqueue returns each message's Pending (a journal sync to come), kept here."""

    def __init__(self, failed=None):
        self.pendings = []
        self.failed = failed

    def enqueue(self, queue, msg):
        queue.enqueue(msg)
        p = Pending()
        if self.failed is None:
            p.count = 1
        else:
            p.outcome = self.failed     # its sync failed before the blob was applied
        self.pendings.append(p)
        return p


def test_backup_accepts_a_blob_once_every_record_is_synced():
    recs = pack_records([1, 2], [encode_message(b"x", durable=True), encode_message(b"y", durable=True)])
    store = SyncingStore()
    waits = apply_records([(FakeQueue(), {})], recs, store, None)
    seen = []
    waits.start(seen.append)
    store.pendings[1].release()
    assert seen == [], "accepted with one record not synced"
    store.pendings[0].release()
    assert seen == [None]
    store = SyncingStore(failed="disk gone")
    waits = apply_records([(FakeQueue(), {})], recs, store, None)
    waits.start(seen.append)
    assert seen == [None, "disk gone"]


def test_a_copy_that_leaves_before_its_producer_is_held_holds_nothing():
    core = Core(senders=1, ready=1)
    rq = ReplicatedQueue(core, FakeQueue())
    first = Message(encode_message(b"a", durable=True))
    rq.queue.enqueue(first)
    rq.enqueued(first)
    rq.dequeued(first)                  # e.g. pushed out of a ring queue while still being routed
    assert core.hold(None) is None
    core.loop.run()
    (_, later), = routed(core, rq)      # the next turn's blob: the first one still unacknowledged
    core.loop.run()
    assert not later.settled
    core.acknowledged(core.sent[1][2])     # out of order: the later blob first
    assert later.settled
    assert [s.blob for s in rq.segs] == [core.sent[0][2]]
    core.acknowledged(core.sent[0][2])
    assert rq.segs == []
