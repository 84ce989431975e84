"""kill -9 of a broker taking durable messages: every message whose ``accepted`` reached its
producer is there after the restart, none lost, in order per producer.

Three python-qpid-proton producer processes (tests/support/durable_producer.py), each with up to
100 durable sends unsettled at once, send to a durable queue. Each appends the number of every
message the broker accepted to its own file, flushing each line, before it goes on. The broker is
SIGKILLed at a random moment (when a random number of acknowledgements, possibly none, has
arrived since the producers were told to go), 20 times over the same data dir; after each restart
the queue is drained: every number acknowledged in that round must come back, and each producer's
numbers must come back in increasing order. (A message consumed just before a kill may come back
once more, before the newer ones: at-least-once; it is counted, not failed.)
"""
import os
import random
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest
from proton.utils import BlockingConnection

from tests.support.amqp import CreateQueue
from tests.support.blocking import drain
from tests.support.broker import wait_until

ROOT = Path(__file__).resolve().parents[2]
QUEUE = "crash"
PRODUCERS = 3
WINDOW = 100
ROUNDS = 20


class ProducerProcess:
    def __init__(self, url, name, path):
        self.name = name
        self.path = path
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.support.durable_producer", url, QUEUE, name, str(path),
             str(WINDOW), "256"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=str(ROOT), text=True, bufsize=1)
        self.verified = set()

    def go(self):
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()

    def wait_stopped(self, timeout=30):
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("producer %s did not stop" % self.name)
            ready, _, _ = select.select([self.proc.stdout], [], [], remaining)
            if ready:
                line = self.proc.stdout.readline()
                if not line:
                    raise RuntimeError("producer %s exited (%s)" % (self.name, self.proc.poll()))
                if line.startswith("stopped"):
                    return

    def acked(self):
        """Numbers acknowledged so far; other outcomes fail the test."""
        out = set()
        for line in self.path.read_text().splitlines():
            if not line:
                continue
            assert line.isdigit(), "producer %s got %r" % (self.name, line)
            out.add(int(line))
        return out

    def ack_count(self):
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


@pytest.mark.timeout(300)
def test_sigkill_loses_no_acknowledged_message(broker_factory, tmp_path):
    seed = int(os.environ.get("CYPID_CRASH_SEED", "0")) or random.randrange(1 << 32)
    rnd = random.Random(seed)
    broker = broker_factory("--log-enable", "notice+")
    conn = BlockingConnection(broker.url, timeout=30)
    conn.create_sender(QUEUE, options=CreateQueue({"durable": True})).close()
    conn.close()
    producers = [ProducerProcess(broker.url, "p%d" % i, tmp_path / ("acks-%d" % i))
                 for i in range(PRODUCERS)]
    totals = dict(acked=0, recovered=0, again=0)
    t0 = time.monotonic()
    try:
        for rnd_no in range(ROUNDS):
            base = sum(p.ack_count() for p in producers)
            target = rnd.choice([0, rnd.randint(1, 4000), rnd.randint(4000, 25000)])  # bytes of ack lines
            for p in producers:
                p.go()
            wait_until(lambda: sum(p.ack_count() for p in producers) - base >= target, timeout=30,
                       interval=0.002, message="acknowledgements before the kill")
            broker.kill()
            for p in producers:
                p.wait_stopped()
            broker.start()
            got = drain_queue(broker.url)
            by_producer = {p.name: [] for p in producers}
            for name, n in got:
                by_producer[name].append(n)
            for p in producers:
                ns = by_producer[p.name]
                assert ns == sorted(ns) and len(ns) == len(set(ns)), \
                    "seed %d round %d: %s's messages out of order: %s" % (seed, rnd_no, p.name, ns[:50])
                acked = p.acked()
                new = acked - p.verified
                missing = new - set(ns)
                assert not missing, "seed %d round %d: %s: %d acknowledged messages lost, e.g. %s" % (
                    seed, rnd_no, p.name, len(missing), sorted(missing)[:10])
                totals["again"] += len(set(ns) & p.verified)
                totals["acked"] += len(new)
                totals["recovered"] += len(ns)
                p.verified = acked | set(ns)
    finally:
        for p in producers:
            p.close()
    print("\n%d kills in %.1f s (CYPID_CRASH_SEED=%d): %d messages acknowledged, %d recovered, "
          "%d seen again" % (ROUNDS, time.monotonic() - t0, seed, totals["acked"], totals["recovered"], totals["again"]))
    assert totals["acked"] > 0
