"""broker/store.py and broker/config_store.py in process: Nodes on a real Store, the Cython queue and
message, an asyncio loop, and fake producer deliveries (the engine's hold/release interface) that
record how they are settled.

Covers what the broker-process tests reach only by chance: a message routed to several durable
queues (settled once every journal synced, refused everywhere if one journal is full), the records
of flowed-to-disk messages leaving with them (expiry), queues deleted with producers waiting, the
config store's rows, and reopening a store.
"""
import asyncio
import logging
import types

import pytest

from cypid.broker.acl import Authorizer
from cypid.broker.config_store import ConfigStore, journal_dirname
from cypid.broker.management import NO_EVENTS
from cypid.broker.nodes import Nodes
from cypid.broker.options import Options
from cypid.broker.store import Pending
from cypid.pyx.codec import Described, encode, encode_header, ulong
from cypid.pyx.message import Message


def make_message(body, durable=True, ttl=0, to=None):
    data = encode_header(durable, 4, ttl, False, 0) + encode(Described(ulong(0x77), body))
    return Message(data)


class FakeDelivery:
    """cypid.pyx.engine.Delivery's hold interface: settled (recorded) when the last hold is released."""

    def __init__(self, session, did):
        self.session = session
        self.id = did
        self.holds = 0
        self.outcome = None

    def hold(self):
        self.holds += 1
        return self

    def release(self, outcome=None):
        assert self.holds > 0
        if outcome is not None:
            self.outcome = outcome
        self.holds -= 1
        if self.holds == 0:
            self.session.settle_incoming(self.id, self.outcome)


class FakeSession:
    def __init__(self):
        self.settled = {}

    def settle_incoming(self, did, outcome):
        assert did not in self.settled
        self.settled[did] = outcome


class Harness:
    def __init__(self, path):
        self.loop = asyncio.new_event_loop()
        self.path = path
        self.nodes = None
        self.open()

    def open(self):
        options, log = Options(data_dir=str(self.path)), logging.getLogger("cypid.test.store")
        broker = types.SimpleNamespace(loop=self.loop, log=log, options=options, events=NO_EVENTS,
                                       acl=Authorizer(options, log))
        self.nodes = Nodes(broker)
        self.nodes.open_store()
        return self.nodes

    def reopen(self):
        self.nodes.close_store()
        return self.open()

    def run_until(self, predicate, timeout=10):
        async def wait():
            while not predicate():
                await asyncio.sleep(0.001)  # poll
        self.loop.run_until_complete(asyncio.wait_for(wait(), timeout))

    def close(self):
        self.nodes.close_store()
        self.loop.close()


@pytest.fixture
def h(tmp_path):
    harness = Harness(tmp_path / "data")
    yield harness
    harness.close()


def send(h, node, msg, session, did):
    outcome = h.nodes.route(node, msg)
    if outcome.__class__ is Pending:
        delivery = FakeDelivery(session, did)
        outcome.attach(delivery)
        if not delivery.holds:
            session.settle_incoming(did, delivery.outcome)
    else:
        session.settle_incoming(did, outcome)
    return outcome


def bodies(queue):
    return [m.application_properties() or m.body for m in queue.messages_waiting()]


def test_fanout_to_durable_queues_settles_after_every_sync(h):
    nodes = h.nodes
    q1, _ = nodes.declare_queue("q1", {"durable": True})
    q2, _ = nodes.declare_queue("q2", {"durable": True})
    q3, _ = nodes.declare_queue("q3", {})
    ex, _ = nodes.declare_exchange("fan", {"exchange-type": "fanout", "durable": True})
    for q in (q1, q2, q3):
        nodes.bind(ex, q, "")
    session = FakeSession()
    outcome = send(h, ex, make_message(b"hello"), session, 7)
    assert isinstance(outcome, Pending) and outcome.count == 2
    assert session.settled == {}                   # nothing before the syncs
    h.run_until(lambda: 7 in session.settled)
    assert session.settled == {7: None}            # accepted
    assert [q.depth for q in (q1, q2, q3)] == [1, 1, 1]

    nodes = h.reopen()
    assert sorted(nodes.queues) == ["q1", "q2"]
    assert [nodes.queues[n].depth for n in ("q1", "q2")] == [1, 1]
    fan = nodes.exchanges.get("fan")
    assert fan.durable and sorted(q.name for q in fan.bound_queues()) == ["q1", "q2"]


