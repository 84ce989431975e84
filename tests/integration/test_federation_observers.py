"""A dynamic route follows the destination's bindings through the broker's observers (broker/observers.py),
not by polling: two Brokers in this process (real listeners, the link a real AMQP connection between them),
so the test can count how often the bridge looks at the bindings.

A binds ``fed.topic``; A's dynamic route pulls from B's ``fed.topic``, so each key bound on A is one
subscription (a queue owned by A's link) bound on B.
"""
from __future__ import annotations

import asyncio
import time

import pytest

from cypid.broker import federation
from cypid.broker.broker import Broker
from cypid.broker.options import parse_options


#: --link-maintenance-interval: a bridge that polled would look at the bindings at least this often.
INTERVAL = 0.1
#: An idle window in which the bridge must make no pass: five of the periods a poller would use.
IDLE = 5 * INTERVAL


def _broker(loop):
    options = parse_options(["--port", "0", "--no-data-dir", "--log-enable", "error+",
                             "--link-maintenance-interval", str(INTERVAL)])
    return Broker(options, loop)


async def until(predicate, timeout=10.0, what="the condition"):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for %s" % what)
        await asyncio.sleep(0.01)       # poll: the brokers run in this loop: let them work, then look again


def subscribed_keys(broker):
    """The keys B's fed.topic has bound for other brokers' bridges."""
    ex = broker.nodes.exchanges["fed.topic"]
    return sorted(key for queue, key, _args in ex.bindings if federation._federation_queue(queue))


@pytest.fixture
def loop():
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def test_a_binding_on_the_destination_reaches_the_source_without_polling(loop, monkeypatch):
    passes = []
    follow = federation.PullWorker._follow_bindings

    async def counted(self):
        passes.append(time.monotonic())
        await follow(self)
    monkeypatch.setattr(federation.PullWorker, "_follow_bindings", counted)

    async def run():
        a, b = _broker(loop), _broker(loop)
        await a.start()
        await b.start()
        try:
            for x in (a, b):
                x.nodes.declare_exchange("fed.topic", {"exchange-type": "topic"})
            link = a.federation.create_link("to-b", {"host": "127.0.0.1", "port": b.port})
            a.federation.create_bridge("dyn", {"link": "to-b", "src": "fed.topic", "dest": "fed.topic",
                                               "dynamic": True})
            await until(lambda: link.state == federation.OPERATIONAL and passes, what="the route running")
            # Idle: nothing bound, nothing changes, so the bridge does not look again (it polled every
            # min(0.5 s, --link-maintenance-interval) before). What is shown is that nothing happens, and
            # no event marks the end of "nothing": the window is the point, long enough for five polls.
            idle = len(passes)
            await asyncio.sleep(IDLE)
            assert len(passes) == idle
            ex = a.nodes.exchanges["fed.topic"]
            q1, _ = a.nodes.declare_queue("news", {})
            q2, _ = a.nodes.declare_queue("sport", {})
            a.nodes.bind(ex, q1, "news.#")
            a.nodes.bind(ex, q2, "sport.#")
            a.nodes.bind(ex, q2, "sport.#")          # exists: no event
            await until(lambda: subscribed_keys(b) == ["news.#", "sport.#"], what="both keys subscribed on B")
            a.nodes.unbind(ex, q1, "news.#")
            await until(lambda: subscribed_keys(b) == ["sport.#"], what="news.# unsubscribed on B")
            a.nodes.delete_queue(q2)                 # its binding goes with it
            await until(lambda: subscribed_keys(b) == [], what="sport.# unsubscribed on B")
            # B's subscriptions are bound to B's exchange, and A's own bridge ignores them; the bridge's
            # own subscriptions on B never come back to A (no dynamic route on B here anyway).
            assert subscribed_keys(a) == []
            settled = len(passes)
            await asyncio.sleep(IDLE)           # again a window with nothing in it, as above
            assert len(passes) == settled
        finally:
            await a.stop()
            await b.stop()

    loop.run_until_complete(run())
