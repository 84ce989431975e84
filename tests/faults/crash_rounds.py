"""kill -9 rounds against a broker taking durable messages: every message whose ``accepted`` reached
its producer is there after the restart (or was seen by the consumer), none lost, in order per
producer.

    python -m tests.faults.crash_rounds --rounds 100 [--seed N] [--workdir DIR]

Three python-qpid-proton producer processes and one consumer process
(tests/support/durable_producer.py) work on one durable queue with a small journal that wraps many
times a round (4 files of 256 KiB) and a flow-to-disk limit (qpid.max_count 300: the messages past it
are read back from the journal). Each producer appends the number of every message the broker
accepted to its own file before it goes on; the consumer appends every message it receives before
it accepts it. The broker is SIGKILLed at a random moment (when a random number of
acknowledgements, possibly none, has arrived since the round began), restarted on the same data
dir, and the queue drained: every number acknowledged that round must be in the queue or have been
seen by the consumer, and each producer's numbers must come back in increasing order (in the queue,
and in what the consumer got within a round). A message consumed just before a kill may come back
once more (at-least-once): it is counted, not failed. A ``rejected`` (the small journal full while
the consumer lags) is counted: that message was never accepted.

tests/faults/test_durable_crash.py runs a few rounds in the suite; CYPID_CRASH_SEED reproduces one.
"""
import os
import random
import select
import subprocess
import sys
import time
from pathlib import Path

from proton.utils import BlockingConnection

from tests.faults.rounds import main as rounds_main
from tests.support.amqp import CreateQueue
from tests.support.blocking import drain
from tests.support.broker import BrokerProcess, wait_until

ROOT = Path(__file__).resolve().parents[2]
QUEUE = "crash"
QUEUE_PROPS = {"durable": True, "qpid.file_count": 4, "qpid.file_size": 4,
               "qpid.policy_type": "flow_to_disk", "qpid.max_count": 300}
PRODUCERS = 3
WINDOW = 100


class Client:
    """A tests.support.durable_producer process driven over stdin, writing its log to ``path``."""

    def __init__(self, args, name, path):
        self.name = name
        self.path = path
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.support.durable_producer"] + args,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=str(ROOT), text=True, bufsize=1)

    def go(self):
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()

    def wait_stopped(self, timeout=30):
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("%s did not stop" % self.name)
            ready, _, _ = select.select([self.proc.stdout], [], [], remaining)
            if ready:
                line = self.proc.stdout.readline()
                if not line:
                    raise RuntimeError("%s exited (%s)" % (self.name, self.proc.poll()))
                if line.startswith("stopped"):
                    return

    def lines(self):
        try:
            return self.path.read_text().splitlines()
        except FileNotFoundError:
            return []

    def size(self):
        try:
            return self.path.stat().st_size
        except FileNotFoundError:
            return 0

    def close(self):
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write("quit\n")
                self.proc.stdin.flush()
            except OSError:
                pass
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Producer(Client):
    def __init__(self, url, name, path):
        super().__init__([url, QUEUE, name, str(path), str(WINDOW), "256"], name, path)
        self.verified = set()       # numbers known to be safe: recovered or seen in an earlier round

    def outcomes(self):
        """(numbers acknowledged so far, how many were rejected); other outcomes fail."""
        acked, rejected = set(), 0
        for line in self.lines():
            if line.isdigit():
                acked.add(int(line))
            elif line.startswith("rejected "):
                rejected += 1
            elif line:
                raise AssertionError("producer %s got %r" % (self.name, line))
        return acked, rejected


def drain_queue(url):
    """[(producer, n)] of everything in the queue, in order, all accepted."""
    conn = BlockingConnection(url, timeout=30)
    got = []
    try:
        receiver = conn.create_receiver(QUEUE, credit=None)
        while True:
            n = drain(conn, receiver, 2000, timeout=30)
            if not n:
                break
            for _ in range(n):
                msg = receiver.receive(timeout=10)
                got.append((msg.properties["producer"], msg.properties["n"]))
                receiver.accept()
    finally:
        conn.close()
    return got


