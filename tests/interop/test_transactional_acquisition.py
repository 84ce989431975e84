"""Transactional acquisition (AMQP 1.0 transactions 4.4.3, broker/acquisition.py): a consumer's flow
naming a txn-id makes the transfers it gets carry transactional-state(txn-id); the transaction's
rollback gives the messages back, its commit keeps them acquired. Also an IVE exchange's last
message under a transaction (set at the decision, broker/transactions.py)."""
import time

from proton.utils import BlockingConnection

from cypid.pyx.codec import symbol
from tests.interop.test_transactions import bodies, make_queue
from tests.support.amqp import CreateExchange
from tests.support.broker import wait_until
from tests.support.rawclient import RECEIVER, source, target
from tests.support.txclient import ACCEPTED, TRANSACTIONAL_STATE, TxClient, descriptor

RELEASED = 0x26


def fill(client, queue, names):
    s = client.sender(queue)
    for name in names:
        assert descriptor(client.send(s, name)) == ACCEPTED


def transactional(state, txn):
    """The state of a transfer acquired by ``txn``: transactional-state(txn), no outcome."""
    return descriptor(state) == TRANSACTIONAL_STATE and bytes(state.value[0]) == txn and \
        (len(state.value) < 2 or state.value[1] is None)


def take_with_counts(broker, queue, n):
    """Receive (and accept) ``n`` messages with python-qpid-proton: [(body, delivery_count)]."""
    conn = BlockingConnection(broker.url, timeout=20)
    try:
        r = conn.create_receiver(queue, credit=n)
        out = []
        for _ in range(n):
            m = r.receive(timeout=10)
            out.append((m.body, m.delivery_count))
            r.accept()
        return out
    finally:
        conn.close()


def next_transfer(client):
    deadline = time.monotonic() + client.timeout
    while not client.transfers:
        client._pump(deadline)
    return client.transfers.pop(0)


def wait_detach(client, handle):
    deadline = time.monotonic() + client.timeout
    while handle not in client.detached:
        client._pump(deadline)
    return client.detached[handle]


def test_a_flow_naming_a_transaction_makes_its_transfers_transactional(broker):
    make_queue(broker, "acq-state")
    with TxClient(broker) as c:
        fill(c, "acq-state", ["m0", "m1", "m2"])
        txn = c.declare()
        r = c.receiver("acq-state")
        got = c.fetch(r, 3, txn=txn)
        assert [b for _, b in got] == ["m0", "m1", "m2"]
        for did, _ in got:
            assert transactional(c.states[did], txn), c.states[did]
        assert descriptor(c.discharge(txn, fail=True)) == ACCEPTED


def test_rollback_gives_the_acquired_messages_to_another_consumer(broker):
    make_queue(broker, "acq-rb")
    with TxClient(broker) as c, TxClient(broker, coordinator=False) as other:
        fill(c, "acq-rb", ["a", "b", "c"])
        txn = c.declare()
        r = c.receiver("acq-rb")
        got = c.fetch(r, 2, txn=txn)
        assert [b for _, b in got] == ["a", "b"]
        assert bodies(other, "acq-rb") == ["c"]               # the acquired ones are nobody else's
        assert descriptor(c.discharge(txn, fail=True)) == ACCEPTED
        # the broker settles the undone deliveries itself, released
        deadline = time.monotonic() + 10
        while not all(did in c.broker_settled for did, _ in got):
            c._pump(deadline)
        assert all(descriptor(c.broker_settled[did]) == RELEASED for did, _ in got)
        # the consumer's own (late) settlement of an undone delivery does not take the message
        c.accept(got[0][0])
    # available again, in their place; delivery-count as a release leaves it
    assert take_with_counts(broker, "acq-rb", 2) == [("a", 0), ("b", 0)]


def test_commit_keeps_the_acquisitions_until_the_consumer_settles(broker):
    make_queue(broker, "acq-commit")
    with TxClient(broker) as c, TxClient(broker, coordinator=False) as other:
        fill(c, "acq-commit", ["a", "b", "c", "d"])
        txn = c.declare()
        r = c.receiver("acq-commit")
        got = c.fetch(r, 2, txn=txn)
        assert descriptor(c.discharge(txn)) == ACCEPTED
        # still acquired after the commit: another consumer gets only the others
        o = other.receiver("acq-commit")
        seen = other.fetch(o, 10)
        assert [b for _, b in seen] == ["c", "d"]
        for did, _ in seen:
            other.release(did)
        assert not c.broker_settled
        # the link is no longer transactional: what its next flow gets is plain
        (plain,) = c.fetch(r, 1)
        assert plain[1] == "c" and c.states[plain[0]] is None
        c.accept(got[0][0], last=plain[0])                    # accepted afterwards: gone
    with TxClient(broker, coordinator=False) as last:
        assert bodies(last, "acq-commit") == ["d"]


