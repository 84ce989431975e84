"""Federation beyond one hop (issue 14): dynamic bindings travel every hop of the routes, as qpidd's
``qpid.fed.origin`` / ``qpid.fed.tags`` do, never back to a broker they passed; a route's tag and exclude
list act on a message's ``x-qpid.trace`` as qpidd's bridge queue (``qpid.trace.id`` /
``qpid.trace.exclude``) does; and bindings come back across the hops after a broker is killed.

Real broker processes on loopback; routes made with qpid-route, messages sent with python-qpid-proton;
exactly once is read from the brokers' queue statistics once every route is quiet.
"""
from __future__ import annotations

from proton import Message, symbol

from cypid.tools import qmf
from tests.integration.test_federation import (clients, config, delivered_once, keys_bound,
                                               link_operational, probe, route, started)
from tests.support.blocking import take_all
from tests.support.broker import wait_until

import pytest


@pytest.fixture
def three(broker_factory):
    return started(broker_factory, 3)


def _exchange_everywhere(brokers, *flags):
    for x in brokers:
        config(x, "add", "exchange", "topic", "fed.topic", *flags)


def _inboxes(keys, queue="inbox"):
    """A queue on each broker of ``keys`` ({broker: key}) bound to fed.topic with its key."""
    for broker, key in keys.items():
        config(broker, "add", "queue", queue)
        config(broker, "bind", "fed.topic", queue, key)


def _publish(brokers, subject, count):
    sent = []
    for n, broker in enumerate(brokers):
        with clients(broker) as (client,):
            bodies = ["m-%d-%d" % (n, i) for i in range(count)]
            client.send("fed.topic", bodies, subject=subject)
            sent += bodies
    return sent


def _assert_received(brokers, queue, sent):
    for broker in brokers:
        with clients(broker) as (client,):
            assert sorted(client.receive(queue, len(sent))) == sorted(sent)


def test_a_ring_of_three_with_dynamic_routes_both_ways(three):
    """Every broker of the ring pulls from both others; each route is tagged with its source's name and
    excludes the names of the other two, as a qpidd ring is set up, so a message crosses one route only.
    Each broker's binding reaches the others directly and through the third (its tags stop it coming
    back): five bindings on each broker, no more; each message once to each broker; and when the queues
    go every binding goes, on every broker."""
    a, b, c = three
    names = {a: "a", b: "b", c: "c"}
    _exchange_everywhere(three)
    for x in three:
        for y in three:
            if x is not y:
                (z,) = [w for w in three if w is not x and w is not y]
                route("dynamic", "add", x.url, y.url, "fed.topic", names[y], "%s,%s" % (names[x], names[z]))
    keys = {a: "ring.*", b: "*.x", c: "ring.x"}        # all match ring.x; distinct, so each can be followed
    _inboxes(keys)
    # On each broker: its own key; each other broker's key from that broker, and again from the third
    # one (with its tags: it never goes back).
    expected = {x: sorted([keys[x]] + [keys[y] for y in three if y is not x] * 2) for x in three}
    wait_until(lambda: all(keys_bound(x, "fed.topic") == expected[x] for x in three), timeout=30,
               message=lambda: "5 bindings on each broker: %s" % [keys_bound(x, "fed.topic") for x in three])
    sent = _publish(three, "ring.x", 10)
    got = delivered_once(three, {x: "inbox" for x in three}, len(sent))
    assert got == {x: (len(sent), len(sent)) for x in three}
    assert all(keys_bound(x, "fed.topic") == expected[x] for x in three)    # still no more
    _assert_received(three, "inbox", sent)
    for x in three:
        config(x, "del", "queue", "inbox")
    wait_until(lambda: all(keys_bound(x, "fed.topic") == [] for x in three), timeout=30,
               message="every binding gone from every broker")


def _trace(message):
    return (message.annotations or {}).get(symbol("x-qpid.trace"))


