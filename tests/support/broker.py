"""Start and stop real broker processes for tests, and wait on conditions (never fixed sleeps).

``BrokerProcess(base_dir, args)`` runs ``qpidd --port 0 --interface 127.0.0.1 --data-dir
<base_dir>/data <args>`` and waits for its stderr line ``Listening on TCP port N``. Its stderr (and
stdout) go to ``<base_dir>/qpidd.log`` (appended across restarts), so a test can grep it with
``log_text()``.

Leak audit: brokers run with ``CYPID_AUDIT=1`` (broker/audit.py) and write what they hold at
start-up and at a clean stop; ``stop()`` compares the two and keeps what was leaked in ``leaks`` and
in this process's ledger of unclaimed leaks. tests/conftest.py fails the test (or the module, for a
module's broker) during which a leak was found, whoever started and stopped the broker: a fixture or
the test itself; ``claim_leaks()`` takes them off the ledger (a test that means to leak claims its
own). A broker killed, or one that writes no audit (another program under CYPID_TEST_QPIDD), is not
audited. The event
loop is the environment's ``CYPID_LOOP`` (uvloop unless it says ``asyncio``).

The command is, in order: the ``command`` argument; the ``CYPID_TEST_QPIDD`` environment variable
(a path or a shell-style command line); ``<sys.prefix>/bin/qpidd``; ``python -m cypid.broker.main``.
"""
from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from cypid.broker import audit

#: What a broker prints once it accepts connections (qpidd itself says "TCP/TCP6").
LISTENING_RE = re.compile(r"Listening on TCP(?:/TCP6)? port (\d+)")


#: Leak lines found by clean stops and not claimed yet. One ledger per test process (pytest-xdist runs
#: one test at a time in each); tests/conftest.py empties it at every test's and module's teardown.
_unclaimed: list[str] = []


def claim_leaks(lines: Iterable[str] | None = None) -> list[str]:
    """Take leak lines off the ledger: ``lines`` (one entry each, those still there), else all of
    them. Returns what was taken."""
    if lines is None:
        taken = list(_unclaimed)
        _unclaimed.clear()
        return taken
    taken = []
    for line in lines:
        if line in _unclaimed:
            _unclaimed.remove(line)
            taken.append(line)
    return taken


class BrokerStartError(RuntimeError):
    """The broker exited or did not report ``Listening on TCP port N`` in time."""


def wait_until(predicate: Callable[[], Any], timeout: float = 10, interval: float = 0.01,
               message: str | Callable[[], str] | None = None) -> Any:
    """Call ``predicate`` every ``interval`` seconds until it returns something truthy, and return that.
    After ``timeout`` seconds raise TimeoutError (``message``, or a callable giving it, says what
    was awaited). The predicate is always tried at least once, and once more at the deadline."""
    tries = _tries(predicate, timeout, interval, message)
    try:
        while True:
            time.sleep(next(tries))
    except StopIteration as done:
        return done.value


async def async_wait_until(predicate: Callable[[], Any], timeout: float = 10, interval: float = 0.01,
                           message: str | Callable[[], str] | None = None) -> Any:
    """``wait_until`` inside a coroutine: the loop keeps running between tries (``asyncio.sleep``)."""
    import asyncio
    tries = _tries(predicate, timeout, interval, message)
    try:
        while True:
            await asyncio.sleep(next(tries))
    except StopIteration as done:
        return done.value


def _tries(predicate, timeout, interval, message):
    """The waits' common part: yields how long to sleep before the next try; returns the truthy result."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        yield min(interval, remaining)
    result = predicate()
    if result:
        return result
    text = message() if callable(message) else message
    what = text or getattr(predicate, "__name__", "condition")
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")


def default_command() -> list[str]:
    """The broker command line's program part (see the module docstring)."""
    override = os.environ.get("CYPID_TEST_QPIDD")
    if override:
        return shlex.split(override)
    script = Path(sys.prefix) / "bin" / "qpidd"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "cypid.broker.main"]


def _clean_env(extra: dict[str, str] | None) -> dict[str, str]:
    # A developer's QPID_* settings must not leak into test brokers.
    env = {k: v for k, v in os.environ.items() if not k.startswith("QPID_")}
    env.setdefault("PYTHONUNBUFFERED", "1")
    env.setdefault(audit.AUDIT_ENV, "1")
    if extra:
        env.update(extra)
    return env


