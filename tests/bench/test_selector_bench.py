"""A selector consumer's throughput beside a plain consumer's (pyx/queue with cypid.pyx.selector).

Each measured cycle is what the broker does for one message: ``queue.enqueue(msg)``, the consumer
gets one credit, ``queue.dispatch()`` hands it a message and the consumer accepts it from inside
``deliver``. Messages are 1 KiB with five application properties. Cases:

  plain           no selector
  selector-all    ``colour = 'red' AND n >= 0`` (every message matches: the cost of evaluating)
  selector-half   ``colour = 'red'`` on a queue where every other message is green; a plain consumer
                  beside it takes the green ones (each enqueue still delivers one message)
  matches         ``Selector.matches`` alone, per message (no queue)

    .venv/bin/python -m pytest -q -s --benchmark-enable tests/bench/test_selector_bench.py

Under ``make test`` (benchmarks disabled) each case runs once, as a smoke test. Figures are printed;
nothing fails on a time.
"""
import pytest

from cypid.broker.settings import QueueSettings
from cypid.pyx.codec import Described, encode, encode_header, ulong
from cypid.pyx.message import Message
from cypid.pyx.queue import Queue
from cypid.pyx.selector import Selector

BATCH = 10_000


class Consumer:
    browsing = False
    browse_position = 0

    def __init__(self, selector=None):
        self.credit = 0
        self.selector = Selector(selector) if selector is not None else None
        self.taken = 0

    def can_take(self):
        return self.credit > 0

    def deliver(self, msg, queue):
        self.credit -= 1
        self.taken += 1
        queue.dequeued(msg)


def encoded(colour, n):
    props = {"colour": colour, "n": n, "region": "emea", "flag": True, "ratio": 0.5}
    return (encode_header(False, 4, 0, True, 0) + encode(Described(ulong(0x74), props))
            + encode(Described(ulong(0x75), b"x" * 1024)))


def batch(alternate):
    protos = [Message(encoded("red", 1)), Message(encoded("green", 2) if alternate else encoded("red", 3))]

    def make():
        return (([protos[i % 2].copy() for i in range(BATCH)],), {})
    return make


def queue_with(*consumers):
    q = Queue("bench-selector", QueueSettings.from_properties({"qpid.max_size": 0}), lambda m, x: None)
    for c in consumers:
        q.add_consumer(c)
    return q


def run_cycles(q, consumers):
    """One enqueue, then one credit for each consumer and a dispatch, per message."""
    def run(msgs):
        for msg in msgs:
            q.enqueue(msg)
            for c in consumers:
                c.credit = 1
            q.dispatch()
            for c in consumers:
                c.credit = 0
    return run


def report(benchmark, name):
    stats = getattr(benchmark, "stats", None)
    if stats:
        mean = stats.stats.mean
        print("\n%-14s %10.0f msgs/s" % (name, BATCH / mean))


@pytest.mark.parametrize("case", ["plain", "selector-all", "selector-half"])
def test_selector_consumer_throughput(benchmark, case):
    if case == "plain":
        consumers = [Consumer()]
    elif case == "selector-all":
        consumers = [Consumer("colour = 'red' AND n >= 0")]
    else:
        consumers = [Consumer("colour = 'red'"), Consumer()]
    q = queue_with(*consumers)
    benchmark.pedantic(run_cycles(q, consumers), setup=batch(case == "selector-half"), rounds=5)
    assert q.depth == 0
    assert consumers[0].taken > 0
    report(benchmark, case)


def test_matches_alone(benchmark):
    sel = Selector("colour = 'red' AND n >= 0")
    msgs = [Message(encoded("red", 1)) for _ in range(100)]

    def run():
        for m in msgs:
            sel.matches(m)
    benchmark(run)
    stats = getattr(benchmark, "stats", None)
    if stats:
        print("\nmatches        %10.0f ns per message" % (stats.stats.mean / len(msgs) * 1e9))
