"""cypid starts as qpidd does: every qpidd 1.36/1.40 option, a packaged qpidd.conf, the daemon and its
init-script commands (-d, --check, --quit), systemd's readiness notice, and start-up failures in
one line. Brokers are real processes on free ports (tests/support/broker.py)."""
from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from proton.utils import BlockingConnection

from cypid.broker.options import OPTIONS_BY_NAME, OptionsError, parse_options
from tests.support.broker import BrokerProcess, wait_until
from tests.support.stock_qpidd import comparison as stock_qpidd
from tests.tools.conftest import cypid_command

#: Every option qpidd 1.40 prints in --help with its amqp, linearstore, legacystore and ha modules
#: (and the acl/ssl built in), plus the few of 1.36-era packaged configurations, with a value each.
QPIDD_OPTIONS = {
    "acl-file": None, "auth": "no", "client-config": "/etc/qpid/qpidc.conf", "close-fd": "7",
    "connection-backlog": "10", "connection-limit-per-ip": "0", "connection-limit-per-user": "0",
    "data-dir": "DATA", "default-event-threshold-ratio": "80", "default-flow-resume-threshold": "70",
    "default-flow-stop-threshold": "80", "default-message-group": "qpid.no-group",
    "default-queue-limit": "104857600", "domain": "example", "dtx-default-timeout": "60",
    "dtx-max-timeout": "3600", "efp-file-size": "2048", "efp-partition": "1", "enable-timestamp": "no",
    "federation-tag": "tag", "interface": "127.0.0.1", "jfile-size-pgs": "24",
    "journal-flush-timeout": "500ms", "known-hosts-url": "none", "link-heartbeat-interval": "120",
    "link-maintenance-interval": "2", "listen-disable": "rdma", "load-module": "/usr/lib/qpid/daemon/amqp.so",
    "log-category": "yes", "log-disable": "debug-", "log-enable": "info+", "log-function": "no",
    "log-hires-timestamp": "no", "log-level": "yes", "log-prefix": "x", "log-source": "no",
    "log-thread": "no", "log-time": "yes", "log-to-file": "LOG", "log-to-stderr": "yes",
    "log-to-stdout": "no", "log-to-syslog": "no", "max-connections": "500", "max-negotiate-time": "10000",
    "max-purge-batch": "1000", "max-queues-per-user": "0", "mgmt-pub-interval": "10",
    "mgmt-publish": "yes", "mgmt-qmf1": "no", "mgmt-qmf2": "yes", "mgmt-enable": "yes",
    "module-dir": "/usr/lib/qpid/daemon", "no-data-dir": "no", "no-module-dir": "yes", "num-jfiles": "8",
    "overwrite-before-return": "no", "paging-dir": "/tmp/paging", "pid-dir": "PIDS", "pidfile": None,
    "port": "0", "protocols": "amqp1.0", "queue-patterns": "auto.*", "queue-purge-interval": "600",
    "realm": "QPID", "require-encryption": "no", "sasl-config": None, "sasl-service-name": "qpidd",
    "session-max-unacked": "5000", "socket-fd": "3", "ssl-cert-db": "/etc/pki", "ssl-cert-name": "vm",
    "ssl-cert-password-file": "/etc/pw", "ssl-port": "5671", "ssl-require-client-authentication": "no",
    "ssl-sasl-no-dict": "no", "ssl-use-export-policy": "no", "store-dir": None, "syslog-facility": "LOG_DAEMON",
    "syslog-name": "qpidd", "tcp-nodelay": "yes", "topic-patterns": "auto.*", "tpl-jfile-size-pgs": "24",
    "tpl-num-jfiles": "8", "tpl-wcache-num-pages": "16", "tpl-wcache-page-size": "4", "transport": "tcp",
    "truncate": "no", "wcache-num-pages": "16", "wcache-page-size": "16", "worker-threads": "3",
    "daemon": "no", "check": "no", "quit": "no", "kill": "no", "wait": "600", "trace": "no",
    "cluster-mechanism": "DIGEST-MD5 ANONYMOUS", "max-session-rate": "0", "store-async": "no",
}
#: HA's options belong to the ha helper's table; checked when it has them.
HA_OPTIONS = {
    "ha-cluster": "no", "ha-queue-replication": "no", "ha-brokers-url": "127.0.0.1:1",
    "ha-public-url": "127.0.0.1:1", "ha-replicate": "none", "ha-username": "u", "ha-password": "p",
    "ha-mechanism": "PLAIN", "ha-backup-timeout": "10", "ha-flow-messages": "1000", "ha-flow-bytes": "0",
}
#: the options that set something cypid does not do: each is named once in a notice at start-up
#: (a switch set to "no" is not set at all)
INERT_GIVEN = {name for name, spec in OPTIONS_BY_NAME.items() if spec.inert and name in QPIDD_OPTIONS
               and not (spec.kind == "switch" and QPIDD_OPTIONS[name] == "no")}

