"""The Pacemaker resource agent installed with cypid (ha/ocf/cypid) under Debian's ocf-tester, and
driven action by action as Pacemaker drives a promotable clone on two nodes.

The agent runs real brokers (the stock qpidd 1.40 with its ha module, and cypid once its broker has
HA) and watches them with the installed qpid-ha. ocf-tester comes from Debian's resource-agents
(``make ocf-tester``); without it, or without the stock qpidd, those cases skip.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from cypid.ha import ocf

from tests.support import stock_qpidd
from tests.support.broker import wait_until

OCF_SUCCESS, OCF_ERR_GENERIC, OCF_ERR_INSTALLED, OCF_ERR_CONFIGURED = 0, 1, 5, 6
OCF_NOT_RUNNING, OCF_RUNNING_MASTER = 7, 8
QPID_HA = Path(sys.prefix) / "bin" / "qpid-ha"


def cypid_has_ha() -> bool:
    from cypid.broker import options
    return "ha-cluster" in options.OPTIONS_BY_NAME


@pytest.fixture(params=["qpidd", "cypid"])
def broker_params(request):
    """The agent's parameters that choose the broker program (and its modules)."""
    if not QPID_HA.exists():
        pytest.skip("qpid-ha is not installed in this environment")
    if request.param == "qpidd":
        root = stock_qpidd.require()
        cmd = stock_qpidd.command(root, "amqp", "ha")
        return {"binary": cmd[0], "options": " ".join(cmd[1:] + ["--link-maintenance-interval", "0.1"])}
    if not cypid_has_ha():
        pytest.skip("cypid's broker has no HA module yet (--ha-cluster)")
    return {"binary": str(Path(sys.prefix) / "bin" / "qpidd"), "options": "--link-maintenance-interval 0.1"}


