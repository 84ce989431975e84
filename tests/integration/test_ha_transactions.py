"""Transactions on an HA primary: a commit is answered only once every ready backup has the
transaction's messages (as a plain producer's settlement waits for them), so a commit the client saw
accepted survives a failover."""
import signal

import pytest

from tests.integration.test_ha_failover import create_queue
from tests.support.broker import wait_until
from tests.support.ha import brokers  # noqa: F401 (the fixture)
from tests.support.ha import HaCluster, queue_depths
from tests.support.txclient import ACCEPTED, TxClient, descriptor


@pytest.mark.parametrize("durable", [False, True], ids=["transient", "durable"])
def test_commit_waits_for_the_ready_backup(brokers, durable):
    cluster = HaCluster(brokers, 2)
    create_queue(cluster[0], "q", durable)      # durable: the commit's journal records and the backups both
    wait_until(lambda: "q" in queue_depths(cluster[1]), 60, interval=0.05)
    primary, backup = cluster[0], cluster[1]
    with TxClient(primary, timeout=60) as c:
        txn = c.declare()
        s = c.sender("q")
        c.send(s, "in-txn", txn=txn, durable=durable)
        backup.signal(signal.SIGSTOP)
        try:
            did = c.discharge(txn, wait=False)
            wait_until(lambda: queue_depths(primary).get("q") == 1, 60, interval=0.05)   # applied
            c.declare()             # a round trip: an answer to the discharge sent before it is here
            held = did not in c.outcomes
        finally:
            backup.signal(signal.SIGCONT)
        assert held, "the commit was answered while the ready backup lacked its message"
        assert descriptor(c.wait_outcome(did)) == ACCEPTED
    assert queue_depths(backup).get("q") == 1
