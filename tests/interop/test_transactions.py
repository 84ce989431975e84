"""AMQP 1.0 local transactions (broker/transactions.py): the coordinator, declare and discharge,
transactional posting and retirement, the errors the specification gives, and the bounds."""
import threading
import time

import pytest
from proton import Message
from proton.handlers import MessagingHandler, TransactionHandler
from proton.reactor import Container
from proton.utils import BlockingConnection

from tests.support.amqp import CreateQueue
from tests.support.broker import wait_until
from tests.support.txclient import ACCEPTED, DECLARED, REJECTED, TRANSACTIONAL_STATE, TxClient, descriptor


def make_queue(broker, name, durable=False):
    conn = BlockingConnection(broker.url, timeout=20)
    try:
        conn.create_sender(name, options=CreateQueue({"durable": True} if durable else None)).close()
    finally:
        conn.close()


def bodies(client, address, n=1000):
    """Take (and accept) every message on ``address``."""
    r = client.receiver(address)
    got = client.fetch(r, n)
    if got:
        client.accept(got[0][0], last=got[-1][0])
    return [b for _, b in got]


def error_of(state):
    """(condition, description) of a rejected outcome."""
    assert descriptor(state) == REJECTED, state
    err = state.value[0]
    return str(err.value[0]), err.value[1] if len(err.value) > 1 else None


def test_coordinator_attach_answers_local_transactions(broker):
    with TxClient(broker) as c:
        tgt = c.coordinator_attach.field(6)
        assert descriptor(tgt) == 0x30
        assert [str(x) for x in tgt.value[0]] == ["amqp:local-transactions"]


def test_distributed_transactions_are_refused(broker):
    with TxClient(broker, coordinator=False) as c:
        c._attach_coordinator(capabilities=("amqp:distributed-transactions",))
        c._pump(time.monotonic() + 5)
        deadline = time.monotonic() + 5
        while 0 not in c.detached:
            c._pump(deadline)
        assert str(c.detached[0].condition) == "amqp:not-implemented"


def test_posting_is_enqueued_only_at_commit(broker):
    make_queue(broker, "q")
    with TxClient(broker) as c, TxClient(broker, coordinator=False) as watcher:
        txn = c.declare()
        s = c.sender("q")
        for i in range(5):
            state = c.send(s, "m%d" % i, txn=txn)
            # the broker answers a transactional transfer with transactional-state(txn, accepted)
            assert descriptor(state) == TRANSACTIONAL_STATE
            assert bytes(state.value[0]) == txn and descriptor(state.value[1]) == ACCEPTED
        assert bodies(watcher, "q") == []                   # nothing before the commit
        assert descriptor(c.discharge(txn)) == ACCEPTED
        assert bodies(watcher, "q") == ["m%d" % i for i in range(5)]


def test_rollback_of_sends_leaves_nothing(broker):
    make_queue(broker, "q")
    with TxClient(broker) as c:
        txn = c.declare()
        s = c.sender("q")
        c.send(s, "gone", txn=txn)
        c.send(s, "plain")                                  # outside the transaction: at once
        assert descriptor(c.discharge(txn, fail=True)) == ACCEPTED
        assert bodies(c, "q") == ["plain"]


def test_acknowledgements_take_effect_at_commit_and_return_at_rollback(broker):
    make_queue(broker, "q")
    with TxClient(broker) as c:
        s = c.sender("q")
        for i in range(4):
            c.send(s, i)
        r = c.receiver("q")
        got = c.fetch(r, 4)
        assert [b for _, b in got] == [0, 1, 2, 3]
        t1, t2 = c.declare(), c.declare()
        c.accept(got[0][0], txn=t1)
        c.accept(got[1][0], txn=t1)
        c.accept(got[2][0], txn=t2)
        c.accept(got[3][0], txn=t2)
        assert descriptor(c.discharge(t1)) == ACCEPTED
        assert descriptor(c.discharge(t2, fail=True)) == ACCEPTED
        # 0 and 1 are gone; 2 and 3 came back, available to anyone
        with TxClient(broker, coordinator=False) as other:
            assert bodies(other, "q") == [2, 3]


