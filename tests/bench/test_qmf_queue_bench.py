"""QMF queries of queues and exchanges with 10 and with 10,000 queues, each bound to amq.direct and
amq.topic (so 20,000 bindings besides the default exchange's): the agent builds the values and
encodes the map on the broker's loop, as for ``qpid-tool show <id>`` or a console's get-by-name.

* one queue: its bindingCount is the counter the exchanges keep on it, so the cost does not grow
  with the queues or bindings (before, each query walked every binding of every exchange);
* one exchange (amq.direct): bindingCount and producerCount are kept as bindings and producers come
  and go (before, each query walked every link of every connection);
* every queue (a query by class, ``qpid-stat -q``): O(queues), sent 100 objects at a time. The time
  per queue grows somewhat with the heap (Python's cyclic collector walks it; caches): CPU time per
  queue measured with time.process_time on a loaded machine, 100 vs 10,000 queues, was 74 vs 115 us
  (69 vs 88 us with gc.disable()); never the queues x bindings of before.

    .venv/bin/python -m pytest -q -s --benchmark-enable tests/bench/test_qmf_queue_bench.py

Under ``make test`` (benchmarks disabled) each case runs once (1,000 queues for the large one), as a
smoke test that also checks the figures. Times are printed; nothing fails on a time.
"""
import pytest
from cypid.broker.management.agent import _Request
from cypid.broker.management.objects import Snapshot

from tests.support.inprocess import bench_broker


def _bind(broker, queue):
    nodes = broker.nodes
    nodes.bind(nodes.exchanges.get("amq.direct"), queue, queue.name)
    nodes.bind(nodes.exchanges.get("amq.topic"), queue, "bench.%s.#" % queue.name)


@pytest.fixture(params=[10, 10_000], ids=["10-queues", "10k-queues"])
def broker(request):
    yield from bench_broker(request, _bind)


def _report(benchmark, what, count, per=1):
    if benchmark.stats is not None:
        print("\n%s with %d queues: median %.1f us%s" % (
            what, count, benchmark.stats.stats.median * 1e6 / per, " per queue" if per > 1 else ""))


@pytest.mark.parametrize("cls_name,key,bindings", [("queue", "bench.queue.00005", 3), ("exchange", "amq.direct", None)],
                         ids=["one-queue", "one-exchange"])
def test_query_one_object(benchmark, broker, cls_name, key, bindings):
    broker, count = broker
    agent = broker.management

    def query():
        return agent.object_map(cls_name, Snapshot(agent).find(cls_name, key))

    # a queue: amq.direct, amq.topic and the default exchange; amq.direct: every queue
    assert query()["_values"]["bindingCount"] == (bindings or count)
    benchmark(query)
    _report(benchmark, "one %s's query" % cls_name, count)


def test_query_every_queue(benchmark, broker, monkeypatch):
    """The agent's whole answer to a console's query of every queue: values, maps and the encoded
    reply messages, 100 objects each (their delivery left out)."""
    broker, count = broker
    agent = broker.management
    sent = []
    monkeypatch.setattr(agent, "_deliver", lambda queues, msg: sent.append(msg.size))
    request = _Request()
    request.cid, request.user, request.rhost, request.agent_name = "1", "", "", agent.name
    request.target = (broker.nodes.queues["bench.queue.00000"], None)

    def query():
        sent.clear()
        agent._query(request, {"_what": "OBJECT", "_schema_id": {"_class_name": "queue"}})

    query()
    assert len(sent) == count // 100 + 1 and min(sent) > 0
    benchmark.pedantic(query, rounds=5 if count > 100 else 50, iterations=1)
    _report(benchmark, "a query of every queue", count, per=count)
