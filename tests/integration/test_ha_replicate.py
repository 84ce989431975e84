"""Replication of one queue to another broker outside a cluster (--ha-queue-replication, qpid-ha
replicate; ha/replicate.py; ../shared/reference/ha.md section 8, ReplicationTests 6)."""
import io
import signal

import pytest
from cypid.tools import qpid_ha
from tests.support.broker import wait_until
from tests.support.ha import HA_ARGS, HaCluster, HaConsole, QmfError, queue_depths

from tests.integration.test_ha_replication import browse, create, delete, receive, send

REPLICATION = ("--ha-queue-replication", "yes")


def replicate(replica, source, queue):
    out = io.StringIO()
    url = source if isinstance(source, str) else source.url
    rc = qpid_ha.run(["replicate", "-b", replica.url, url, queue], out)
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


def test_enqueues_while_the_replica_takes_its_copy_are_replicated(broker_factory):
    """Messages queued on the source after it sent its copy but before the replica acknowledged it
    go on the stream too. The replica is stopped (SIGSTOP) in that window: the copy is 16 durable
    MiB, which the replica syncs before it acknowledges; an attempt that missed the window (the
    source already logged the replica ready) is made again on a new queue."""
    source = broker_factory(*REPLICATION)
    replica = broker_factory(*REPLICATION)
    big = "x" * (1 << 20)
    for attempt in range(5):
        q = "q%d" % attempt
        create(source, "queue", q, durable=True)
        create(replica, "queue", q, durable=True)
        send(source, q, [big] * 16, durable=True)
        offset = source.log_size()
        assert replicate(replica, source, q) == (0, "")
        source.wait_for_log(r"replicates queue '%s': 16 message" % q, timeout=30)
        replica.signal(signal.SIGSTOP)
        try:
            in_window = "replica of queue '%s' is ready" % q not in source.log_text_from(offset)
            if in_window:
                send(source, q, ["b0", "b1"])
        finally:
            replica.signal(signal.SIGCONT)
        if in_window:
            break
    else:
        pytest.skip("the replica acknowledged its copy before it could be stopped, 5 times")
    wait_until(lambda: queue_depths(replica).get(q) == 18, 30, interval=0.05,
               message=lambda: "18 messages on the replica's %s, has %r" % (q, queue_depths(replica).get(q)))
    assert browse(replica, q)[-2:] == ["b0", "b1"]


def test_replica_follows_its_source_through_failover(broker_factory):
    """qpidd's ReplicationTests 6: the source is an HA cluster named by its URL list; when its
    primary is killed (-9) and the backup promoted, the replica's link moves to the new primary, takes
    a fresh copy and follows the queue there."""
    cluster = HaCluster(broker_factory, 2, args=REPLICATION)
    replica = broker_factory(*REPLICATION)
    create(cluster[0], "queue", "q", durable=True)
    wait_until(lambda: "q" in queue_depths(cluster[1]), 60, interval=0.05)
    create(replica, "queue", "q", durable=True)
    send(cluster[0], "q", ["a0", "a1"], durable=True)
    source_url = "amqp:" + ",".join("tcp:%s" % b.url for b in cluster.brokers)
    assert replicate(replica, source_url, "q") == (0, "")
    wait_until(lambda: browse(replica, "q") == ["a0", "a1"], 60, interval=0.05)
    cluster.kill(0)
    cluster.promote(1)
    send(cluster[1], "q", ["b0"], durable=True)
    wait_until(lambda: browse(replica, "q") == ["a0", "a1", "b0"], 60, interval=0.05,
               message=lambda: "the replica to follow the new primary: %r" % browse(replica, "q"))
    assert replica.log_lines(r"replicated from %s" % cluster[1].url)


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


def test_replication_is_kept_through_restarts_of_the_replica_and_the_source(broker_factory):
    """The replica remembers what it replicates (its config store): after a clean restart or a kill -9
    (with messages in flight) its queue follows the source again, holding exactly the source's messages
    (the source's copy replaces what its journal kept: none twice, none missing); after a restart of the
    source the replica's link comes back. A queue deleted on the replica ends its replication. Each
    wait is for a change made on the source after the restart: only a replication started again by
    the replica itself can bring it."""
    source = broker_factory(*REPLICATION)
    replica = broker_factory(*REPLICATION, "--link-maintenance-interval", "0.1")
    create(source, "queue", "q", durable=True)
    create(replica, "queue", "q", durable=True)
    send(source, "q", ["a0", "a1"], durable=True)
    assert replicate(replica, source, "q") == (0, "")

    def follows(what):
        want = browse(source, "q")
        wait_until(lambda: browse(replica, "q") == want, 60, interval=0.05,
                   message=lambda: "the replica's q to be the source's %r after %s (it is %r)"
                   % (want, what, browse(replica, "q")))
        return want

    follows("replicate")
    replica.restart()
    send(source, "q", ["b0"], durable=True)
    assert follows("a clean restart") == ["a0", "a1", "b0"]
    assert replica.log_lines(r"replicating queue 'q' from %s again" % source.url)

    many = ["m%d" % i for i in range(300)]
    send(source, "q", many, durable=True)       # kill -9 while the replica is taking them
    replica.restart(kill=True)
    assert receive(source, "q", 1) == ["a0"]    # a dequeue while the replica is away follows too
    send(source, "q", ["c0"], durable=True)
    got = follows("a kill -9")
    assert got == ["a1", "b0"] + many + ["c0"] and len(set(got)) == len(got)

    source.restart()
    send(source, "q", ["d0"], durable=True)
    assert follows("a restart of the source")[-1] == "d0"

    delete(replica, "queue", "q")
    assert replica.log_lines(r"queue 'q' deleted: its replication ends")
    wait_until(lambda: not [n for n in queue_depths(source) if n.startswith("qpid.ha-backup.")], 60,
               interval=0.05, message="the replica's stream queue on the source to go")
    offset = replica.log_size()
    replica.restart()
    assert "q" not in queue_depths(replica)
    after = replica.log_text_from(offset)
    assert "replicating queue 'q'" not in after and "no longer exists" not in after   # forgotten at the delete


def test_a_transient_replica_queue_is_not_remembered(broker_factory):
    """A transient replica queue is not there after a restart: its replication gets no row, and the
    restarted replica, which takes up its durable queue's replication again, has nothing to forget."""
    source = broker_factory(*REPLICATION)
    replica = broker_factory(*REPLICATION, "--link-maintenance-interval", "0.1")
    for name, durable in (("t", False), ("d", True)):
        create(source, "queue", name, durable=durable)
        create(replica, "queue", name, durable=durable)
        send(source, name, ["x"], durable=durable)
        assert replicate(replica, source, name) == (0, "")
        wait_until(lambda: browse(replica, name) == ["x"], 60, interval=0.05)
    offset = replica.log_size()
    replica.restart()
    wait_until(lambda: "replicating queue 'd' from %s again" % source.url in replica.log_text_from(offset), 60,
               interval=0.05)
    assert "t" not in queue_depths(replica)
    assert "queue 't'" not in replica.log_text_from(offset)
