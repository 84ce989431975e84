"""Memory soak: does the broker's memory stay flat across a long qpid-perftest run?

    python -m cypid.perf.soak [--duration 600] [--count 100000] [--size 1024] [-b HOST:PORT --pid PID]

Without ``-b`` it starts a broker of its own (``qpidd --port 0 --no-data-dir``, stopped at the end).
It runs qpid-perftest iterations (``python -m cypid.perf.perftest``, one publisher and one subscriber
on one shared queue by default; extra perftest options after ``--``) until ``--duration`` seconds have
passed. After each iteration it waits until the perftest queues are drained (msgDepth 0 over QMF)
and the broker's RSS (/proc/PID/status VmRSS) has settled, then samples it (and VmHWM: a step in RSS
that comes with a new high-water mark is a deeper transient backlog the allocator kept, not growth
per message; ``--flow-stop N`` bounds the backlog). It prints one line per
iteration and at the end the growth: from the first sample after ``--warmup`` iterations to the last,
as a total and per million messages. With ``--max-growth MIB`` the exit status is 1 if the growth
after warm-up exceeds it.
"""
import argparse
import re
import subprocess
import sys
import time

KIB = 1024
MIB = 1024 * 1024


def proc_status(pid, field):
    """A /proc/PID/status memory field (VmRSS, VmHWM) in bytes."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * KIB
    raise RuntimeError("no %s for pid %d" % (field, pid))


def rss_bytes(pid):
    """The process's resident set (VmRSS) in bytes."""
    return proc_status(pid, "VmRSS")


class OwnBroker:
    """A broker this tool starts and stops (its log goes to a file next to nothing: a pipe we read for
    the port, then drain)."""

    def __init__(self, extra=()):
        cmd = [sys.executable, "-m", "cypid.broker.main", "--port", "0", "--no-data-dir",
               "--interface", "127.0.0.1", *extra]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.pid = self.proc.pid
        self.port = None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            line = self.proc.stderr.readline()
            if not line:
                break
            m = re.search(r"Listening on TCP port (\d+)", line)
            if m:
                self.port = int(m.group(1))
                break
        if self.port is None:
            self.stop()
            raise RuntimeError("the broker did not start (no 'Listening on TCP port' line)")
        # The rest of the log is read and dropped, so a chatty broker never blocks on a full pipe.
        import threading
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self):
        for _ in self.proc.stderr:
            pass

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def queue_depths(url, prefix):
    """{queue name: msgDepth} of the queues whose name starts with ``prefix`` (QMF)."""
    from cypid.tools.qmf import BrokerAgent
    agent = BrokerAgent.open(url, timeout=10)
    try:
        return {str(q.values.get("name")): int(q.values.get("msgDepth") or 0)
                for q in agent.get_objects("queue") if str(q.values.get("name", "")).startswith(prefix)}
    finally:
        agent.close()


def wait_drained(url, prefix, timeout=60.0):
    """Wait (polling, with a deadline) until every perftest queue is empty; returns the depths seen last."""
    deadline = time.monotonic() + timeout
    while True:
        depths = queue_depths(url, prefix)
        if not any(depths.values()) or time.monotonic() > deadline:
            return depths
        time.sleep(0.1)


def settled_rss(pid, timeout=5.0, step=0.1):
    """RSS once two readings ``step`` apart agree within 64 KiB (or the last one at the deadline): the
    broker has finished freeing what the iteration left (settlement, acks) before we sample."""
    deadline = time.monotonic() + timeout
    last = rss_bytes(pid)
    while time.monotonic() < deadline:
        time.sleep(step)
        now = rss_bytes(pid)
        if abs(now - last) <= 64 * KIB:
            return now
        last = now
    return last


