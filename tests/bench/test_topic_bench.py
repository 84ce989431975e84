"""Topic exchange benchmarks: routing a typical key through 1,000 bindings.

    .venv/bin/python -m pytest -q -p no:cacheprovider --benchmark-enable tests/bench/test_topic_bench.py

``uncached`` is the matcher itself (what a key costs the first time it is seen, or after any bind or
unbind empties the exchange's route cache); ``cached`` is ``route()`` for a key seen before (one
dictionary lookup and the counters); ``long key`` is a 120-word key, near TOPIC_KEY_LIMIT, against
``#.error.#``-style bindings. Under ``make test`` (benchmarks disabled) each runs once as a test.
"""
import pytest

from cypid.broker.exchanges import make_exchange

MARKETS = ["nyse", "nasdaq", "lse", "tse", "hkex"]


class Q:
    def __init__(self, name):
        self.name = name


def thousand_bindings():
    """1,000 bindings of the usual shapes: exact keys, one-word wildcards, subtrees, suffixes."""
    ex = make_exchange("bench", "topic")
    n = 0
    i = 0
    while n < 1000:
        sym = "sym%d" % i
        market = MARKETS[i % len(MARKETS)]
        for pattern in ("stock.%s.%s" % (market, sym), "stock.*.%s" % sym, "news.%s.#" % sym,
                        "#.%s.alert" % sym):
            ex.bind(Q("q%d" % n), pattern, {})
            n += 1
        i += 1
    ex.bind(Q("all-stock"), "stock.#", {})
    ex.bind(Q("errors"), "#.error.#", {})
    return ex


@pytest.fixture(scope="module")
def exchange():
    return thousand_bindings()


def test_topic_route_uncached_1000_bindings(benchmark, exchange):
    out = benchmark(exchange._match, "stock.nyse.sym100")
    assert [q.name for q in out] == ["q400", "q401", "all-stock"]


def test_topic_route_cached_1000_bindings(benchmark, exchange):
    exchange.route("stock.nyse.sym100")
    out = benchmark(exchange.route, "stock.nyse.sym100")
    assert len(out) == 3


def test_topic_route_uncached_long_key(benchmark, exchange):
    key = ".".join(["w%d" % (i % 7) for i in range(119)] + ["error"])
    out = benchmark(exchange._match, key)
    assert [q.name for q in out] == ["errors"]