def test_unknown_transaction(broker):
    make_queue(broker, "q")
    with TxClient(broker) as c:
        cond, _ = error_of(c.discharge(b"no-such-txn"))
        assert cond == "amqp:transaction:unknown-id"
        txn = c.declare()
        assert descriptor(c.discharge(txn)) == ACCEPTED
        assert error_of(c.discharge(txn))[0] == "amqp:transaction:unknown-id"    # discharged already
        s = c.sender("q")
        assert error_of(c.send(s, "x", txn=b"nope"))[0] == "amqp:transaction:unknown-id"
        assert bodies(c, "q") == []


def test_transaction_of_another_connection_is_unknown(broker):
    make_queue(broker, "q")
    with TxClient(broker) as a, TxClient(broker) as b:
        txn = a.declare()
        s = b.sender("q")
        assert error_of(b.send(s, "x", txn=txn))[0] == "amqp:transaction:unknown-id"
        assert error_of(b.discharge(txn))[0] == "amqp:transaction:unknown-id"
        assert descriptor(a.discharge(txn)) == ACCEPTED


def test_open_transactions_roll_back_when_the_connection_goes(broker):
    make_queue(broker, "q")
    with TxClient(broker) as c:
        s = c.sender("q")
        c.send(s, "kept")
        r = c.receiver("q")
        [(did, body)] = c.fetch(r, 1)
        txn = c.declare()
        c.accept(did, txn=txn)
        c.send(s, "never", txn=txn)
    with TxClient(broker, coordinator=False) as other:
        assert bodies(other, "q") == ["kept"]


def test_durable_commit_and_restart(broker):
    make_queue(broker, "dq", durable=True)
    make_queue(broker, "dq2", durable=True)
    with TxClient(broker) as c:
        s1, s2 = c.sender("dq"), c.sender("dq2")
        for i in range(3):
            c.send(s1, "seed%d" % i, durable=True)
        r = c.receiver("dq")
        got = c.fetch(r, 2)
        txn = c.declare()
        c.accept(got[0][0], txn=txn)
        c.send(s1, "a", txn=txn, durable=True)
        c.send(s2, "b", txn=txn, durable=True)              # two journals: the transaction log decides
        assert descriptor(c.discharge(txn)) == ACCEPTED
        rolled = c.declare()
        c.send(s1, "rolled", txn=rolled, durable=True)
        c.accept(got[1][0], txn=rolled)
        assert descriptor(c.discharge(rolled, fail=True)) == ACCEPTED
    broker.restart()
    with TxClient(broker, coordinator=False) as c:
        assert bodies(c, "dq") == ["seed1", "seed2", "a"]
        assert bodies(c, "dq2") == ["b"]


def test_too_many_open_transactions(broker):
    from cypid.broker.transactions import MAX_PER_SESSION
    with TxClient(broker) as c:
        for _ in range(MAX_PER_SESSION):
            c.declare()
        did = c.declare(wait=False)
        assert error_of(c.wait_outcome(did))[0] == "amqp:resource-limit-exceeded"


def test_work_beyond_the_bound_makes_the_commit_roll_back(broker):
    from cypid.broker.transactions import MAX_BYTES
    make_queue(broker, "big")
    with TxClient(broker) as c:
        txn = c.declare()
        s = c.sender("big")
        chunk = b"x" * (4 << 20)
        taken = 0
        while True:
            state = c.send(s, chunk, txn=txn)
            if descriptor(state) != TRANSACTIONAL_STATE:
                break
            taken += 1
        assert error_of(state)[0] == "amqp:resource-limit-exceeded"
        assert MAX_BYTES - 2 * len(chunk) < taken * len(chunk) <= MAX_BYTES
        assert error_of(c.discharge(txn))[0] == "amqp:transaction:rollback"
        assert bodies(c, "big") == []