#: a distribution's qpidd.conf as packaged (comments, and the one line such packages carried)
PACKAGED_CONF = """\
# qpidd configuration, as installed by the package: name=value lines; see qpidd --help.
#
cluster-mechanism=DIGEST-MD5 ANONYMOUS
"""


def write_conf(path: Path, values: dict) -> Path:
    lines = ["# every qpidd option"] + ["%s=%s" % (k, v) for k, v in values.items() if v is not None]
    path.write_text("\n".join(lines) + "\n")
    return path


def all_options_conf(tmp_path: Path) -> tuple[Path, dict]:
    values = dict(QPIDD_OPTIONS)
    values.update({k: v for k, v in HA_OPTIONS.items() if k in OPTIONS_BY_NAME})
    values.update(data_dir_values(tmp_path))
    return write_conf(tmp_path / "all.conf", values), values


def data_dir_values(tmp_path: Path) -> dict:
    return {"data-dir": str(tmp_path / "data"), "log-to-file": str(tmp_path / "file.log"),
            "pid-dir": str(tmp_path / "pids")}


def run_qpidd(*args, timeout=120, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cypid_command() + list(args), capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, **kw)


# -- options ---------------------------------------------------------------------------------------

def test_every_qpidd_option_is_known():
    missing = sorted(set(QPIDD_OPTIONS) - set(OPTIONS_BY_NAME))
    assert not missing, "qpidd options cypid refuses: %s" % missing


def test_stock_qpidd_help_lists_nothing_cypid_refuses():
    command, why = stock_qpidd()
    if command is None:
        pytest.skip(why)
    program = Path(command[0])
    modules = program.resolve().parent.parent / "lib" / "qpid" / "daemon"
    names = set()
    for store in ("linearstore.so", "legacystore.so"):
        args = ["--no-module-dir"] + ["--load-module=%s" % (modules / m)
                                       for m in ("amqp.so", "ha.so", store) if (modules / m).exists()]
        out = subprocess.run([str(program)] + args + ["--help"], capture_output=True, text=True,
                             timeout=60).stdout
        names |= set(re.findall(r"^\s+(?:-\w \[ )?--([a-z0-9-]+)", out, re.M))
    assert len(names) > 80
    names -= {"help", "version", "config"}
    names -= {n for n in names if n.startswith("ha-") and n not in OPTIONS_BY_NAME}  # ha/'s table
    assert sorted(names - set(OPTIONS_BY_NAME)) == []


def test_conf_with_every_option_parses(tmp_path):
    conf, _ = all_options_conf(tmp_path)
    options = parse_options(["--config", str(conf)], env={}, exit_on_error=False)
    assert set(options.inert) == INERT_GIVEN
    assert options.port == 0 and options.log_enable == ["info+"]


def test_inert_option_values_are_still_checked(tmp_path):
    with pytest.raises(OptionsError, match=r"--wcache-page-size: 'lots'"):
        parse_options(["--wcache-page-size", "lots"], env={}, exit_on_error=False)
    conf = write_conf(tmp_path / "bad.conf", {"log-to-syslog": "maybe"})
    with pytest.raises(OptionsError, match=r"--log-to-syslog: 'maybe'"):
        parse_options(["--config", str(conf)], env={}, exit_on_error=False)


def test_unknown_option_still_stops_start_up(tmp_path):
    conf = write_conf(tmp_path / "typo.conf", {"data-dir": str(tmp_path / "d"), "tcp-nodelayy": "yes"})
    result = run_qpidd("--config", str(conf))
    assert result.returncode == 1
    assert "unrecognised option 'tcp-nodelayy'" in result.stderr
    assert "Traceback" not in result.stderr
    result = run_qpidd("--data-dir", str(tmp_path / "d"), "--no-such-option")
    assert result.returncode == 1 and "unrecognised option '--no-such-option'" in result.stderr


def test_conf_with_every_option_starts_cypid_with_a_notice_each(tmp_path):
    conf, values = all_options_conf(tmp_path)
    broker = BrokerProcess(tmp_path / "b", ["--config", str(conf), "--log-to-stderr", "yes"],
                           command=cypid_command())
    broker.start()
    try:
        conn = BlockingConnection(broker.url, timeout=30)
        conn.close()
        log = broker.log_text()
        for name in INERT_GIVEN:
            assert len(re.findall(r"--%s has no effect in cypid: \S" % re.escape(name), log)) == 1, name
        assert "Traceback" not in log
    finally:
        broker.stop()