class BrokerProcess:
    """One broker process with its own data dir under ``base_dir``."""

    def __init__(self, base_dir: str | os.PathLike, args: Sequence[str] = (), *,
                 command: Sequence[str] | None = None, env: dict[str, str] | None = None,
                 port: int = 0, start_timeout: float = 30.0, stop_timeout: float = 10.0,
                 data_dir: bool = True):
        self.base_dir = Path(base_dir)
        self.data_dir = self.base_dir / "data"
        self.log_path = self.base_dir / "qpidd.log"
        self.args = list(args)
        self.command = list(command) if command else default_command()
        self.env = env
        self.requested_port = port
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self.use_data_dir = data_dir
        self.port: int | None = None
        self.proc: subprocess.Popen | None = None
        self.starts = 0
        self.leaks: list[str] = []      # what clean stops found still held (see audit_run)
        self._run_offset = 0            # where this run's lines start in the log

    # -- state -----------------------------------------------------------------------------
    @property
    def host(self) -> str:
        return "127.0.0.1"

    @property
    def url(self) -> str:
        """``127.0.0.1:PORT`` (what the tools' -b and proton's Container.connect take)."""
        if self.port is None:
            raise RuntimeError("broker not started")
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    @property
    def returncode(self) -> int | None:
        return self.proc.poll() if self.proc else None

    def is_running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def command_line(self, port: int) -> list[str]:
        cmd = self.command + ["--port", str(port), "--interface", "127.0.0.1"]
        if self.use_data_dir:
            cmd += ["--data-dir", str(self.data_dir)]
        return cmd + self.args

    # -- lifecycle -------------------------------------------------------------------------
    def start(self, port: int | None = None) -> BrokerProcess:
        """Start the broker (on ``port``, else the one it had, else ``self.requested_port``) and
        wait until it reports the port it listens on."""
        if self.is_running():
            raise RuntimeError(f"broker already running (pid {self.pid})")
        if port is None:
            port = self.port if self.port is not None else self.requested_port
        self.base_dir.mkdir(parents=True, exist_ok=True)
        if self.use_data_dir:
            self.data_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            offset = log.tell()
            header = f"=== start {self.starts + 1}: {shlex.join(self.command_line(port))}\n"
            log.write(header.encode())
            offset += len(header.encode())
            log.flush()
            self._run_offset = offset
            self.proc = subprocess.Popen(
                self.command_line(port), stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                env=_clean_env(self.env), cwd=str(self.base_dir),
                start_new_session=True,  # a Ctrl-C aimed at pytest does not reach it first
            )
        self.starts += 1
        self.port = None
        try:
            self.port = self._wait_listening(offset)
        except BaseException:
            self.kill()
            raise
        return self

    def _wait_listening(self, offset: int) -> int:
        def listening() -> int | None:
            m = LISTENING_RE.search(self._read_from(offset))
            if m:
                return int(m.group(1))
            if self.proc.poll() is not None:
                # Read once more: the line may have been written just before the exit.
                m = LISTENING_RE.search(self._read_from(offset))
                if m:
                    return int(m.group(1))
                raise BrokerStartError(
                    f"broker exited with status {self.proc.returncode} before listening; "
                    f"log {self.log_path}:\n{self._tail(offset)}")
            return None

        try:
            return wait_until(listening, timeout=self.start_timeout, interval=0.01,
                              message="'Listening on TCP port N' in the broker's log")
        except TimeoutError as e:
            raise BrokerStartError(f"{e}; log {self.log_path}:\n{self._tail(offset)}") from None

    def stop(self, timeout: float | None = None) -> int | None:
        """SIGTERM, then SIGKILL if it has not exited after ``timeout`` seconds. Returns the exit
        status (negative: killed by that signal); None if it was never started."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(signal.SIGTERM)
            except ProcessLookupError:  # pragma: no cover - exited between poll and signal
                pass
            try:
                self.proc.wait(self.stop_timeout if timeout is None else timeout)
            except subprocess.TimeoutExpired:
                self._append_log(f"=== broker pid {self.proc.pid} ignored SIGTERM; sending SIGKILL\n")
                self.kill()
            else:
                self.audit_run()
        return self.proc.returncode

    def audit_run(self) -> list[str]:
        """Compare this run's stop audit with its start audit; what was kept is added to ``leaks``
        (and returned). Nothing if the run wrote no stop audit (killed, or not a cypid broker)."""
        reports = audit.parse(self._read_from(self._run_offset))
        stops = [r for r in reports if r.get("when") == "stop"]
        if not stops:
            return []
        starts = [r for r in reports if r.get("when") == "start"]
        found = audit.problems(starts[0] if starts else None, stops[-1])
        if found:
            found = [f"{self.base_dir.name} run {self.starts}: " + "; ".join(found)]
            self.leaks.extend(found)
            _unclaimed.extend(found)
        return found

    def kill(self) -> int | None:
        """SIGKILL (kill -9) the broker and reap it."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            try:
                self.proc.kill()
            except ProcessLookupError:  # pragma: no cover
                pass
            self.proc.wait()
        return self.proc.returncode

    def restart(self, kill: bool = False, port: int | None = None) -> BrokerProcess:
        """Stop (or, with ``kill=True``, SIGKILL) and start again with the same data dir and, unless
        ``port`` is given, the same port."""
        if kill:
            self.kill()
        else:
            self.stop()
        return self.start(port=port)

    def signal(self, signum: int) -> None:
        """Send ``signum`` to this broker's pid (e.g. SIGSTOP/SIGCONT in fault tests)."""
        if not self.is_running():
            raise RuntimeError("broker not running")
        self.proc.send_signal(signum)

    # -- logs ------------------------------------------------------------------------------
    def log_text(self) -> str:
        """Everything the broker wrote to stderr/stdout, over all its starts."""
        return self._read_from(0)

    def log_size(self) -> int:
        """Bytes in the log so far: an offset for ``log_text_from``."""
        try:
            return os.path.getsize(self.log_path)
        except FileNotFoundError:
            return 0

    def log_text_from(self, offset: int) -> str:
        """What the broker wrote since the log held ``offset`` bytes."""
        return self._read_from(offset)

    def log_lines(self, pattern: str | re.Pattern | None = None) -> list[str]:
        lines = self.log_text().splitlines()
        if pattern is None:
            return lines
        regex = re.compile(pattern) if isinstance(pattern, str) else pattern
        return [line for line in lines if regex.search(line)]

    def wait_for_log(self, pattern: str | re.Pattern, timeout: float = 10) -> re.Match:
        """Wait until the log matches ``pattern``; return the match."""
        regex = re.compile(pattern) if isinstance(pattern, str) else pattern
        return wait_until(lambda: regex.search(self.log_text()), timeout=timeout,
                          message=lambda: f"{regex.pattern!r} in {self.log_path}")

    def _read_from(self, offset: int) -> str:
        try:
            with open(self.log_path, "rb") as f:
                f.seek(offset)
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def _tail(self, offset: int, limit: int = 4000) -> str:
        text = self._read_from(offset)
        return text if len(text) <= limit else "...\n" + text[-limit:]

    def _append_log(self, text: str) -> None:
        with open(self.log_path, "a") as f:
            f.write(text)

    # -- context manager -------------------------------------------------------------------
    def __enter__(self) -> BrokerProcess:
        if not self.is_running():
            self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.is_running() else f"exited {self.returncode}" if self.proc else "new"
        return f"<BrokerProcess {self.base_dir.name} pid={self.pid} port={self.port} {state}>"