@pytest.mark.solo    # a bystander's round trip bound (0.5 s): timed alone, after the parallel pass
def test_bystander_round_trip_while_a_client_fills_transactions(broker):
    """A greedy client keeps its transactions at their bounds; a bystander's send-and-receive
    stays under 0.5 s throughout."""
    make_queue(broker, "greedy")
    make_queue(broker, "calm")
    stop = threading.Event()
    errors = []

    def greedy():
        try:
            with TxClient(broker, timeout=60) as g:
                s = g.sender("greedy")
                chunk = b"y" * (1 << 20)
                while not stop.is_set():
                    txn = g.declare()
                    for _ in range(70):
                        g.send(s, chunk, txn=txn, wait=False)
                    g.discharge(txn, fail=True)
        except Exception as e:          # noqa: BLE001 - reported below
            if not stop.is_set():
                errors.append(e)

    t = threading.Thread(target=greedy, daemon=True)
    t.start()
    try:
        conn = BlockingConnection(broker.url, timeout=20)
        try:
            sender = conn.create_sender("calm")
            receiver = conn.create_receiver("calm", credit=10)
            worst = 0.0
            end = time.monotonic() + 4
            while time.monotonic() < end:
                t0 = time.monotonic()
                sender.send(Message(body="ping"))
                assert receiver.receive(timeout=5).body == "ping"
                receiver.accept()
                worst = max(worst, time.monotonic() - t0)
            assert worst < 0.5, worst
        finally:
            conn.close()
    finally:
        stop.set()
        t.join(30)
    assert not errors, errors


def test_qmf_session_shows_transactions(broker):
    """qpidd's session counters: TxnStarts, TxnCommits, TxnRejects, and TxnCount (open now)."""
    from tests.integration.test_qmf_agent import Console
    with TxClient(broker) as c:
        c.declare()
        t2 = c.declare()
        c.discharge(t2)
        t3 = c.declare()
        c.discharge(t3, fail=True)
        console = Console(broker.url)
        try:
            sessions = [o["_values"] for o in console.query("session")]
        finally:
            console.close()
        mine = [v for v in sessions if v.get("TxnStarts")]
        assert len(mine) == 1, sessions
        v = mine[0]
        assert (v["TxnStarts"], v["TxnCommits"], v["TxnRejects"], v["TxnCount"]) == (3, 1, 1, 1)


def test_declared_is_answered_on_the_declare(broker):
    with TxClient(broker) as c:
        did = c.declare(wait=False)
        state = c.wait_outcome(did)
        assert descriptor(state) == DECLARED and isinstance(state.value[0], bytes)


class _CommitOverLimit(MessagingHandler, TransactionHandler):
    """python-qpid-proton's own transactions: takes one message from ``src`` and posts three to
    ``lim`` and one to ``free``, all in one transaction, then commits; records what the commit got."""

    def __init__(self, url):
        super().__init__(auto_accept=False, prefetch=0)
        self.url = url
        self.txn = self.delivery = None
        self.done = False
        self.result = None          # "committed", or the condition of the failed commit

    def on_start(self, event):
        conn = event.container.connect(self.url, reconnect=False)
        self.lim = event.container.create_sender(conn, "lim")
        self.free = event.container.create_sender(conn, "free")
        event.container.create_receiver(conn, "src").flow(1)
        event.container.declare_transaction(conn, handler=self)

    def on_transaction_declared(self, event):
        self.txn = event.transaction
        self._go()

    def on_message(self, event):
        self.delivery = event.delivery
        self._go()

    def on_sendable(self, event):
        self._go()

    def _go(self):
        if self.done or self.txn is None or self.delivery is None or not (self.lim.credit and self.free.credit):
            return
        self.done = True
        self.txn.accept(self.delivery)
        for i in range(3):
            self.txn.send(self.lim, Message(body="t%d" % i))
        self.txn.send(self.free, Message(body="f"))
        self.txn.commit()

    def on_transaction_committed(self, event):
        self.result = "committed"
        event.connection.close()

    def on_transaction_commit_failed(self, event):
        cond = event.delivery.remote.condition
        self.result = (cond.name, cond.description) if cond is not None else "failed"
        event.connection.close()