def test_credit_left_at_the_discharge_is_used_for_plain_transfers(broker):
    make_queue(broker, "acq-credit")
    with TxClient(broker) as c:
        fill(c, "acq-credit", ["a"])
        txn = c.declare()
        r = c.receiver("acq-credit")
        c.raw.flow(c.ch, r, credit=5, properties={symbol("txn-id"): txn})
        first = next_transfer(c)                              # 4 credits left
        assert transactional(first.field(7), txn)
        assert descriptor(c.discharge(txn)) == ACCEPTED
        fill(c, "acq-credit", ["b"])
        second = next_transfer(c)
        assert second.field(7) is None                        # no transactional-state: plain
        c.accept(first.field(1), last=second.field(1))
    with TxClient(broker, coordinator=False) as other:
        assert bodies(other, "acq-credit") == []


def test_a_retirement_in_the_acquiring_transaction_is_undone_once(broker):
    make_queue(broker, "acq-retire")
    with TxClient(broker) as c:
        fill(c, "acq-retire", ["a", "b"])
        txn = c.declare()
        r = c.receiver("acq-retire")
        got = c.fetch(r, 2, txn=txn)
        c.accept(got[0][0], txn=txn)                          # retired in the same transaction
        assert descriptor(c.discharge(txn, fail=True)) == ACCEPTED
        txn2 = c.declare()
        again = c.fetch(r, 10, txn=txn2)
        assert sorted(b for _, b in again) == ["a", "b"]      # each once
        c.accept(again[0][0], txn=txn2, last=again[-1][0])
        assert descriptor(c.discharge(txn2)) == ACCEPTED
    with TxClient(broker, coordinator=False) as other:
        assert bodies(other, "acq-retire") == []


def test_an_unknown_txn_id_detaches_the_link(broker):
    make_queue(broker, "acq-unknown")
    with TxClient(broker) as c:
        fill(c, "acq-unknown", ["kept"])
        r = c.receiver("acq-unknown")
        c.raw.flow(c.ch, r, credit=1, properties={symbol("txn-id"): b"no-such-txn"})
        err = wait_detach(c, r)
        assert str(err.condition) == "amqp:transaction:unknown-id"
        assert not c.transfers
    with TxClient(broker, coordinator=False) as other:
        assert bodies(other, "acq-unknown") == ["kept"]


def test_a_browser_cannot_acquire_transactionally(broker):
    make_queue(broker, "acq-browse")
    with TxClient(broker) as c:
        txn = c.declare()
        h = c._handle()
        c.raw.attach(c.ch, "browser", h, RECEIVER, src=source("acq-browse", distribution_mode=symbol("copy")),
                     tgt=target("r"))
        c.raw.flow(c.ch, h, credit=1, properties={symbol("txn-id"): txn})
        assert str(wait_detach(c, h).condition) == "amqp:not-allowed"


def test_a_dropped_connection_gives_the_acquired_messages_back(broker):
    make_queue(broker, "acq-drop")
    c = TxClient(broker)
    try:
        fill(c, "acq-drop", ["a", "b", "c"])
        txn = c.declare()
        r = c.receiver("acq-drop")
        assert [b for _, b in c.fetch(r, 3, txn=txn)] == ["a", "b", "c"]
    finally:
        c.raw.close()                                        # no detach, no discharge, no close
    assert wait_until(lambda: _depth(broker, "acq-drop") == 3, timeout=20, interval=0.1)
    assert take_with_counts(broker, "acq-drop", 3) == [("a", 0), ("b", 0), ("c", 0)]


def make_ive_exchange(broker, name):
    conn = BlockingConnection(broker.url, timeout=20)
    try:
        conn.create_sender(name, options=CreateExchange("fanout", {"qpid.ive": True})).close()
    finally:
        conn.close()


def test_ive_last_message_is_set_at_the_commit(broker):
    """A transaction's message to an IVE exchange becomes its last message at the commit, not at
    the transfer, and never when the transaction rolls back (a failing commit:
    tests/faults/test_tx_journal_failure.py)."""
    make_ive_exchange(broker, "ive-tx")
    with TxClient(broker) as c:
        s = c.sender("ive-tx")
        assert descriptor(c.send(s, "plain")) == ACCEPTED
        txn = c.declare()
        c.send(s, "rolled-back", txn=txn)
        assert descriptor(c.discharge(txn, fail=True)) == ACCEPTED
        assert new_binding_gets(c, "ive-tx") == ["plain"]
        txn = c.declare()
        c.send(s, "committed", txn=txn)
        assert new_binding_gets(c, "ive-tx") == ["plain"]     # not before the commit
        assert descriptor(c.discharge(txn)) == ACCEPTED
        assert new_binding_gets(c, "ive-tx") == ["committed"]


def new_binding_gets(client, exchange):
    r = client.receiver(exchange)
    got = client.fetch(r, 10)
    if got:
        client.accept(got[0][0], last=got[-1][0])
    return [b for _, b in got]


def _depth(broker, queue):
    with TxClient(broker, coordinator=False) as c:
        r = c.receiver(queue)
        got = c.fetch(r, 1000)
        for did, _ in got:
            c.release(did)
        return len(got)
