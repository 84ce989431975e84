"""pyx/queue benchmarks: enqueue + acquire + dequeue per second, and memory per queued 1 KiB message.

Each measured cycle is what the broker does for one message: ``queue.enqueue(msg)``, a consumer gets one
credit and ``queue.dispatch()`` hands it the oldest (or highest-priority) message, and the consumer
accepts it from inside ``deliver`` (``queue.dequeued``). So the figures include the Python calls into and
out of the queue (consumer ``can_take``/``deliver``), as in the broker. Queues are measured empty
("depth 0") and holding DEEP messages (1,000,000 under ``--benchmark-enable``; the deep queues are
built once per module). Messages are cypid.pyx.message.Message (1 KiB body) unless the name says
``pymsg`` (broker/message.py's Message, the generic attribute path).

    .venv/bin/python -m pytest -q -s --benchmark-enable tests/bench/test_queue_bench.py

Under ``make test`` (benchmarks disabled) every case runs once on small queues, as a smoke test.
Figures are printed; nothing fails on a time.
"""
import gc
import os
import subprocess
import sys
import time

import pytest

from cypid.broker import message as pymessage
from cypid.broker.settings import QueueSettings
from cypid.pyx.codec import Described, encode, encode_header, ulong
from cypid.pyx.message import Message
from cypid.pyx.queue import Queue

BATCH = 10_000
PAYLOAD = 1024


def enabled(config):
    return bool(config.getoption("benchmark_enable", False))


def deep_depth(config):
    return 1_000_000 if enabled(config) else 10_000


class Consumer:
    """The least a consumer link does: one message per credit, accepted as it is sent."""

    browsing = False
    browse_position = 0

    def __init__(self):
        self.credit = 0

    def can_take(self):
        return self.credit > 0

    def deliver(self, msg, queue):
        self.credit -= 1
        queue.dequeued(msg)


def encoded(priority=4, key=None, payload=PAYLOAD):
    data = encode_header(False, priority, 0, True, 0)
    if key is not None:
        data += encode(Described(ulong(0x74), {"k": key}))
    return data + encode(Described(ulong(0x75), b"x" * payload))


PROPS = {
    "fifo": {},
    "ring": {"qpid.policy_type": "ring"},
    "lvq": {"qpid.last_value_queue_key": "k"},
    "priority": {"qpid.priorities": 10},
}


def make_queue(kind, depth):
    props = {"qpid.max_size": 0, "qpid.max_count": max(depth, 1000) if kind == "ring" else 0}
    props.update(PROPS[kind])
    q = Queue("bench-" + kind, QueueSettings.from_properties(props), lambda m, x: None)
    c = Consumer()
    q.add_consumer(c)
    return q, c


def fill(q, kind, depth):
    if kind == "lvq":       # distinct keys, so that the queue really holds `depth` messages
        for i in range(depth):
            q.enqueue(Message(encoded(key="f%d" % i, payload=64)))
    else:
        protos = [Message(encoded(priority=p)) for p in range(10)]
        for i in range(depth):
            q.enqueue(protos[i % 10].copy())
    assert q.msgDepth == depth


class Batches:
    """Fresh messages for each measured round (setup, not timed). LVQ messages get keys never used
    before, so that the deep queue keeps its depth (no replacements)."""

    def __init__(self, kind, message_class=Message):
        self.kind = kind
        self.message_class = message_class
        self.protos = [message_class(encoded(priority=p)) for p in range(10)]
        self.serial = 0

    def __call__(self):
        if self.kind == "lvq":
            base = self.serial
            self.serial += BATCH
            return (([self.message_class(encoded(key="m%d" % (base + i))) for i in range(BATCH)],), {})
        protos = self.protos
        return (([protos[i % 10].copy() for i in range(BATCH)],), {})


def cycle(q, c):
    enqueue = q.enqueue
    dispatch = q.dispatch

    def run(batch):
        for msg in batch:
            enqueue(msg)
            c.credit = 1
            dispatch()
    return run


@pytest.fixture(scope="module")
def deep_queues(request):
    """kind -> (queue, consumer) holding DEEP messages, built on first use."""
    built = {}

    def get(kind):
        if kind not in built:
            depth = deep_depth(request.config)
            q, c = make_queue(kind, depth)
            t = time.perf_counter()
            fill(q, kind, depth)
            built[kind] = (q, c, time.perf_counter() - t)
        return built[kind]
    return get


def report(capsys, text):
    if " 0 msgs/s" in text or " 0 enqueues/s" in text:
        text = text.split(":")[0] + ": smoke run (benchmarks disabled)"
    with capsys.disabled():
        print("\n  " + text, end="")


