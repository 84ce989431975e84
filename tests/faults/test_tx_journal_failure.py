"""A journal failing inside a commit (issue 12): the commit is answered amqp:transaction:rollback,
and what the broker holds in memory is what its journal says, before and after a restart: the
messages the transaction acknowledged are on their queue again, available.

The fault is the store's failpoint (``CYPID_JOURNAL_FAULT_FILE``, broker/store.py FaultyJournal; see
tests/faults/test_store_journal_failure.py): while the file exists, the sync in progress fails and
the records appended since the last good sync, the transaction's commit record among them, are lost.
"""
import time

from tests.interop.test_transactional_acquisition import RELEASED, make_ive_exchange, new_binding_gets
from tests.interop.test_transactions import bodies, error_of, make_queue
from tests.support.txclient import ACCEPTED, TxClient, body_of, descriptor


def test_failed_commit_leaves_acknowledged_messages_on_their_queue(broker_factory, tmp_path):
    fault = tmp_path / "disk-broken"
    broker = broker_factory(env={"CYPID_JOURNAL_FAULT_FILE": str(fault)})
    make_queue(broker, "dq", durable=True)
    make_queue(broker, "dq2", durable=True)
    with TxClient(broker) as c:
        s = c.sender("dq")
        for i in range(3):
            c.send(s, "m%d" % i, durable=True)              # accepted: synced before the fault
        got = c.fetch(c.receiver("dq"), 2)
        assert [b for _, b in got] == ["m0", "m1"]
        one = c.declare()
        for did, _ in got:
            c.accept(did, txn=one)
        fault.write_text("")
        cond, text = error_of(c.discharge(one))             # one journal: its commit record fails
        assert cond == "amqp:transaction:rollback", (cond, text)
        assert "journal" in text
        fault.unlink()
        # the same with two journals (the decision goes through the transaction log)
        two = c.declare()
        c.accept(c.fetch(c.receiver("dq"), 1)[0][0], txn=two)
        c.send(c.sender("dq2"), "posted", txn=two, durable=True)
        fault.write_text("")
        assert error_of(c.discharge(two))[0] == "amqp:transaction:rollback"
        fault.unlink()
    with TxClient(broker, coordinator=False) as c:
        r = c.receiver("dq")
        assert sorted(b for _, b in c.fetch(r, 10)) == ["m0", "m1", "m2"]   # in memory: all back
        assert bodies(c, "dq2") == []
    broker.restart()
    with TxClient(broker, coordinator=False) as c:
        assert sorted(bodies(c, "dq")) == ["m0", "m1", "m2"]                  # and in the journal
        assert bodies(c, "dq2") == []


def _consumer(c, address, credit=100):
    """A receiver with credit and no drain: the broker sends each message as it becomes available."""
    h = c.receiver(address)
    c.raw.flow(c.ch, h, delivery_count=0, credit=credit, drain=False, next_incoming_id=0)
    return h


def _arrivals(c, last):
    """The bodies of the messages sent to the client's consumers, in the order they came, up to
    ``last`` (each message is one frame here)."""
    got = []
    deadline = time.monotonic() + c.timeout
    while last not in got:
        while c.transfers:
            got.append(body_of(bytes(c.transfers.pop(0).payload)))
        if last not in got:
            c._pump(deadline)
    return got


def test_rolled_back_commit_delivers_none_of_its_messages(broker_factory, tmp_path):
    """A journal fails inside the commit of a transaction that posted durable and non-durable
    messages to queues (and an exchange) with live consumers: the discharge answers rollback and
    the consumers get nothing of it (each gets only the plain message sent after)."""
    fault = tmp_path / "disk-broken"
    broker = broker_factory(env={"CYPID_JOURNAL_FAULT_FILE": str(fault)})
    make_queue(broker, "dq", durable=True)
    make_queue(broker, "nq")
    for two_journals in (False, True):
        with TxClient(broker) as c:
            _consumer(c, "dq")
            _consumer(c, "nq")
            _consumer(c, "amq.fanout")
            dq, nq, fan = c.sender("dq"), c.sender("nq"), c.sender("amq.fanout")
            txn = c.declare()
            c.send(dq, "d1", txn=txn, durable=True)
            c.send(nq, "n1", txn=txn)
            c.send(dq, "n2", txn=txn)
            c.send(fan, "f1", txn=txn)
            if two_journals:
                make_queue(broker, "dq2", durable=True)
                c.send(c.sender("dq2"), "d2", txn=txn, durable=True)
            fault.write_text("")
            cond, _ = error_of(c.discharge(txn))
            assert cond == "amqp:transaction:rollback"
            fault.unlink()
            # sent after the discharge's answer: each consumer gets its marker after anything of
            # the transaction that had been let through
            markers = ["%s-after-%d" % (name, two_journals) for name in ("dq", "nq", "fan")]
            for sender, marker in zip((dq, nq, fan), markers):
                c.send(sender, marker)
            got = []
            for marker in markers:
                if marker not in got:
                    got += _arrivals(c, marker)
            assert not {"d1", "n1", "n2", "f1", "d2"} & set(got), got
    with TxClient(broker, coordinator=False) as c:
        assert bodies(c, "dq") == ["dq-after-0", "dq-after-1"]
        assert bodies(c, "dq2") == []


