"""qpidd's daemon habits: ``-d/--daemon``, the pid file ``<pid-dir>/qpidd.<port>.pid``, ``-c/--check``,
``-q/--quit``, ``-k/--kill``, and systemd's readiness notice.

* ``--daemon``: the command forks; the broker runs in the child (a new session, no terminal) and the
  command returns only once the child listens (it prints the port, exit 0) or has failed (it prints
  ``Daemon startup failed: <cause>``, exit 1); at most ``--wait`` seconds.
* The pid file is written once the broker listens (named by the port it listens on) when it runs as
  a daemon or ``--pid-dir`` is given, and removed at a clean stop. ``--pid-dir`` defaults to the
  data directory, as qpidd's does.
* ``--check`` prints the pid of the broker on ``--port`` and exits 0, else says it is not running and
  exits 1; ``--quit`` sends it SIGTERM and waits (``--wait`` seconds) until it has gone; ``--kill``
  sends SIGKILL. All three find the broker by its pid file, as qpidd's init scripts expect.
* Under systemd (``NOTIFY_SOCKET`` set, Type=notify), ``READY=1`` is sent once the broker listens
  and ``STOPPING=1`` when it begins to stop.
"""
from __future__ import annotations

import os
import signal
import socket
import sys
import time

PID_FILE = "qpidd.%d.pid"


def pid_dir(options) -> str | None:
    return options.pid_dir or options.data_path


def pid_path(options, port: int) -> str | None:
    directory = pid_dir(options)
    return os.path.join(directory, PID_FILE % port) if directory else None


def write_pid_file(path: str) -> None:
    directory = os.path.dirname(path)
    if directory:
        os.makedirs(directory, exist_ok=True)
    tmp = "%s.%d.tmp" % (path, os.getpid())
    with open(tmp, "w") as f:
        f.write("%d\n" % os.getpid())
    os.replace(tmp, path)


def remove_pid_file(path: str | None) -> None:
    if not path:
        return
    try:
        if read_pid(path) == os.getpid():
            os.unlink(path)
    except OSError:
        pass


def read_pid(path: str) -> int | None:
    try:
        with open(path) as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def control(options, out=None, err=None) -> int:
    """--check, --quit or --kill on the broker whose pid file is for ``--port``."""
    out, err = out or sys.stdout, err or sys.stderr
    path = pid_path(options, options.port)
    pid = read_pid(path) if path else None
    if pid is None or not _alive(pid):
        why = "no pid file %s" % path if pid is None else "pid %d (from %s) is not running" % (pid, path)
        err.write("Broker is not running: %s\n" % why)
        return 1
    if options.check and not (options.quit or options.kill):
        out.write("%d\n" % pid)
        out.flush()
        return 0
    os.kill(pid, signal.SIGKILL if options.kill else signal.SIGTERM)
    deadline = time.monotonic() + options.wait
    while _alive(pid):
        if time.monotonic() >= deadline:
            err.write("Broker pid %d did not stop within %d s\n" % (pid, options.wait))
            return 1
        time.sleep(0.05)
    if options.kill:
        try:
            os.unlink(path)
        except OSError:
            pass
    return 0


class Detached:
    """The child's end of ``--daemon``: ``ready(port)`` or ``failed(text)`` tells the waiting parent."""

    def __init__(self, fd: int):
        self.fd = fd

    def _say(self, text: str) -> None:
        if self.fd < 0:
            return
        try:
            os.write(self.fd, text.encode("utf-8", "replace"))
            os.close(self.fd)
        except OSError:
            pass
        self.fd = -1

    def ready(self, port: int) -> None:
        self._say("OK %d\n" % port)
        # From now on nobody reads the streams the command was started with (and a shell's $(...)
        # waits until every writer of its pipe closes): the log goes on in --log-to-file only.
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        os.close(null)

    def failed(self, text: str) -> None:
        self._say("ERR %s\n" % text)


def detach(options) -> Detached:
    """Fork. The parent waits for the child's word and exits with its status (never returns); the
    child returns a :class:`Detached` to report with."""
    read_fd, write_fd = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid:
        os.close(write_fd)
        os._exit(_parent(read_fd, pid, options.wait))
    os.close(read_fd)
    os.setsid()     # the working directory stays: relative paths in the options mean what they said
    return Detached(write_fd)


def _parent(fd: int, child: int, wait: int) -> int:
    import select
    deadline = time.monotonic() + wait
    data = b""
    while b"\n" not in data:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            sys.stderr.write("Daemon startup failed: not listening after %d s (pid %d still runs)\n"
                             % (wait, child))
            return 1
        ready, _, _ = select.select([fd], [], [], remaining)
        if not ready:
            continue
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        data += chunk
    text = data.decode("utf-8", "replace").strip()
    if text.startswith("OK "):
        sys.stdout.write(text[3:] + "\n")
        sys.stdout.flush()
        return 0
    if text.startswith("ERR "):
        sys.stderr.write("Daemon startup failed: %s\n" % text[4:])
        return 1
    try:
        _, status = os.waitpid(child, os.WNOHANG)
    except ChildProcessError:
        status = 0
    sys.stderr.write("Daemon startup failed: the broker exited before listening (status %d)\n"
                     % (os.waitstatus_to_exitcode(status) if status else 1))
    return 1


def notify_systemd(state: str) -> None:
    """``READY=1`` / ``STOPPING=1`` to systemd's NOTIFY_SOCKET, if there is one."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.connect(address)
            sock.sendall(state.encode())
    except OSError:
        pass


__all__ = ["control", "detach", "Detached", "pid_path", "write_pid_file", "remove_pid_file",
           "notify_systemd"]