class BrokerFactory:
    """Starts brokers in sub-directories of ``root`` (``b0``, ``b1``, ... unless named) and stops
    them all in ``close()``; what the ``broker``/``broker_factory`` fixtures use."""

    def __init__(self, root: str | os.PathLike, **defaults: Any):
        self.root = Path(root)
        self.defaults = defaults
        self.brokers: list[BrokerProcess] = []

    def __call__(self, *args: str, name: str | None = None, start: bool = True,
                 **kwargs: Any) -> BrokerProcess:
        name = name or f"b{len(self.brokers)}"
        if any(b.base_dir.name == name for b in self.brokers):
            raise ValueError(f"a broker named {name!r} exists already")
        options = {**self.defaults, **kwargs}
        broker = BrokerProcess(self.root / name, args, **options)
        self.brokers.append(broker)
        if start:
            broker.start()
        return broker

    def close(self) -> None:
        """Stop every broker (SIGTERM, then SIGKILL after its deadline)."""
        for broker in self.brokers:
            try:
                broker.stop()
            except Exception:  # pragma: no cover - keep stopping the others
                broker.kill()

    def logs(self) -> Iterable[tuple[BrokerProcess, str]]:
        return [(b, b.log_text()) for b in self.brokers]

    def leaks(self) -> list[str]:
        """What the brokers' clean stops found still held (broker/audit.py), one line per run."""
        return [leak for b in self.brokers for leak in b.leaks]


__all__ = ["BrokerProcess", "BrokerFactory", "BrokerStartError", "LISTENING_RE", "async_wait_until",
           "claim_leaks", "default_command", "wait_until"]