@pytest.fixture
def workdir():
    """A directory user nobody can enter (ocf-tester runs the agent's meta-data as nobody), holding a
    copy of the installed agent; removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix="cypid-ocf-"))
    os.chmod(path, 0o755)
    agent = path / "cypid"
    shutil.copy(ocf.agent_path(), agent)
    os.chmod(agent, 0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


class Node:
    """One resource instance: the agent run with its OCF_RESKEY_* parameters, as Pacemaker runs it."""

    def __init__(self, agent, name, params):
        self.agent = agent
        self.name = name
        self.params = params

    def env(self, interval_ms=10000):
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OCF_", "QPID_"))}
        env.update({"OCF_ROOT": "/usr/lib/ocf", "OCF_RESOURCE_INSTANCE": self.name,
                    "OCF_RESKEY_CRM_meta_timeout": "60000", "OCF_RESKEY_CRM_meta_interval": str(interval_ms)})
        env.update({"OCF_RESKEY_" + k: str(v) for k, v in self.params.items()})
        return env

    def run(self, action, interval_ms=10000):
        done = subprocess.run([str(self.agent), action], env=self.env(interval_ms), capture_output=True,
                              text=True, timeout=120)
        return done.returncode

    def pid(self):
        try:
            return int(Path(self.params["pidfile"]).read_text())
        except (OSError, ValueError):
            return None


def nodes(workdir, broker_params, n):
    ports = stock_qpidd.free_ports(n)
    url = ",".join("127.0.0.1:%d" % p for p in ports)
    out = []
    for i, port in enumerate(ports):
        params = dict(broker_params, qpid_ha=QPID_HA, port=port, interface="127.0.0.1", brokers_url=url,
                      data_dir=workdir / ("data%d" % i), pidfile=workdir / ("node%d.pid" % i),
                      status_timeout=10)
        params["options"] += " --ha-replicate all --link-heartbeat-interval 5"
        out.append(Node(workdir / "cypid", "cypid_%d" % i, params))
    return out


@pytest.fixture
def started(request):
    """Stops (by the agent, then by pid) every node a test started."""
    nodes_started = []
    yield nodes_started
    for node in nodes_started:
        node.run("stop")
        pid = node.pid()
        if pid:
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass


# ocf-tester on cypid only (the agent is cypid's; the two-node test below runs it on stock qpidd too).
@pytest.mark.parametrize("broker_params", ["cypid"], indirect=True)
def test_ocf_tester_passes(workdir, broker_params, started):
    tester = shutil.which("ocf-tester")
    if tester is None:
        pytest.skip("ocf-tester not installed (make ocf-tester: Debian's resource-agents)")
    (node,) = nodes(workdir, broker_params, 1)
    started.append(node)
    args = [tester, "-n", node.name]
    for k, v in node.params.items():
        args += ["-o", "%s=%s" % (k, v)]
    done = subprocess.run(args + [str(node.agent)], capture_output=True, text=True, timeout=600)
    log = (workdir / "data0" / "cypid.log")
    assert done.returncode == 0, "%s\n%s\n--- broker log ---\n%s" % (
        done.stdout, done.stderr, log.read_text() if log.exists() else "(none)")
    assert "passed all tests" in done.stdout


def test_promotable_clone_on_two_nodes(workdir, broker_params, started):
    if not Path("/usr/lib/ocf/lib/heartbeat/ocf-shellfuncs").exists():
        pytest.skip("resource-agents' ocf-shellfuncs not installed (make ocf-tester)")
    a, b = nodes(workdir, broker_params, 2)
    assert a.run("validate-all") == OCF_SUCCESS
    assert a.run("monitor", interval_ms=0) == OCF_NOT_RUNNING          # the probe
    started.extend([a, b])
    assert a.run("start") == OCF_SUCCESS
    assert b.run("start") == OCF_SUCCESS
    assert a.run("monitor") == OCF_SUCCESS and b.run("monitor") == OCF_SUCCESS     # both backups (joining)
    assert a.run("promote") == OCF_SUCCESS
    assert a.run("monitor") == OCF_RUNNING_MASTER
    assert b.run("monitor") == OCF_SUCCESS
    assert b.run("demote") == OCF_SUCCESS              # a backup: nothing to do
    # The primary dies (kill -9): monitor says not running; Pacemaker promotes the other, restarts it.
    os.kill(a.pid(), 9)
    wait_until(lambda: a.run("monitor") == OCF_NOT_RUNNING, timeout=30, interval=0.1)
    assert b.run("promote") == OCF_SUCCESS
    assert b.run("monitor") == OCF_RUNNING_MASTER
    assert a.run("start") == OCF_SUCCESS
    wait_until(lambda: subprocess.run([str(QPID_HA), "status", "--expect", "ready", "-b",
                                       "127.0.0.1:%s" % a.params["port"]]).returncode == 0,
               timeout=60, interval=0.2, message="the restarted node to be a ready backup")
    # Demoting the primary restarts it as a backup.
    old_pid = b.pid()
    assert b.run("demote") == OCF_SUCCESS
    assert b.pid() != old_pid
    assert b.run("monitor") == OCF_SUCCESS
    assert a.run("stop") == OCF_SUCCESS and b.run("stop") == OCF_SUCCESS
    assert a.run("monitor") == OCF_NOT_RUNNING and a.run("stop") == OCF_SUCCESS


def test_validate_all_names_what_is_wrong(workdir):
    if not Path("/usr/lib/ocf/lib/heartbeat/ocf-shellfuncs").exists():
        pytest.skip("resource-agents' ocf-shellfuncs not installed (make ocf-tester)")
    node = Node(workdir / "cypid", "cypid_v", {"binary": "/nonexistent/qpidd", "qpid_ha": QPID_HA,
                                                "pidfile": workdir / "v.pid"})
    assert node.run("validate-all") == OCF_ERR_INSTALLED
    node.params.update(binary=sys.executable, port="56x")
    assert node.run("validate-all") == OCF_ERR_CONFIGURED
    node.params.update(port="5672", config=workdir / "missing.conf")
    assert node.run("validate-all") == OCF_ERR_CONFIGURED
    assert node.run("bogus") == 3       # OCF_ERR_UNIMPLEMENTED


def test_cypid_ocf_agent_installs_a_link(tmp_path, capsys):
    assert ocf.main([]) == 0
    assert capsys.readouterr().out.strip() == ocf.agent_path()
    assert ocf.main(["--install", str(tmp_path)]) == 0
    link = tmp_path / "resource.d" / "cypid" / "cypid"
    assert os.path.realpath(link) == os.path.realpath(ocf.agent_path())
    assert os.access(link, os.X_OK)
    assert ocf.main(["--bogus"]) == 2
