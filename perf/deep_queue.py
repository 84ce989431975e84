"""Deep durable queue: a million 1 KiB durable messages into one queue, then recovery after kill -9.

    python -m cypid.perf.deep_queue [--count 1000000] [--size 1024] [--data-dir DIR] [--window 5000]
                                    [--recover-only] [--rounds N]

It starts a broker with default options (``qpidd --port 0 --data-dir DIR``; a temporary DIR unless
given, removed at the end), declares the durable queue ``deep`` with default journal geometry (it
grows from 8 x 1.5 MiB as the queue deepens) and no in-memory limit (``qpid.max_size`` 0: qpidd's
default queue limit of 100 MB would otherwise stop the producer at 80 MB, as it does in qpidd), sends ``--count`` durable messages of ``--size``
bytes with at most ``--window`` unsettled, and counts the outcomes. Then it kills the broker with
SIGKILL, starts it again on the same data directory and times "kill -9 -> first message received
by a client": from the moment the killed broker is gone to the moment a consumer (connecting as soon
as the new broker listens) holds the first message (the target: under 2 s for a million), with the
CPU time the new broker had used by then (on a busy machine the wall time is mostly waiting for a
CPU) and the recovery time it logged. ``--recover-only`` skips the sending (a ``--data-dir`` filled
by an earlier run: the broker is started on it and killed); ``--rounds N`` measures the restart N
times. It prints the figures; the exit status is 1 unless every message was accepted (or, with
``--recover-only``, the first came back every round).
"""
import argparse
import asyncio
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

LISTENING = re.compile(r"Listening on TCP port (\d+)")
RECOVERED = re.compile(r"Recovered .*?(\d+) messages in ([0-9.]+) s")


class Broker:
    """A broker process on ``data_dir`` whose log goes to ``log_path``."""

    def __init__(self, data_dir, log_path, extra=()):
        self.log_path = log_path
        self.offset = os.path.getsize(log_path) if os.path.exists(log_path) else 0
        cmd = [sys.executable, "-m", "cypid.broker.main", "--port", "0", "--interface", "127.0.0.1",
               "--data-dir", data_dir, *extra]
        self.started = time.monotonic()
        with open(log_path, "ab") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        self.port = None

    def log(self):
        with open(self.log_path, "rb") as f:
            f.seek(self.offset)
            return f.read().decode("utf-8", "replace")

    def wait_port(self, timeout=120):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = LISTENING.search(self.log())
            if m:
                self.port = int(m.group(1))
                return self.port
            if self.proc.poll() is not None:
                break
            time.sleep(0.005)
        raise RuntimeError("the broker did not start:\n" + self.log()[-3000:])

    @property
    def url(self):
        return "127.0.0.1:%d" % self.port

    def cpu_seconds(self):
        """User + system CPU time the process has used (Linux /proc)."""
        try:
            with open("/proc/%d/stat" % self.proc.pid) as f:
                fields = f.read().rpartition(")")[2].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, IndexError, ValueError):
            return float("nan")

    def kill(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.kill()


async def fill(url, count, size, window):
    """Send ``count`` durable messages to the durable queue 'deep'; returns the outcome counts."""
    from cypid.client import Message, connect
    conn = await connect(url)
    try:
        session = await conn.session()
        sender = await session.sender("deep", node="queue", create=True, window=window,
                                      properties={"durable": True, "qpid.max_size": 0, "qpid.max_count": 0})
        data = Message(b"x" * size, durable=True).encode()
        left = count
        while left:
            n = min(left, 50000)
            await sender.send(data, n)
            left -= n
        await sender.wait_settled(check=False)
        return dict(sender.counts)
    finally:
        await conn.close()


async def first_message(url_of, deadline):
    """Connect (retrying until the broker listens) and receive one message from 'deep'."""
    from cypid.client import connect
    while True:
        url = url_of()
        if url:
            try:
                conn = await connect(url, timeout=5)
                break
            except OSError:
                pass
        if time.monotonic() > deadline:
            raise RuntimeError("the broker did not come back")
        await asyncio.sleep(0.002)
    try:
        session = await conn.session()
        receiver = await session.receiver("deep", credit=1, auto_accept=False)
        msg = await receiver.get(timeout=max(1.0, deadline - time.monotonic()))
        return msg
    finally:
        conn.abort()


def restart_round(data_dir, log_path, extra, broker):
    """kill -9 ``broker``, start a new one, receive the first message. Returns (the new broker,
    seconds from the kill to the first message, its CPU seconds then, the message)."""
    broker.kill()
    t1 = time.monotonic()
    broker = Broker(data_dir, log_path, extra)

    def url_of():
        if broker.port is None:
            m = LISTENING.search(broker.log())
            if m:
                broker.port = int(m.group(1))
        return broker.url if broker.port else None

    msg = run_client(first_message(url_of, t1 + 300))
    first = time.monotonic() - t1
    return broker, first, broker.cpu_seconds(), msg


def run_client(coro):
    from cypid.client import run
    return run(coro)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="deep_queue", description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=1000000)
    parser.add_argument("--size", type=int, default=1024, help="message body bytes (default 1024)")
    parser.add_argument("--window", type=int, default=5000, help="most unsettled sends (default 5000)")
    parser.add_argument("--data-dir", help="the broker's data directory (default: a temporary one)")
    parser.add_argument("--broker-arg", action="append", default=[], help="extra broker option (repeatable)")
    parser.add_argument("--recover-only", action="store_true",
                        help="do not send: measure the restart of the queue an earlier run left in --data-dir")
    parser.add_argument("--rounds", type=int, default=1, help="kill -9 and restart this many times (default 1)")
    args = parser.parse_args(argv)
    if args.recover_only and args.data_dir is None:
        parser.error("--recover-only needs the --data-dir of an earlier run")
    own = args.data_dir is None
    base = tempfile.mkdtemp(prefix="deep-queue-") if own else args.data_dir
    data_dir = os.path.join(base, "data")
    os.makedirs(data_dir, exist_ok=True)
    log_path = os.path.join(base, "qpidd.log")
    broker = None
    ok = True
    try:
        broker = Broker(data_dir, log_path, args.broker_arg)
        broker.wait_port()
        if not args.recover_only:
            t0 = time.monotonic()
            counts = run_client(fill(broker.url, args.count, args.size, args.window))
            elapsed = time.monotonic() - t0
            accepted = counts.get("accepted", 0)
            print("sent %d durable messages of %d bytes in %.1f s (%.0f msg/s): %s"
                  % (args.count, args.size, elapsed, args.count / elapsed if elapsed else 0,
                     ", ".join("%s %d" % kv for kv in sorted(counts.items()))))
            print("all accepted: %s" % ("yes" if accepted == args.count else
                                        "NO (%d of %d)" % (accepted, args.count)))
            ok = accepted == args.count
        store = os.path.join(data_dir, "cypid-store", "jrnl")
        jbytes = sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(store) for f in fs)
        print("journal on disk: %.1f MiB" % (jbytes / 1048576))
        for _ in range(args.rounds):
            broker, first, cpu, msg = restart_round(data_dir, log_path, args.broker_arg, broker)
            print("kill -9 -> first message received by a client: %.3f s (the new broker had used "
                  "%.2f s of CPU)" % (first, cpu))
            m = RECOVERED.search(broker.log())
            if m:
                print("broker log: recovered %s messages in %s s" % (m.group(1), m.group(2)))
            ok = ok and msg is not None
        return 0 if ok else 1
    finally:
        if broker is not None:
            broker.stop()
        if own:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
