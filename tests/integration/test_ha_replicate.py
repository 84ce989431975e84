"""Replication of one queue to another broker outside a cluster (--ha-queue-replication, qpid-ha
replicate; ha/replicate.py; ../shared/reference/ha.md section 8, ReplicationTests 6)."""
import io

import pytest
from cypid.tools import qpid_ha
from tests.support.broker import wait_until
from tests.support.ha import HA_ARGS, HaConsole, QmfError, queue_depths

from tests.integration.test_ha_replication import browse, create, receive, send

REPLICATION = ("--ha-queue-replication", "yes")


def replicate(replica, source, queue):
    out = io.StringIO()
    rc = qpid_ha.run(["replicate", "-b", replica.url, source.url, queue], out)
    return rc, out.getvalue()


def test_replica_follows_the_source_queue(broker_factory):
    source = broker_factory(*REPLICATION)
    replica = broker_factory(*REPLICATION)
    create(source, "queue", "q", durable=True)
    create(replica, "queue", "q", durable=True)
    create(source, "queue", "other")
    send(replica, "q", ["stale"])               # replaced by the source's copy
    send(source, "q", ["a%d" % i for i in range(5)], durable=True)
    assert replicate(replica, source, "q") == (0, "")
    wait_until(lambda: browse(replica, "q") == ["a%d" % i for i in range(5)], 60, interval=0.05)
    send(source, "q", ["b%d" % i for i in range(5)], durable=True)
    send(source, "other", ["not replicated"])
    assert receive(source, "q", 3) == ["a0", "a1", "a2"]        # dequeues follow too
    want = ["a3", "a4"] + ["b%d" % i for i in range(5)]
    wait_until(lambda: browse(replica, "q") == want, 60, interval=0.05)
    assert "other" not in queue_depths(replica)
    assert source.log_lines(r"replicates queue 'q'")
    # the replica's messages are its own (durable: in its journal): they survive its restart
    replica.stop()
    replica.start()
    assert browse(replica, "q") == want


def test_replicate_errors(broker_factory):
    plain = broker_factory()
    clustered = broker_factory(*HA_ARGS)
    replica = broker_factory(*REPLICATION)
    with HaConsole(clustered.url) as c, pytest.raises(QmfError, match="not enabled"):
        c.call("replicate", {"broker": replica.url, "queue": "q"})
    with HaConsole(replica.url) as c, pytest.raises(QmfError, match="non-existent queue q"):
        c.call("replicate", {"broker": plain.url, "queue": "q"})
    rc, out = replicate(replica, plain, "nowhere")
    assert rc == 1 and "non-existent queue nowhere" in out
