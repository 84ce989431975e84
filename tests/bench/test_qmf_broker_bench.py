"""A QMF query of the broker object, with 10 and with 10,000 queues: the agent builds the object's
values and encodes its map (what answers ``qpid-stat -g`` or qpid-tool's ``show broker``) on the
broker's loop. Its statistics are kept as the queues count (cypid.pyx.totals), so the cost does not
grow with the number of queues; before, it summed 29 counters over every queue.

    .venv/bin/python -m pytest -q -s --benchmark-enable tests/bench/test_qmf_broker_bench.py

Under ``make test`` (benchmarks disabled) each case runs once (1,000 queues for the large one), as a
smoke test that also checks the figures. Times are printed; nothing fails on a time.
"""
import asyncio

import pytest
from cypid.broker.broker import Broker
from cypid.broker.management.objects import Snapshot
from cypid.broker.options import parse_options
from cypid.pyx.codec import Described, encode, encode_header, ulong
from cypid.pyx.message import Message


@pytest.fixture(params=[10, 10_000], ids=["10-queues", "10k-queues"])
def broker(request):
    count = request.param
    if not request.config.getoption("benchmark_enable", False):
        count = min(count, 1_000)
    loop = asyncio.new_event_loop()
    options = parse_options(["--port", "0", "--no-data-dir", "--log-enable", "error+"])
    broker = Broker(options, loop)
    loop.run_until_complete(broker.start())
    data = encode_header(False, 4, 0, True, 0) + encode(Described(ulong(0x75), b"x" * 256))
    for i in range(count):
        queue, _ = broker.nodes.declare_queue("bench.queue.%05d" % i)
        queue.enqueue(Message(data))
    yield broker, count
    loop.run_until_complete(broker.stop())
    loop.close()


def test_query_broker_object(benchmark, broker):
    broker, count = broker
    agent = broker.management

    def query():
        (entry,) = Snapshot(agent).cls_broker()
        return agent.object_map("broker", entry)

    values = query()["_values"]
    assert values["msgDepth"] == values["msgTotalEnqueues"] == count
    assert values["queueCount"] == count
    benchmark(query)
    if benchmark.stats is not None:
        print("\nbroker object query with %d queues: median %.1f us" % (count, benchmark.stats.stats.median * 1e6))
