"""qpid-ha against real HA brokers: the stock qpidd 1.40 with its ha module, and cypid once its broker
has the HA object (``org.apache.qpid.ha:habroker:ha-broker``); the same tests run on both.

Each test starts its own brokers on loopback (ports picked free, since an HA cluster's brokers URL
names every broker before any starts) and runs qpid-ha in this process (``qpid_ha.run``) except
where the console script's exit status itself is the point. Waits are polls with deadlines.
"""
from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest
from cypid.tools import qmf, qpid_ha
from proton import Message
from proton.utils import BlockingConnection

from tests.support import stock_qpidd
from tests.support.broker import BrokerStartError, wait_until
from tests.tools.conftest import cypid_command

TIMEOUT = 30


def cypid_has_ha() -> bool:
    from cypid.broker import options
    return "ha-cluster" in options.OPTIONS_BY_NAME


@pytest.fixture(params=["qpidd", "cypid"])
def kind(request):
    if request.param == "qpidd":
        request.node.stock = stock_qpidd.require()
    elif not cypid_has_ha():
        pytest.skip("cypid's broker has no HA module yet (--ha-cluster)")
    return request.param


class Cluster:
    """Brokers of one kind started through the broker_factory fixture (cypid's leak audit applies)."""

    def __init__(self, kind, factory, request):
        self.kind = kind
        self.factory = factory
        self.stock = getattr(request.node, "stock", None)
        self.brokers = []

    def command(self, *modules):
        if self.kind == "qpidd":
            return stock_qpidd.command(self.stock, "amqp", *modules)
        return cypid_command()      # cypid, even when CYPID_TEST_QPIDD names a stock qpidd

    def start(self, n, replicate="all", extra=()):
        """``n`` brokers of one HA cluster (all joining); retried once if a picked port was taken."""
        for attempt in range(2):
            ports = stock_qpidd.free_ports(n)
            started = []
            try:
                for port in ports:
                    started.append(self.factory(*stock_qpidd.ha_options(ports, replicate), *extra,
                                                command=self.command("ha"), port=port))
            except BrokerStartError:
                for b in started:
                    b.kill()
                if attempt:
                    raise
                continue
            self.brokers += started
            return started

    def standalone(self, *args, ha_module=True):
        return self.factory(*args, command=self.command(*(["ha"] if ha_module else [])))


@pytest.fixture
def cluster(kind, broker_factory, request):
    return Cluster(kind, broker_factory, request)


def ha(*args):
    """(exit status, output) of one qpid-ha command line, run in this process."""
    out = io.StringIO()
    rc = qpid_ha.run([str(a) for a in args], out)
    return rc, out.getvalue()


def status(broker):
    rc, out = ha("status", "-b", broker.url, "--timeout", 10)
    return out.strip() if rc == 0 else "error: " + out.strip()


def wait_status(broker, *wanted, timeout=TIMEOUT):
    return wait_until(lambda: status(broker) in wanted, timeout=timeout, interval=0.1,
                      message=lambda: "%s to be %s (it is %s)" % (broker.url, "/".join(wanted),
                                                                  status(broker)))


def promote(broker):
    rc, out = ha("--cluster-manager", "promote", "-b", broker.url)
    assert rc == 0, out
    wait_status(broker, "active", "recovering")


# -- status, query, ping ------------------------------------------------------------------------------

def test_new_cluster_is_joining_and_query_shows_its_settings(cluster):
    b0, b1 = cluster.start(2)
    assert ha("status", "-b", b0.url) == (0, "joining\n")
    rc, out = ha("query", "-b", b1.url)
    assert rc == 0, out
    lines = out.splitlines()
    labels = ("Status:", "Broker ID:", "Brokers URL:", "Public URL:", "Replicate: ")
    assert [line[:21] for line in lines] == ["%-20s " % label for label in labels]
    values = {line[:20].strip(): line[21:] for line in lines}
    assert values["Status:"] == "joining"
    assert len(values["Broker ID:"]) == 36                    # a uuid
    assert qpid_ha.cluster_addresses(values["Brokers URL:"]) == [b0.url, b1.url]
    assert values["Replicate:"] == "all"
    # --expect compares the exact status and prints nothing.
    assert ha("status", "--expect", "joining", "-b", b0.url) == (0, "")
    assert ha("status", "--expect", "ready", "-b", b0.url) == (1, "")
    assert ha("status", "--is-primary", "-b", b0.url) == (1, "")


def test_query_all_visits_every_broker(cluster):
    b0, b1 = cluster.start(2)
    rc, out = ha("query", "--all", "-b", b0.url)
    assert rc == 0, out
    blocks = out.split("\n\n")
    assert [b.splitlines()[0] for b in blocks if b] == ["%-20s %s" % ("Address:", b.url) for b in (b0, b1)]
    ids = [line.split()[-1] for line in out.splitlines() if line.startswith("Broker ID:")]
    assert len(set(ids)) == 2


def test_ping(cluster):
    (b0,) = cluster.start(1)
    assert ha("ping", "-b", b0.url) == (0, "")
    b0.stop()
    rc, out = ha("ping", "-b", b0.url, "--timeout", 5)
    assert rc == 1
    assert out.startswith("ConnectError: cannot connect to %s" % b0.url), out


def test_broker_without_ha_module(cluster):
    if cluster.kind == "cypid":
        pytest.skip("cypid's broker always has its HA object")
    b = cluster.standalone(ha_module=False)
    assert ha("status", "-b", b.url) == (1, "Exception: HA module is not loaded on broker at %s\n" % b.url)