def test_committed_mixed_transaction_delivers_everything_in_order(broker_factory):
    """Durable and non-durable messages of one transaction reach a live consumer in the order they
    were posted, with one journal and with two (the decision through the transaction log)."""
    broker = broker_factory()
    make_queue(broker, "dq", durable=True)
    make_queue(broker, "dq2", durable=True)
    make_queue(broker, "nq")
    with TxClient(broker) as c:
        _consumer(c, "dq")
        _consumer(c, "nq")
        dq, nq, dq2 = c.sender("dq"), c.sender("nq"), c.sender("dq2")
        for rnd, extra in ((0, None), (1, dq2)):
            txn = c.declare()
            posted = []
            for i in range(6):
                body = "r%d-%s%d" % (rnd, "d" if i % 2 == 0 else "n", i)
                c.send(dq, body, txn=txn, durable=i % 2 == 0)
                c.send(nq, "nq-" + body, txn=txn)
                posted.append(body)
            if extra is not None:
                c.send(extra, "other", txn=txn, durable=True)
            assert descriptor(c.discharge(txn)) == ACCEPTED
            got = _arrivals(c, posted[-1])
            got += [] if "nq-" + posted[-1] in got else _arrivals(c, "nq-" + posted[-1])
            assert [b for b in got if not b.startswith("nq-")] == posted
            assert [b for b in got if b.startswith("nq-")] == ["nq-" + b for b in posted]
    broker.restart()
    with TxClient(broker, coordinator=False) as c:
        assert bodies(c, "dq2") == ["other"]


def test_ive_last_message_is_not_set_by_a_commit_that_fails(broker_factory, tmp_path):
    """An IVE exchange's last message is set at the transaction's decision, not at its routing: a
    commit whose journal fails leaves the one before; a commit that is decided sets it."""
    fault = tmp_path / "disk-broken"
    broker = broker_factory(env={"CYPID_JOURNAL_FAULT_FILE": str(fault)})
    make_queue(broker, "dq", durable=True)
    make_ive_exchange(broker, "ive-fail")
    with TxClient(broker) as c:
        s, dq = c.sender("ive-fail"), c.sender("dq")
        assert descriptor(c.send(s, "plain")) == ACCEPTED
        txn = c.declare()
        c.send(s, "doomed", txn=txn)
        c.send(dq, "d1", txn=txn, durable=True)             # journal work: the decision waits for it
        fault.write_text("")
        assert error_of(c.discharge(txn))[0] == "amqp:transaction:rollback"
        fault.unlink()
        assert new_binding_gets(c, "ive-fail") == ["plain"]
        txn = c.declare()
        c.send(s, "kept", txn=txn)
        c.send(dq, "d2", txn=txn, durable=True)
        assert descriptor(c.discharge(txn)) == ACCEPTED
        assert new_binding_gets(c, "ive-fail") == ["kept"]


def test_transactional_acquisitions_go_back_when_the_commit_fails(broker_factory, tmp_path):
    """Messages acquired by a transaction (its consumer's flow named it, broker/acquisition.py), one
    of them retired in it, go back to their queue when its commit's journal fails: available again
    in memory and after a restart; the broker settles the unsettled one released."""
    fault = tmp_path / "disk-broken"
    broker = broker_factory(env={"CYPID_JOURNAL_FAULT_FILE": str(fault)})
    make_queue(broker, "dq", durable=True)
    with TxClient(broker) as c:
        s = c.sender("dq")
        for body in ("m0", "m1"):
            assert descriptor(c.send(s, body, durable=True)) == ACCEPTED
        txn = c.declare()
        got = c.fetch(c.receiver("dq"), 2, txn=txn)
        assert [b for _, b in got] == ["m0", "m1"]
        c.accept(got[0][0], txn=txn)                        # retired in it: a dequeue record with the xid
        fault.write_text("")
        assert error_of(c.discharge(txn))[0] == "amqp:transaction:rollback"
        fault.unlink()
        deadline = time.monotonic() + c.timeout
        while got[1][0] not in c.broker_settled:
            c._pump(deadline)
        assert descriptor(c.broker_settled[got[1][0]]) == RELEASED
    with TxClient(broker, coordinator=False) as c:
        r = c.receiver("dq")
        assert [b for _, b in c.fetch(r, 10)] == ["m0", "m1"]   # in memory: both back, in order
    broker.restart()
    with TxClient(broker, coordinator=False) as c:
        assert bodies(c, "dq") == ["m0", "m1"]