def test_route_tag_and_exclude_list_act_as_qpidds(three):
    """A static route B <- A tagged ``via-a``: A's messages reach B with the trace ``via-a`` (the route's tag,
    nothing else); a route C <- B excluding ``via-a``: they stop at B, while B's own messages reach C with
    one tag in their trace (the default: B's, the route's source)."""
    a, b, c = three
    _exchange_everywhere(three)
    _inboxes({b: "t.#", c: "t.#"})
    route("route", "add", b.url, a.url, "fed.topic", "t.#", "via-a")
    route("route", "add", c.url, b.url, "fed.topic", "t.#", "", "via-a")
    wait_until(lambda: link_operational(b, a) and link_operational(c, b), message="both links operational")
    with clients(a, b, c) as (ca, cb, cc):
        probe(ca, cb, "fed.topic", "t.probe", "inbox", what="A's messages reach B")
        probe(cb, cc, "fed.topic", "t.probe", "inbox", what="B's messages reach C")
        for client in (cb, cc):          # B's own probes sit on its inbox (queued as they were sent)
            take_all(client.conn, "inbox")
        ca.send("fed.topic", ["from-a-%d" % i for i in range(5)], subject="t.1")
        cb.send("fed.topic", ["from-b-%d" % i for i in range(5)], subject="t.1")
        delivered_once(three, {b: "inbox", c: "inbox"}, {b: 10, c: 5})
        at_b = _messages(cb, "inbox", 10)
        at_c = _messages(cc, "inbox", 5)
    assert sorted(m.body for m in at_b) == sorted(["from-a-%d" % i for i in range(5)]
                                                  + ["from-b-%d" % i for i in range(5)])
    assert {_trace(m) for m in at_b if m.body.startswith("from-a")} == {"via-a"}
    assert {_trace(m) for m in at_b if m.body.startswith("from-b")} == {None}
    assert sorted(m.body for m in at_c) == ["from-b-%d" % i for i in range(5)]
    traces = {_trace(m) for m in at_c}
    assert len(traces) == 1 and traces != {"via-a"} and "," not in traces.pop()


def _messages(client, queue, count):
    receiver = client.conn.create_receiver(queue, credit=count)
    got = []
    for _ in range(count):
        got.append(receiver.receive(timeout=10))
        receiver.accept()
    receiver.close()
    return got


def test_bindings_come_back_across_hops_after_the_middle_broker_is_killed(three):
    """A chain A - B - C with durable dynamic routes both ways: A's binding reaches C through B. B killed
    (-9) and started again: its links and routes come back, A's binding goes to B again and from B to C,
    and what C publishes reaches A, once."""
    a, b, c = three
    _exchange_everywhere(three, "--durable")
    for x, y in ((a, b), (b, a), (b, c), (c, b)):
        route("-d", "dynamic", "add", x.url, y.url, "fed.topic")
    config(a, "add", "queue", "inbox", "--durable")
    config(a, "bind", "fed.topic", "inbox", "far.#")
    before = wait_until(lambda: _binders(c, "far.#"), timeout=30, message="A's binding on C")
    b.restart(kill=True)
    wait_until(lambda: _binders(c, "far.#") and not _binders(c, "far.#") & before, timeout=30,
               message="A's binding on C again, made by the restarted B")
    sent = _publish([c], "far.away", 10)
    assert delivered_once(three, {a: "inbox"}, len(sent)) == {a: (len(sent), len(sent))}
    _assert_received([a], "inbox", sent)


def _binders(broker, key):
    """The queues bound to ``broker``'s fed.topic with ``key`` (QMF)."""
    with qmf.connect(broker.url, timeout=10) as agent:
        return {str(x.queueRef) for x in agent.get_objects("binding")
                if str(x.exchangeRef).split(":")[-1] == "fed.topic" and x.bindingKey == key}


@pytest.mark.parametrize("kind", ["headers", "fanout"])
def test_headers_and_fanout_bindings_travel_two_hops(three, kind):
    """A chain A - B - C with dynamic routes both ways on a headers (or fanout) exchange: A's binding reaches
    C through B with its match map (fanout: as one subscription), so C's messages that match reach A once,
    and the others stay at C."""
    a, b, c = three
    for x in three:
        config(x, "add", "exchange", kind, "fed.x")
    for x, y in ((a, b), (b, a), (b, c), (c, b)):
        route("dynamic", "add", x.url, y.url, "fed.x")
    config(a, "add", "queue", "inbox")
    config(a, "bind", "fed.x", "inbox", *(["key", "all", "colour=red"] if kind == "headers" else []))
    wait_until(lambda: keys_bound(c, "fed.x"), timeout=30, message="A's binding on C")
    with clients(c) as (cc,):
        sender = cc.conn.create_sender("fed.x")
        for i in range(10):
            sender.send(Message(body="red-%d" % i, properties={"colour": "red"}))
            sender.send(Message(body="blue-%d" % i, properties={"colour": "blue"}))
        sender.close()
    expected = ["red-%d" % i for i in range(10)] + ([] if kind == "headers" else ["blue-%d" % i for i in range(10)])
    assert delivered_once(three, {a: "inbox"}, len(expected)) == {a: (len(expected), len(expected))}
    _assert_received([a], "inbox", expected)
