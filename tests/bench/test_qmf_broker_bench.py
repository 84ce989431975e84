"""A QMF query of the broker object, with 10 and with 10,000 queues: the agent builds the object's
values and encodes its map (what answers ``qpid-stat -g`` or qpid-tool's ``show broker``) on the
broker's loop. Its statistics are kept as the queues count (cypid.pyx.totals), so the cost does not
grow with the number of queues; before, it summed 29 counters over every queue.

    .venv/bin/python -m pytest -q -s --benchmark-enable tests/bench/test_qmf_broker_bench.py

Under ``make test`` (benchmarks disabled) each case runs once (1,000 queues for the large one), as a
smoke test that also checks the figures. Times are printed; nothing fails on a time.
"""
import pytest
from cypid.broker.management.objects import Snapshot
from cypid.pyx.codec import Described, encode, encode_header, ulong
from cypid.pyx.message import Message

from tests.support.inprocess import bench_broker


def _one_message(broker, queue):
    queue.enqueue(Message(encode_header(False, 4, 0, True, 0) + encode(Described(ulong(0x75), b"x" * 256))))


@pytest.fixture(params=[10, 10_000], ids=["10-queues", "10k-queues"])
def broker(request):
    yield from bench_broker(request, _one_message)


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
