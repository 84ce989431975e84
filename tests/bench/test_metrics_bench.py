"""/metrics with 10,000 queues: what one Prometheus scrape costs the broker's loop.

A Broker in this process (no data dir) with QUEUES queues declared the broker's way
(``nodes.declare_queue``), every tenth holding messages, and the HTTP listener on a free port:

* ``test_render_10k_queues``: building the whole exposition (metrics.text) on the broker's loop;
* ``test_scrape_10k_queues_over_http``: a GET /metrics through the real listener (the broker's loop
  runs in a thread of its own; the client is urllib in the test's thread): the request, the text
  and the response of about 10 MB, as a Prometheus server on the machine sees it.

    .venv/bin/python -m pytest -q -s --benchmark-enable tests/bench/test_metrics_bench.py

Under ``make test`` (benchmarks disabled) each runs once on 1,000 queues, as a smoke test that also
checks the exposition parses and holds every queue. The target is under 100 ms per scrape; figures are printed,
nothing fails on a time.
"""
import asyncio
import threading
import time
import urllib.request

import pytest
from cypid.broker.broker import Broker
from cypid.broker.http import metrics
from cypid.broker.options import parse_options
from cypid.pyx.codec import Described, encode, encode_header, ulong
from cypid.pyx.message import Message
from prometheus_client.parser import text_string_to_metric_families

QUEUES = 10_000
SMOKE_QUEUES = 1_000     # under make test (benchmarks disabled)


@pytest.fixture(scope="module")
def world(request):
    """The broker on its loop in a thread of its own, as in the daemon; the tests scrape from here."""
    count = QUEUES if request.config.getoption("benchmark_enable", False) else SMOKE_QUEUES
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="broker-loop", daemon=True)
    thread.start()

    def on_loop(fn):
        async def call():
            return fn()
        return asyncio.run_coroutine_threadsafe(call(), loop).result(300)

    options = parse_options(["--port", "0", "--no-data-dir", "--http-port", "0", "--log-enable", "error+",
                             "--mgmt-enable", "no"])
    broker = on_loop(lambda: Broker(options, loop))
    asyncio.run_coroutine_threadsafe(broker.start(), loop).result(60)
    data = encode_header(False, 4, 0, True, 0) + encode(Described(ulong(0x75), b"x" * 256))

    def declare():
        for i in range(count):
            queue, _ = broker.nodes.declare_queue("bench.queue.%05d" % i, {"qpid.max_size": 0})
            if i % 10 == 0:
                for _ in range(5):
                    queue.enqueue(Message(data))
    on_loop(declare)
    yield on_loop, broker, count
    asyncio.run_coroutine_threadsafe(broker.stop(), loop).result(60)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(60)
    loop.close()


def _check(text, count):
    families = {f.name: f for f in text_string_to_metric_families(text)}
    depth = families["cypid_queue_depth_messages"].samples
    assert len(depth) == count
    assert sum(s.value for s in depth) == count // 10 * 5
    return families


def _report(label, seconds, count):
    print("\n%s: %.1f ms per scrape of %d queues" % (label, seconds * 1000, count))


def test_render_10k_queues(benchmark, world):
    on_loop, broker, count = world
    cache = metrics.LabelCache()
    started = time.perf_counter()
    text = on_loop(lambda: metrics.text(broker, cache=cache)).decode()
    _report("render (first run, labels built)", time.perf_counter() - started, count)
    _check(text, count)
    print("exposition: %d bytes, %d lines" % (len(text), text.count("\n")))
    benchmark(on_loop, lambda: metrics.text(broker, cache=cache))
    if benchmark.stats is not None:
        _report("render (median)", benchmark.stats.stats.median, count)


def test_scrape_10k_queues_over_http(benchmark, world):
    _, broker, count = world
    url = "http://127.0.0.1:%d/metrics" % broker.http.port

    def scrape():
        with urllib.request.urlopen(url, timeout=60) as r:
            assert r.status == 200
            return r.read()

    started = time.perf_counter()
    text = scrape().decode()
    _report("GET /metrics (one run)", time.perf_counter() - started, count)
    _check(text, count)
    benchmark(scrape)
    if benchmark.stats is not None:
        _report("GET /metrics (median)", benchmark.stats.stats.median, count)
