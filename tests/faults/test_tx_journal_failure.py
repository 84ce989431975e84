"""A journal failing inside a commit (issue 12): the commit is answered amqp:transaction:rollback,
and what the broker holds in memory is what its journal says, before and after a restart: the
messages the transaction acknowledged are on their queue again, available.

The fault is the store's failpoint (``CYPID_JOURNAL_FAULT_FILE``, broker/store.py FaultyJournal; see
tests/faults/test_store_journal_failure.py): while the file exists, the sync in progress fails and
the records appended since the last good sync, the transaction's commit record among them, are lost.
"""
from tests.interop.test_transactions import bodies, error_of, make_queue
from tests.support.txclient import TxClient


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