def rounds(config):
    return 40 if enabled(config) else 1


def warmup(config):
    return 3 if enabled(config) else 0


@pytest.mark.parametrize("kind", ["fifo", "ring", "lvq", "priority"])
@pytest.mark.parametrize("deep", [False, True], ids=["depth0", "deep"])
def test_enqueue_acquire_dequeue(benchmark, request, capsys, deep_queues, kind, deep):
    if deep:
        q, c, build = deep_queues(kind)
    else:
        q, c = make_queue(kind, 0)
        build = 0.0
    depth = q.msgDepth
    gc.collect()
    benchmark.pedantic(cycle(q, c), setup=Batches(kind), rounds=rounds(request.config), iterations=1,
                       warmup_rounds=warmup(request.config))
    # (a full ring drops one message, then is one short after the consumer takes one)
    assert depth - (kind == "ring") <= q.msgDepth <= depth and q.unackedMessages == 0
    rate = BATCH / benchmark.stats.stats.min if benchmark.stats else 0
    benchmark.extra_info["msgs_per_s"] = int(rate)
    report(capsys, "%-8s depth %9d: %9.0f msgs/s (enqueue+acquire+dequeue, best round)%s"
           % (kind, depth, rate, "; built in %.1f s" % build if build else ""))


@pytest.mark.parametrize("deep", [False, True], ids=["depth0", "deep"])
def test_fifo_pymsg(benchmark, request, capsys, deep_queues, deep):
    """broker/message.py's Message: the queue reads its fields as Python attributes."""
    q, c = make_queue("fifo", 0)
    if deep:
        fill(q, "fifo", deep_depth(request.config))
    depth = q.msgDepth
    benchmark.pedantic(cycle(q, c), setup=Batches("fifo", pymessage.Message), rounds=rounds(request.config),
                       iterations=1, warmup_rounds=warmup(request.config))
    rate = BATCH / benchmark.stats.stats.min if benchmark.stats else 0
    benchmark.extra_info["msgs_per_s"] = int(rate)
    report(capsys, "fifo/pymsg depth %7d: %9.0f msgs/s" % (depth, rate))


def test_ring_overwrite(benchmark, request, capsys, deep_queues):
    """Enqueue into a full ring queue: every message drops the oldest."""
    q, c, _ = deep_queues("ring")
    enqueue = q.enqueue

    def run(batch):
        for msg in batch:
            enqueue(msg)
    before = q.discardsRing
    benchmark.pedantic(run, setup=Batches("ring"), rounds=rounds(request.config), iterations=1,
                       warmup_rounds=warmup(request.config))
    assert q.discardsRing - before >= BATCH * rounds(request.config) - 1
    rate = BATCH / benchmark.stats.stats.min if benchmark.stats else 0
    benchmark.extra_info["msgs_per_s"] = int(rate)
    report(capsys, "ring full, depth %d: %9.0f enqueues/s (each drops the oldest)" % (q.msgDepth, rate))


MEMORY_SCRIPT = """
import gc, os, sys
from cypid.broker.settings import QueueSettings
from cypid.pyx.codec import Described, encode, encode_header, ulong
from cypid.pyx.queue import Queue
if sys.argv[2] == "cdef":
    from cypid.pyx.message import Message
else:
    from cypid.broker.message import Message

def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

n = int(sys.argv[1])
template = encode_header(False, 4, 0, True, 0) + encode(Described(ulong(0x75), b"x" * 1024))
q = Queue("q", QueueSettings.from_properties({"qpid.max_size": 0}), lambda m, x: None)
gc.collect()
before = rss()
for i in range(n):
    q.enqueue(Message(template[:-4] + i.to_bytes(4, "big")))   # each its own received buffer
gc.collect()
print(len(template), (rss() - before) / n)
"""


@pytest.mark.parametrize("kind", ["cdef", "pymsg"])
def test_memory_per_queued_message(request, capsys, kind):
    """RSS growth of a fresh process holding N queued 1 KiB messages, each received as its own bytes
    (as off the wire). ``cdef``: cypid.pyx.message.Message; ``pymsg``: broker/message.py's."""
    n = 200_000 if enabled(request.config) else 20_000
    out = subprocess.run([sys.executable, "-c", MEMORY_SCRIPT, str(n), kind], capture_output=True, text=True,
                         check=True, cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__)))).stdout
    size, per = out.split()
    report(capsys, "memory: %s: %d queued messages of %s bytes (1 KiB body): %.0f bytes each"
           % (kind, n, size, float(per)))
    if kind == "cdef" and enabled(request.config):
        assert float(per) < 1536, "more than 1.5 KiB per queued 1 KiB message"