def declare_queues(url, args):
    """Make the perftest queues first with producer flow control (qpid.flow_stop_count): a subscriber
    that falls behind then holds the publisher back instead of letting the queue (and the broker's
    high-water mark, which the allocator keeps) grow with the machine's load."""
    from cypid.client import connect, run

    nqueues = 1
    for i, a in enumerate(args.perftest_args):
        if a == "--qt" and i + 1 < len(args.perftest_args):
            nqueues = int(args.perftest_args[i + 1])
        elif a.startswith("--qt="):
            nqueues = int(a.split("=", 1)[1])
    props = {"qpid.flow_stop_count": args.flow_stop,
             "qpid.flow_resume_count": max(1, args.flow_stop // 2)}

    async def go():
        conn = await connect(url)
        try:
            session = await conn.session()
            for i in range(nqueues):
                snd = await session.sender("%s%d" % (args.base_name, i), node="queue", create=True,
                                           properties=props)
                await snd.close()
        finally:
            await conn.close()
    run(go())


def run_perftest(url, args, extra, timeout):
    cmd = [sys.executable, "-m", "cypid.perf.perftest", "-b", url, "--count", str(args.count),
           "--size", str(args.size), "--base-name", args.base_name, "--summary",
           "--timeout", str(int(timeout)), *extra]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout + 30)
    if proc.returncode != 0:
        raise RuntimeError("qpid-perftest failed (%d): %s%s" % (proc.returncode, proc.stdout, proc.stderr))
    # --summary prints "pub-rate\tsub-rate\ttotal-rate\tMB/s" per iteration
    fields = proc.stdout.split()
    return float(fields[2]) if len(fields) >= 3 else 0.0


def growth(samples, warmup):
    """(bytes grown from the first sample after warm-up to the last, the samples it was measured on)."""
    steady = samples[warmup:] if len(samples) > warmup else samples[-1:]
    return steady[-1] - steady[0], steady


def build_parser():
    p = argparse.ArgumentParser(prog="python -m cypid.perf.soak", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-b", "--broker", default=None, metavar="HOST:PORT",
                   help="an existing broker (needs --pid); default: start one")
    p.add_argument("--pid", type=int, default=None, help="the existing broker's process id")
    p.add_argument("--duration", type=float, default=600.0, metavar="SECS",
                   help="run iterations until this many seconds have passed (default 600)")
    p.add_argument("--iterations", type=int, default=0, metavar="N", help="stop after N iterations (0: no limit; --duration 0: no time limit)")
    p.add_argument("--count", type=int, default=100000, metavar="N", help="messages per iteration")
    p.add_argument("--size", type=int, default=1024, metavar="BYTES")
    p.add_argument("--warmup", type=int, default=2, metavar="N",
                   help="iterations before the growth baseline (default 2)")
    p.add_argument("--max-growth", type=float, default=None, metavar="MIB",
                   help="exit 1 if RSS grew more than this after warm-up")
    p.add_argument("--base-name", default="soak", help="perftest queue base name")
    p.add_argument("--flow-stop", type=int, default=0, metavar="N",
                   help="declare the perftest queues first with qpid.flow_stop_count=N (resume at N/2): "
                        "a bounded backlog (0: no limit, perftest's own queues)")
    p.add_argument("--broker-arg", action="append", default=[], metavar="ARG",
                   help="extra argument for the broker this tool starts (repeatable)")
    p.add_argument("perftest_args", nargs="*", help="after --: extra qpid-perftest options")
    return p


def soak(args, out=sys.stdout):
    """Run the soak; returns a dict: samples (bytes), rates, growth (bytes after warm-up), messages."""
    own = None
    if args.broker is None:
        own = OwnBroker(args.broker_arg)
        url, pid = "127.0.0.1:%d" % own.port, own.pid
    else:
        if args.pid is None:
            raise SystemExit("--pid is needed with -b (the broker's process, for its RSS)")
        url, pid = args.broker, args.pid
    samples, rates = [], []
    messages = 0
    try:
        baseline = rss_bytes(pid)
        if args.flow_stop:
            declare_queues(url, args)
        print("broker pid %d at %s; RSS before: %.1f MiB" % (pid, url, baseline / MIB), file=out, flush=True)
        start = time.monotonic()
        i = 0
        while True:
            elapsed = time.monotonic() - start
            if args.iterations and i >= args.iterations:
                break
            if args.duration and elapsed >= args.duration and i > 0:
                break
            rate = run_perftest(url, args, args.perftest_args, timeout=max(60.0, args.duration))
            messages += args.count
            depths = wait_drained(url, args.base_name)
            if any(depths.values()):
                print("WARNING: queues not drained: %s" % depths, file=out, flush=True)
            rss = settled_rss(pid)
            hwm = proc_status(pid, "VmHWM")
            samples.append(rss)
            rates.append(rate)
            i += 1
            print("iteration %3d  t=%6.1fs  msgs=%9d  rate=%8.0f transfers/s  RSS=%8.2f MiB  (%+.2f MiB)"
                  "  HWM=%8.2f MiB"
                  % (i, time.monotonic() - start, messages, rate, rss / MIB, (rss - samples[0]) / MIB,
                     hwm / MIB), file=out, flush=True)
    finally:
        if own is not None:
            own.stop()
    grown, steady = growth(samples, args.warmup)
    steady_msgs = args.count * (len(steady) - 1)
    per_million = grown / steady_msgs * 1e6 if steady_msgs else 0.0
    print("RSS samples (MiB): %s" % " ".join("%.2f" % (s / MIB) for s in samples), file=out)
    print("growth: %.2f MiB over all %d iterations; %.2f MiB after %d warm-up iteration(s) "
          "(%d messages: %.1f KiB per million messages); peak %.2f MiB"
          % ((samples[-1] - samples[0]) / MIB if samples else 0, len(samples), grown / MIB,
             min(args.warmup, max(len(samples) - 1, 0)), steady_msgs, per_million / KIB,
             max(samples) / MIB if samples else 0), file=out, flush=True)
    return dict(samples=samples, rates=rates, growth=grown, messages=messages, baseline=baseline)


def main(argv=None):
    args = build_parser().parse_args(argv)
    result = soak(args)
    if args.max_growth is not None and result["growth"] > args.max_growth * MIB:
        print("FAIL: grew %.2f MiB after warm-up (limit %.2f MiB)" % (result["growth"] / MIB, args.max_growth))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