def _commit_over_limit(broker, max_count):
    """Queues lim (a limit of ``max_count`` messages, one there), free and src (one message), and
    _CommitOverLimit's transaction run against them."""
    conn = BlockingConnection(broker.url, timeout=20)
    try:
        conn.create_sender("lim", options=CreateQueue({"qpid.max_count": max_count, "qpid.policy_type": "reject"})) \
            .send(Message(body="seed"))
        conn.create_sender("free", options=CreateQueue()).close()
        conn.create_sender("src", options=CreateQueue()).send(Message(body="ack-me"))
    finally:
        conn.close()
    handler = _CommitOverLimit(broker.url)
    Container(handler).run()
    return handler


def test_commit_is_all_or_nothing_when_a_queue_would_refuse(broker):
    """A queue whose limit a transaction's messages would pass at the commit (it filled since the
    transfers were taken): nothing of the transaction is applied, and the commit is answered
    amqp:transaction:rollback naming the queue. The transfers themselves were taken (the queue had
    room then); the sender learns it from the discharge, as proton's TransactionHandler reports."""
    handler = _commit_over_limit(broker, 3)
    assert handler.done
    assert handler.result[0] == "amqp:transaction:rollback", handler.result
    assert "lim" in handler.result[1] and "Maximum depth exceeded" in handler.result[1], handler.result
    with TxClient(broker, coordinator=False) as c:
        assert bodies(c, "lim") == ["seed"]                 # none of the three
        assert bodies(c, "free") == []                      # nor the one that fitted elsewhere
        assert bodies(c, "src") == ["ack-me"]               # and the acknowledgement was undone


def test_commit_within_the_limit_applies_everything(broker):
    """The same transaction with room on every queue commits whole (the check counts the
    transaction's own messages, not more)."""
    handler = _commit_over_limit(broker, 4)
    assert handler.result == "committed"
    with TxClient(broker, coordinator=False) as c:
        assert bodies(c, "lim") == ["seed", "t0", "t1", "t2"]
        assert bodies(c, "free") == ["f"]
        assert bodies(c, "src") == []


def test_tx_timeout_rolls_back_a_transaction_left_open(broker_factory):
    """--tx-timeout: a transaction open longer is rolled back by the broker: the message it
    acquired is available again to others, what it posted is gone, and its client's next
    transactional transfer and its commit get amqp:transaction:rollback (not unknown-id)."""
    broker = broker_factory("--tx-timeout", "0.5")
    make_queue(broker, "q")
    with TxClient(broker) as c, TxClient(broker, coordinator=False) as other:
        s = c.sender("q")
        c.send(s, "held")
        [(did, _)] = c.fetch(c.receiver("q"), 1)
        txn = c.declare()
        c.accept(did, txn=txn)
        c.send(s, "posted", txn=txn)
        r = other.receiver("q")
        got = wait_until(lambda: other.fetch(r, 1, timeout=0.2), timeout=10,
                         message="the acquired message never came back")
        assert [b for _, b in got] == ["held"]
        assert error_of(c.send(s, "late", txn=txn))[0] == "amqp:transaction:rollback"
        assert error_of(c.discharge(txn))[0] == "amqp:transaction:rollback"
        assert other.fetch(r, 1, timeout=0.5) == []          # "posted" was never queued
    assert len(broker.log_lines(r"rolled back: open longer than --tx-timeout")) == 1
