"""The broker-process test support, exercised against a tiny fake server (not the real broker)."""
import signal
import socket
import sys
import textwrap
import time

import pytest

from tests.support.broker import BrokerFactory, BrokerProcess, BrokerStartError, wait_until

FAKE_SERVER = textwrap.dedent(
    r"""
    import argparse, os, signal, socket, sys, time
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, default=5672)
    p.add_argument("--interface", default="127.0.0.1")
    p.add_argument("--data-dir")
    p.add_argument("--mode", default="ok")
    a = p.parse_args()
    if a.mode == "fail":
        print("qpidd: invalid value for --port: 'abc'", file=sys.stderr)
        sys.exit(1)
    if a.mode == "silent":
        time.sleep(60)  # poll: the fake broker stays silent until the test gives up on it
        sys.exit(0)
    if a.mode == "stubborn":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    else:
        signal.signal(signal.SIGTERM, lambda *_: (print("notice Shut down", file=sys.stderr), sys.exit(0)))
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((a.interface, a.port))
    s.listen(5)
    if a.data_dir:
        open(os.path.join(a.data_dir, "marker"), "a").write("x")
    print("noise before", file=sys.stderr, flush=True)
    print("2026-11-25 10:00:00 [Broker] notice Listening on TCP port %d" % s.getsockname()[1],
          file=sys.stderr, flush=True)
    while True:
        c, _ = s.accept()
        c.sendall(b"hello")
        c.close()
    """
)


@pytest.fixture
def fake(tmp_path):
    script = tmp_path / "fake_qpidd.py"
    script.write_text(FAKE_SERVER)
    return [sys.executable, str(script)]


def connect(port):
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        return s.recv(5)


def test_start_reports_port_url_and_serves(fake, tmp_path):
    b = BrokerProcess(tmp_path / "b", command=fake)
    try:
        b.start()
        assert b.is_running()
        assert b.port and b.port > 0
        assert b.url == f"127.0.0.1:{b.port}"
        assert connect(b.port) == b"hello"
        assert (tmp_path / "b" / "data" / "marker").exists()
        assert "--data-dir" in b.command_line(0)
        assert "Listening on TCP port" in b.log_text()
        assert b.log_lines("noise") == ["noise before"]
    finally:
        b.stop()
    assert not b.is_running()
    assert b.returncode == 0
    assert "Shut down" in b.log_text()


def test_log_file_lives_next_to_data_dir(fake, tmp_path):
    with BrokerProcess(tmp_path / "b", command=fake) as b:
        assert b.log_path.parent == b.data_dir.parent
        assert b.log_path.exists()


def test_restart_keeps_port_and_appends_log(fake, tmp_path):
    b = BrokerProcess(tmp_path / "b", command=fake)
    try:
        b.start()
        port, pid = b.port, b.pid
        b.restart()
        assert b.port == port and b.pid != pid
        assert connect(b.port) == b"hello"
        b.restart(kill=True)
        assert b.port == port
        assert len(b.log_lines("Listening on TCP port")) == 3
    finally:
        b.stop()


def test_kill_is_sigkill(fake, tmp_path):
    b = BrokerProcess(tmp_path / "b", command=fake).start()
    assert b.kill() == -signal.SIGKILL
    assert not b.is_running()


def test_stop_escalates_to_sigkill_after_deadline(fake, tmp_path):
    b = BrokerProcess(tmp_path / "b", ["--mode", "stubborn"], command=fake, stop_timeout=0.3)
    b.start()
    t0 = time.monotonic()
    assert b.stop() == -signal.SIGKILL
    assert time.monotonic() - t0 < 5
    assert "SIGKILL" in b.log_text()


def test_exit_before_listening_raises_with_log(fake, tmp_path):
    b = BrokerProcess(tmp_path / "b", ["--mode", "fail"], command=fake)
    with pytest.raises(BrokerStartError, match=r"(?s)status 1.*invalid value for --port"):
        b.start()
    assert not b.is_running()


def test_start_timeout_kills_the_process(fake, tmp_path):
    b = BrokerProcess(tmp_path / "b", ["--mode", "silent"], command=fake, start_timeout=0.5)
    with pytest.raises(BrokerStartError, match="timed out"):
        b.start()
    assert not b.is_running()
    assert b.returncode == -signal.SIGKILL


def test_start_twice_is_an_error(fake, tmp_path):
    with BrokerProcess(tmp_path / "b", command=fake) as b:
        with pytest.raises(RuntimeError):
            b.start()


def test_url_before_start_is_an_error(tmp_path):
    with pytest.raises(RuntimeError):
        BrokerProcess(tmp_path / "b", command=["true"]).url


def test_factory_starts_several_and_closes_all(fake, tmp_path):
    factory = BrokerFactory(tmp_path / "brokers", command=fake)
    a = factory()
    b = factory(name="second")
    assert a.port != b.port
    assert a.base_dir.name == "b0" and b.base_dir.name == "second"
    with pytest.raises(ValueError):
        factory(name="second")
    factory.close()
    assert not a.is_running() and not b.is_running()
    assert [x for x, _ in factory.logs()] == [a, b]


def test_wait_for_log(fake, tmp_path):
    with BrokerProcess(tmp_path / "b", command=fake) as b:
        m = b.wait_for_log(r"TCP port (\d+)", timeout=2)
        assert int(m.group(1)) == b.port
        with pytest.raises(TimeoutError, match="never-there"):
            b.wait_for_log("never-there", timeout=0.05)


def test_wait_until_returns_value_and_times_out():
    calls = []

    def third_time():
        calls.append(1)
        return len(calls) if len(calls) >= 3 else None

    assert wait_until(third_time, timeout=5, interval=0.001) == 3
    t0 = time.monotonic()
    with pytest.raises(TimeoutError, match="the moon"):
        wait_until(lambda: False, timeout=0.1, message="the moon")
    assert 0.09 <= time.monotonic() - t0 < 2


def test_qpid_environment_does_not_leak(fake, tmp_path, monkeypatch):
    monkeypatch.setenv("QPID_PORT", "1")
    with BrokerProcess(tmp_path / "b", command=fake) as b:
        assert b.port != 1