def test_packaged_qpidd_conf_starts_cypid(tmp_path):
    conf = tmp_path / "qpidd.conf"
    conf.write_text(PACKAGED_CONF)
    broker = BrokerProcess(tmp_path / "b", ["--config", str(conf)], command=cypid_command())
    broker.start()
    try:
        assert broker.log_lines(r"--cluster-mechanism has no effect in cypid")
    finally:
        broker.stop()


# -- the daemon and qpidd's init-script commands -------------------------------------------------------

def daemon_args(tmp_path: Path) -> list[str]:
    return ["--port", "0", "--interface", "127.0.0.1", "--data-dir", str(tmp_path / "data"),
            "--pid-dir", str(tmp_path / "pids"), "--log-to-file", str(tmp_path / "daemon.log")]


def test_daemon_check_quit(tmp_path):
    started = run_qpidd("-d", *daemon_args(tmp_path))
    assert started.returncode == 0, started.stderr
    port = int(started.stdout.strip())
    pid_file = tmp_path / "pids" / ("qpidd.%d.pid" % port)
    pid = int(pid_file.read_text())
    try:
        # ready means listening: a client connects at once
        BlockingConnection("127.0.0.1:%d" % port, timeout=30).close()
        checked = run_qpidd("--check", "--port", str(port), "--pid-dir", str(tmp_path / "pids"))
        assert (checked.returncode, checked.stdout.strip()) == (0, str(pid))
        other = run_qpidd("--check", "--port", str(port + 1), "--pid-dir", str(tmp_path / "pids"))
        assert other.returncode == 1 and "not running" in other.stderr
        quit_ = run_qpidd("-q", "--port", str(port), "--pid-dir", str(tmp_path / "pids"))
        assert quit_.returncode == 0, quit_.stderr
        assert not os.path.exists("/proc/%d" % pid) or _zombie(pid)
        assert not pid_file.exists()
        again = run_qpidd("--check", "--port", str(port), "--pid-dir", str(tmp_path / "pids"))
        assert again.returncode == 1
        assert run_qpidd("-q", "--port", str(port), "--pid-dir", str(tmp_path / "pids")).returncode == 1
    finally:
        if os.path.exists("/proc/%d" % pid) and not _zombie(pid):
            os.kill(pid, 9)
    assert "Shut down" in (tmp_path / "daemon.log").read_text()


def _zombie(pid: int) -> bool:
    try:
        return Path("/proc/%d/stat" % pid).read_text().split(") ", 1)[1].startswith("Z")
    except OSError:
        return False


def test_daemon_start_up_failure_is_its_exit_status(tmp_path):
    (tmp_path / "data").write_text("a file, not a directory")
    result = run_qpidd("-d", *daemon_args(tmp_path))
    assert result.returncode == 1
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("Daemon startup failed: ") and str(tmp_path / "data") in lines[-1]
    assert "Traceback" not in result.stderr


def test_systemd_notify_ready_once_listening(tmp_path):
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(60)
    broker = BrokerProcess(tmp_path / "b", command=cypid_command(), env={"NOTIFY_SOCKET": path})
    broker.start()
    try:
        message = sock.recv(4096).decode()
        assert "READY=1" in message.splitlines() and "MAINPID=%d" % broker.pid in message
        broker.stop()
        assert "STOPPING=1" in sock.recv(4096).decode()
    finally:
        broker.stop()
        sock.close()


def test_systemd_unit_ships():
    unit = Path(__file__).resolve().parents[2] / "conf" / "cypid.service"
    text = unit.read_text()
    assert re.search(r"^Type=notify$", text, re.M)
    assert re.search(r"^ExecStart=\S*qpidd --config \S+", text, re.M)


# -- start-up failures: one line naming the cause ------------------------------------------------------

def one_line_failure(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_data_dir_that_is_a_file(tmp_path):
    (tmp_path / "data").write_text("x")
    line = one_line_failure(run_qpidd("--port", "0", "--data-dir", str(tmp_path / "data")))
    assert str(tmp_path / "data") in line and "not a directory" in line


def test_data_dir_on_a_read_only_file_system(tmp_path):
    mnt = tmp_path / "ro"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(mnt)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a read-only tmpfs here")
    try:
        line = one_line_failure(run_qpidd("--port", "0", "--data-dir", str(mnt / "data")))
        assert str(mnt / "data") in line and "Read-only file system" in line
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True)
