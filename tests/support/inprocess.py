"""A broker in the test's own process, on its own event loop (not running: the test calls into it
directly), listening on a free port with no data dir: for unit tests and benchmarks of what the
broker computes (management queries) without a client in between."""
import asyncio
import contextlib

from cypid.broker.broker import Broker
from cypid.broker.options import parse_options


@contextlib.contextmanager
def inprocess_broker(*args):
    """The started broker; stopped, and its loop closed, on leaving. ``args``: more options."""
    loop = asyncio.new_event_loop()
    broker = Broker(parse_options(["--port", "0", "--no-data-dir", "--log-enable", "error+", *args]), loop)
    try:
        loop.run_until_complete(broker.start())
        yield broker
    finally:
        loop.run_until_complete(broker.stop())
        loop.close()


def bench_broker(request, populate):
    """For a benchmark fixture parametrised by a queue count: an in-process broker with
    ``request.param`` queues (1,000 at most unless benchmarks are enabled), each set up by
    ``populate(broker, queue)``; yields (broker, count)."""
    count = request.param
    if not request.config.getoption("benchmark_enable", False):
        count = min(count, 1_000)
    with inprocess_broker() as broker:
        for i in range(count):
            queue, _ = broker.nodes.declare_queue("bench.queue.%05d" % i)
            populate(broker, queue)
        yield broker, count