def by_producer(pairs, names):
    out = {name: [] for name in names}
    for name, n in pairs:
        out[name].append(n)
    return out


def run(rounds, seed, workdir, out=sys.stdout):
    """``rounds`` kills over one data dir under ``workdir``; returns the totals (AssertionError
    names the seed and round of any loss)."""
    rnd = random.Random(seed)
    workdir = Path(workdir)
    broker = BrokerProcess(workdir / "broker", ["--log-enable", "notice+"])
    broker.start()
    producers, consumer = [], None
    totals = dict(rounds=0, acked=0, rejected=0, consumed=0, recovered=0, again=0)
    t0 = time.monotonic()
    try:
        conn = BlockingConnection(broker.url, timeout=30)
        conn.create_sender(QUEUE, options=CreateQueue(QUEUE_PROPS)).close()
        conn.close()
        producers = [Producer(broker.url, "p%d" % i, workdir / ("acks-%d" % i)) for i in range(PRODUCERS)]
        consumer = Client(["--consume", broker.url, QUEUE, str(workdir / "seen")], "consumer",
                          workdir / "seen")
        names = [p.name for p in producers]
        seen_before = 0
        for rnd_no in range(rounds):
            base = sum(p.size() for p in producers)
            target = rnd.choice([0, rnd.randint(1, 4000), rnd.randint(4000, 25000)])  # bytes of ack lines
            consumer.go()
            for p in producers:
                p.go()
            wait_until(lambda: sum(p.size() for p in producers) - base >= target, timeout=60,
                       interval=0.002, message="acknowledgements before the kill")
            broker.kill()
            for client in producers + [consumer]:
                client.wait_stopped()
            seen_lines = consumer.lines()
            seen = by_producer(((line.split()[0], int(line.split()[1]))
                                for line in seen_lines[seen_before:] if line), names)
            seen_before = len(seen_lines)
            broker.start()
            recovered = by_producer(drain_queue(broker.url), names)
            rejected = 0
            for p in producers:
                ns = recovered[p.name]
                got = seen[p.name]
                assert ns == sorted(ns) and len(ns) == len(set(ns)), \
                    "seed %d round %d: %s's messages out of order after recovery: %s" % (
                        seed, rnd_no, p.name, ns[:50])
                assert got == sorted(got), "seed %d round %d: the consumer got %s's messages out of " \
                    "order: %s" % (seed, rnd_no, p.name, got[:50])
                acked, rej = p.outcomes()
                rejected += rej
                new = acked - p.verified
                missing = new - set(ns) - set(got)
                assert not missing, "seed %d round %d: %s: %d acknowledged messages lost, e.g. %s" % (
                    seed, rnd_no, p.name, len(missing), sorted(missing)[:10])
                totals["again"] += len(set(ns) & (p.verified | set(got)))
                totals["acked"] += len(new)
                totals["recovered"] += len(ns)
                totals["consumed"] += len(got)
                p.verified |= acked | set(ns) | set(got)
            totals["rejected"] = rejected
            totals["rounds"] += 1
    finally:
        for client in producers + ([consumer] if consumer else []):
            client.close()
        broker.stop()
    totals["seconds"] = round(time.monotonic() - t0, 1)
    print("%(rounds)d kills in %(seconds).1f s: %(acked)d messages acknowledged, %(consumed)d consumed "
          "before a kill, %(recovered)d recovered, %(again)d seen again, %(rejected)d rejected "
          "(journal full)" % totals + " (CYPID_CRASH_SEED=%d)" % seed, file=out)
    return totals


def main(argv=None):
    return rounds_main(run, argv, "python -m tests.faults.crash_rounds", __doc__,
                       100, "CYPID_CRASH_SEED", "cypid-crash-")


if __name__ == "__main__":
    sys.exit(main())