def test_full_journal_refuses_the_message_everywhere(h):
    nodes = h.nodes
    big, _ = nodes.declare_queue("big", {"durable": True})
    tiny, _ = nodes.declare_queue("tiny", {"durable": True, "qpid.file_count": 3, "qpid.file_size": 1,
                                           "qpid.journal_max_size": 1})
    ex, _ = nodes.declare_exchange("fan", {"exchange-type": "fanout"})
    nodes.bind(ex, big, "")
    nodes.bind(ex, tiny, "")
    session = FakeSession()
    body = b"x" * 20000
    did = 0
    while True:
        outcome = send(h, ex, make_message(body), session, did)
        if outcome.__class__ is not Pending:
            break
        did += 1
    # a 1 MiB journal: 15 files of 64 KiB (+ header page), 13 of them for live records
    assert did == 13 * 65536 // 20064
    cond = outcome.value[0].value
    assert cond[0] == "amqp:resource-limit-exceeded" and "'tiny'" in cond[1] and "limit" in cond[1]
    assert big.msgDepth == tiny.msgDepth == did    # the refused one is in neither
    assert len(h.nodes.store.journals[big].journal) == did
    h.run_until(lambda: len(session.settled) == did + 1)
    assert big.depth == tiny.depth == did          # visible once synced
    assert [session.settled[i] for i in range(3)] == [None] * 3


def test_flowed_to_disk_records_leave_with_their_messages(h):
    nodes = h.nodes
    q, _ = nodes.declare_queue("ftd", {"qpid.policy_type": "flow_to_disk", "qpid.max_count": 2})
    qj = nodes.store.journals[q]
    for i in range(6):
        nodes.route(q, make_message(b"m%d" % i, durable=False, ttl=60000 if i >= 4 else 0))
    waiting = q.messages_waiting()
    assert [m.body is None for m in waiting] == [False, False, True, True, True, True]
    assert len(qj.journal) == 4                    # transient records of the four past the limit
    q.clock = lambda: 1e12                         # the two with a ttl expire ...
    assert q.purge_expired() == 2
    assert len(qj.journal) == 2                    # ... and their records go with them
    assert q.purge() == 4
    assert len(qj.journal) == 0


def test_deleted_queue_answers_waiting_producers(h):
    nodes = h.nodes
    q, _ = nodes.declare_queue("gone", {"durable": True})
    session = FakeSession()
    send(h, q, make_message(b"a"), session, 1)
    jdir = nodes.store.journals[q].journal.directory
    nodes.delete_queue(q)
    assert session.settled == {1: None}
    import os
    assert not os.path.exists(jdir)
    assert nodes.store.config.queues() == []
    nodes = h.reopen()
    assert "gone" not in nodes.queues


def test_queue_deleted_while_the_writer_makes_its_files(h, monkeypatch):
    """The writer thread makes a journal's files in a batch holding the journal's lock; a queue
    deleted meanwhile must not leave its directory behind (once it did: the listing of its files
    was taken, the batch made one more, and the directory could not be removed)."""
    import os
    import threading
    from cypid.pyx import journal as journal_module
    nodes = h.nodes
    q, _ = nodes.declare_queue("gone", {"durable": True})
    journal = nodes.store.journals[q].journal
    jdir = journal.directory
    assert journal.writer.drain(10)
    listed = journal_module.existing_files

    def listing_then_the_batch_makes_a_file(directory):
        found = listed(directory)
        try:                                # what the writer's batch does next, by path
            open(os.path.join(jdir, "journal-0063.cjf"), "xb").close()
        except FileNotFoundError:           # the directory is gone: the batch's create fails
            pass
        return found

    monkeypatch.setattr(journal_module, "existing_files", listing_then_the_batch_makes_a_file)
    in_batch, batch_may_end = threading.Event(), threading.Event()

    def batch():                            # the writer in a batch of this journal
        with journal.lock:
            in_batch.set()
            batch_may_end.wait(10)

    writer = threading.Thread(target=batch)
    writer.start()
    assert in_batch.wait(10)
    try:
        nodes.delete_queue(q)
        assert not os.path.exists(jdir)
    finally:
        batch_may_end.set()
        writer.join()
    parent = os.path.dirname(jdir)
    h.run_until(lambda: not [n for n in os.listdir(parent) if n.startswith(os.path.basename(jdir))])
    nodes = h.reopen()
    assert "gone" not in nodes.queues
    assert not os.path.exists(nodes.store.lost_dir)