# -- promotion as a cluster manager does it -----------------------------------------------------------

def test_promote_only_for_the_cluster_manager(cluster):
    b0, b1 = cluster.start(2)
    rc, out = ha("promote", "-b", b0.url)
    assert rc == 1
    assert out.startswith("Exception: 'promote' should only be called by the cluster manager.\n")
    assert "use 'promote --cluster-manager'" in out
    assert status(b0) == "joining"
    # promote is not listed unless --cluster-manager is given
    assert "promote" not in ha("help")[1]
    assert "  promote      [Cluster manager only] Promote a backup broker to primary." in \
        ha("--cluster-manager", "help")[1]


def test_promote_then_fail_over_after_kill(cluster):
    b0, b1, b2 = cluster.start(3)
    promote(b0)
    wait_status(b0, "active")
    wait_status(b1, "ready")
    wait_status(b2, "ready")
    assert ha("status", "--is-primary", "-b", b0.url) == (0, "")
    assert ha("status", "--is-primary", "-b", b1.url) == (1, "")
    rc, out = ha("status", "--all", "-b", b1.url)
    assert (rc, out) == (0, "".join("%s %s\n" % (b.url, s) for b, s in
                                    ((b0, "active"), (b1, "ready"), (b2, "ready"))))
    b0.kill()                                    # kill -9 of the primary
    promote(b1)                                  # the manager promotes a ready backup
    wait_status(b1, "active")
    wait_status(b2, "ready")
    rc, out = ha("status", "--all", "-b", b2.url, "--timeout", 5)
    lines = out.splitlines()
    assert rc == 0 and len(lines) == 3, out
    assert lines[0].startswith(b0.url + " cannot connect to %s" % b0.url), out
    assert lines[1:] == ["%s active" % b1.url, "%s ready" % b2.url]


def test_console_script_exit_status(cluster):
    b0, b1 = cluster.start(2)
    script = Path(sys.prefix) / "bin" / "qpid-ha"
    if not script.exists():
        pytest.skip("qpid-ha is not installed in this environment")

    def run(*args):
        done = subprocess.run([str(script), *args], capture_output=True, text=True, timeout=60)
        return done.returncode, done.stdout

    assert run("--cluster-manager", "-b", b0.url, "promote") == (0, "")
    wait_status(b0, "active")
    assert run("status", "-b", b0.url, "--is-primary") == (0, "")
    assert run("status", "-b", b1.url, "--is-primary")[0] == 1
    assert run("bogus")[0] == 1
    assert run("bogus")[1].endswith("Exception: No valid command\n")


# -- connection defaults from the broker's config file ------------------------------------------------

def test_config_file_gives_port_and_timeout(cluster, tmp_path):
    (b0,) = cluster.start(1)
    conf = tmp_path / "qpidd.conf"
    conf.write_text("# the broker's own settings\nport=%d\nlink-heartbeat-interval=5s\n" % b0.port)
    assert ha("status", "-b", "127.0.0.1", "--config", conf) == (0, "joining\n")
    # -b naming a port wins over the file's
    rc, out = ha("status", "-b", "127.0.0.1:1", "--config", conf, "--timeout", 5)
    assert rc == 1 and "cannot connect to 127.0.0.1:1" in out


# -- replicate: one queue from another broker, outside a cluster ----------------------------------------

def test_replicate_pulls_a_queue_from_another_broker(cluster):
    source = cluster.standalone("--ha-queue-replication", "yes")
    replica = cluster.standalone("--ha-queue-replication", "yes")
    for b in (source, replica):
        with qmf.connect(b.url, timeout=TIMEOUT) as agent:
            agent.create("queue", "q")
    conn = BlockingConnection(source.url, timeout=TIMEOUT)
    try:
        sender = conn.create_sender("q")
        for i in range(3):
            sender.send(Message(body="m%d" % i))
        assert ha("replicate", "-b", replica.url, source.url, "q") == (0, "")
        for i in range(3, 5):
            sender.send(Message(body="m%d" % i))
    finally:
        conn.close()

    def depth():
        with qmf.connect(replica.url, timeout=TIMEOUT) as agent:
            return agent.get_queue("q").msgDepth
    wait_until(lambda: depth() == 5, timeout=TIMEOUT, interval=0.1, message="5 messages on the replica")


# -- usage ---------------------------------------------------------------------------------------------

def test_usage_and_argument_errors():
    rc, out = ha()
    assert rc == 1
    assert out.startswith("usage: qpid-ha <command> [<arguments>]\n\nCommands are:\n\n  ping ")
    assert out.endswith("For help with a command type: qpid-ha <command> --help\n\n"
                        "Exception: No valid command\n")
    assert ha("--help")[0] == 0
    rc, out = ha("replicate", "-b", "127.0.0.1:1", "onlyone")
    assert rc == 1 and out.startswith("usage: qpid-ha replicate [options] <remote-broker> <queue>")
    assert out.endswith("Exception: Wrong number of arguments\n")
    rc, out = ha("status", "--ssl-key", "k.pem", "-b", "127.0.0.1:1")
    assert rc == 1 and "--ssl-certificate" in out


def test_cluster_addresses():
    assert qpid_ha.cluster_addresses("amqp:tcp:h1:5672,tcp:h2:5673") == ["h1:5672", "h2:5673"]
    assert qpid_ha.cluster_addresses("h1,h2:1") == ["h1", "h2:1"]
    assert qpid_ha.cluster_addresses("") == []