def test_released_delivery_count_is_kept(h):
    nodes = h.nodes
    q, _ = nodes.declare_queue("dc", {"durable": True})
    nodes.route(q, make_message(b"a"))
    h.run_until(lambda: q.depth == 1)              # seen once its record is synced
    # a consumer takes it, then it comes back counting a failed attempt; twice
    for _ in range(2):
        got = []
        link = types.SimpleNamespace(browsing=False, can_take=lambda: not got,
                                     deliver=lambda m, qq: got.append(m))
        q.add_consumer(link)
        q.dispatch()
        q.remove_consumer(link)
        q.release(got[0], count_failure=True)
        nodes.released(q, got[0])
    nodes = h.reopen()
    (m,) = nodes.queues["dc"].messages_waiting()
    assert m.delivery_count == 2


def test_config_store_rows(tmp_path):
    cs = ConfigStore(tmp_path)
    jd = cs.add_queue("a/b c", {"durable": True, "qpid.max_count": 5})
    assert jd == journal_dirname(1, "a/b c") and "/" not in jd
    cs.add_exchange("x", "topic", {"durable": True, "exchange-type": "topic"})
    cs.add_binding("x", "a/b c", "k.#", {"x-match": "all"})
    cs.add_binding("x", "a/b c", "k.#", {"x-match": "all"})   # the same binding again: one row
    cs.close()
    cs = ConfigStore(tmp_path)
    assert cs.queues() == [("a/b c", {"durable": True, "qpid.max_count": 5}, jd)]
    assert cs.exchanges() == [("x", "topic", {"durable": True, "exchange-type": "topic"})]
    assert cs.bindings() == [("x", "a/b c", "k.#", {"x-match": "all"})]
    assert cs.add_queue("a/b c", {}) != jd                     # declared again: a new journal
    cs.remove_queue("a/b c")
    assert cs.queues() == [] and cs.bindings() == []
    cs.remove_exchange("x")
    assert cs.exchanges() == []
    cs.close()


def test_store_directory_is_locked(h):
    from cypid.broker.store import Store
    broker = types.SimpleNamespace(loop=h.loop, log=logging.getLogger("x"), options=Options())
    with pytest.raises(RuntimeError, match="in use by another broker"):
        Store(broker, h.path)


def test_settled_only_once_the_record_is_synced(h):
    """The accept goes out from the sync's callback: at that moment the journal's synced seq covers
    the record; and with no sync at all (the writer held), nothing is ever settled."""
    nodes = h.nodes
    q, _ = nodes.declare_queue("s", {"durable": True})
    journal = nodes.store.journals[q].journal
    seen = {}

    class CheckingSession(FakeSession):
        def settle_incoming(self, did, outcome):
            seen[did] = journal.synced_seq
            super().settle_incoming(did, outcome)

    session = CheckingSession()
    store = nodes.store
    held = []
    real_flush = store._flush
    store._flush = lambda: held.append(1)          # the end-of-turn sync request never goes out
    seqs = {}
    for did in range(5):
        send(h, q, make_message(b"m%d" % did), session, did)
        seqs[did] = journal.next_seq - 1
    h.run_until(lambda: held)
    h.loop.run_until_complete(asyncio.sleep(0.2))  # poll: a window in which nothing may settle
    assert session.settled == {}
    store._flush = real_flush
    store._flush_handle = None
    real_flush()
    h.run_until(lambda: len(session.settled) == 5)
    assert all(seen[d] >= seqs[d] for d in seqs), (seen, seqs)


def test_a_sync_settles_only_the_producers_it_covers(h):
    """A sync comes back with the seq it made durable: the producers whose records are at or below
    it are settled (and their messages shown) in one batch, and none whose record came after, even
    though they wait on the same journal; a later sync settles the rest, in order."""
    nodes = h.nodes
    q, _ = nodes.declare_queue("part", {"durable": True})
    store = nodes.store
    qj = store.journals[q]
    store._flush = lambda: None                      # the writer is never asked: we answer for it
    session = FakeSession()
    seqs = []
    for did in range(6):
        send(h, q, make_message(b"p%d" % did), session, did)
        seqs.append(qj.journal.next_seq - 1)
    assert qj.waiting == 6 and q.depth == 0
    store._synced(qj, seqs[2], None)                 # the first three records are durable
    assert sorted(session.settled) == [0, 1, 2]
    assert q.depth == 3 and qj.waiting == 3
    store._synced(qj, seqs[2], None)                 # the same seq again: nothing more
    assert sorted(session.settled) == [0, 1, 2]
    send(h, q, make_message(b"p6"), session, 6)
    store._synced(qj, seqs[5], None)                 # not the one appended after it
    assert sorted(session.settled) == [0, 1, 2, 3, 4, 5] and q.depth == 6
    store._synced(qj, qj.journal.next_seq - 1, None)
    assert sorted(session.settled) == list(range(7)) and qj.waiting == 0
    assert [m.body for m in q.messages_waiting()] == [make_message(b"p%d" % i).body for i in range(7)]


def test_recovery_into_a_lower_limit_keeps_the_rest_in_the_journal(h):
    nodes = h.nodes
    q, _ = nodes.declare_queue("lim", {"durable": True, "qpid.max_count": 10})
    for i in range(10):
        nodes.route(q, make_message(b"m%d" % i))
    # The queue row says max_count 3 now (as if the broker's default limit had been lowered).
    nodes.store.config.db.execute("UPDATE queues SET properties=? WHERE name='lim'",
                                  (encode({"durable": True, "qpid.max_count": 3}),))
    nodes = h.reopen()
    assert nodes.queues["lim"].depth == 3
    assert len(nodes.store.journals[nodes.queues["lim"]].journal) == 10     # nothing lost


def test_journal_that_cannot_be_made_refuses_the_declare(h):
    from cypid.broker import errors
    nodes = h.nodes
    with pytest.raises(errors.InvalidArgument, match="qpid.file_count"):
        nodes.declare_queue("two", {"durable": True, "qpid.file_count": 2})
    with pytest.raises(errors.InvalidArgument, match="qpid.file_size: .*1..32767"):
        nodes.declare_queue("huge", {"durable": True, "qpid.file_count": 3, "qpid.file_size": 1 << 31})
    with pytest.raises(errors.InvalidArgument, match="qpid.file_count: .*3..64"):
        nodes.declare_queue("many", {"durable": True, "qpid.file_count": 65535})
    assert "two" not in nodes.queues and "huge" not in nodes.queues and "many" not in nodes.queues
    assert nodes.store.config.queues() == []
    assert list((h.path / "cypid-store" / "jrnl").iterdir()) == []


def test_durable_message_is_seen_only_once_synced_and_order_is_kept(h):
    """A durable message is held (counted, not visible) until every journal it went to synced; a
    non-durable message behind it waits too; a copy in a non-durable queue waits for the others."""
    nodes = h.nodes
    dq, _ = nodes.declare_queue("dq", {"durable": True})
    nq, _ = nodes.declare_queue("nq", {})
    ex, _ = nodes.declare_exchange("fan", {"exchange-type": "fanout"})
    nodes.bind(ex, dq, "")
    nodes.bind(ex, nq, "")
    session = FakeSession()
    send(h, ex, make_message(b"durable"), session, 1)
    assert nodes.route(dq, make_message(b"transient", durable=False)) is None
    assert (dq.depth, dq.msgDepth, dq.held) == (0, 2, 2)      # limits count them already
    assert (nq.depth, nq.msgDepth, nq.held) == (0, 1, 1)
    h.run_until(lambda: 1 in session.settled)
    assert [m.body for m in dq.messages_waiting()] == [make_message(b"durable").body,
                                                       make_message(b"transient", durable=False).body]
    assert (dq.held, nq.held, nq.depth) == (0, 0, 1)


def test_failed_sync_takes_out_every_copy_unseen(h):
    nodes = h.nodes
    d1, _ = nodes.declare_queue("d1", {"durable": True})
    d2, _ = nodes.declare_queue("d2", {"durable": True})
    ex, _ = nodes.declare_exchange("fan", {"exchange-type": "fanout"})
    nodes.bind(ex, d1, "")
    nodes.bind(ex, d2, "")
    store = nodes.store
    session = FakeSession()
    store._flush = lambda: None                      # the syncs do not go out
    send(h, ex, make_message(b"lost"), session, 1)
    nodes.route(d1, make_message(b"behind", durable=False))
    store.journal_failed(store.journals[d1], OSError(5, "Input/output error"))
    assert d1.msgDepth == 1 and d2.msgDepth == 0 and d2.held == 0
    assert [m.body for m in d1.messages_waiting()] == [make_message(b"behind", durable=False).body]
    assert 1 not in session.settled                  # d2's journal has not answered yet
    store._synced(store.journals[d2], 1 << 62, None)
    assert session.settled[1] is not None            # rejected
