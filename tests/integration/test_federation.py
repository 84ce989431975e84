"""Federation (issue 14): qpid-route's links and routes between real broker processes on loopback.

Every route is made with the qpid-route command (a subprocess), messages go in and out with
python-qpid-proton, and waits are deadlines on conditions.
"""
from __future__ import annotations

import pytest
from proton import Message
from proton.utils import BlockingConnection

from tests.integration.test_tools import ok, run
from tests.support.broker import wait_until

FAST_LINKS = ["--link-maintenance-interval", "0.1"]


def route(*args):
    return ok(run("qpid-route", *args))


def config(broker, *args):
    return ok(run("qpid-config", "-b", broker.url, *args))


@pytest.fixture
def three(broker_factory):
    return [broker_factory(*FAST_LINKS) for _ in range(3)]


class Client:
    """One proton connection to a broker."""

    def __init__(self, broker):
        self.conn = BlockingConnection(broker.url, timeout=10)

    def send(self, address, bodies, subject=None, durable=False):
        sender = self.conn.create_sender(address)
        for body in bodies:
            sender.send(Message(body=body, subject=subject, durable=durable))
        sender.close()

    def receive(self, address, count, timeout=10):
        receiver = self.conn.create_receiver(address, credit=max(count, 1))
        got = []
        for _ in range(count):
            msg = receiver.receive(timeout=timeout)
            receiver.accept()
            got.append(msg.body)
        receiver.close()
        return got

    def drain(self, address, timeout=0.5):
        """Everything left on ``address`` (a queue) now."""
        receiver = self.conn.create_receiver(address, credit=100)
        got = []
        try:
            while True:
                msg = receiver.receive(timeout=timeout)
                receiver.accept()
                got.append(msg.body)
        except Exception:
            pass
        receiver.close()
        return got

    def close(self):
        self.conn.close()


def bind_queue(broker, exchange, queue, key):
    config(broker, "add", "queue", queue)
    config(broker, "bind", exchange, queue, key)


def link_operational(broker, remote):
    text = route("link", "list", broker.url)
    return any(line.split()[:2] == list(remote.url.split(":")) and "Operational" in line
               for line in text.splitlines() if line.strip())


def test_static_route_carries_messages(three):
    a, b, _ = three
    config(a, "add", "exchange", "topic", "fed.topic")
    config(b, "add", "exchange", "topic", "fed.topic")
    bind_queue(a, "fed.topic", "inbox", "stock.#")
    route("route", "add", a.url, b.url, "fed.topic", "stock.#")
    wait_until(lambda: link_operational(a, b), message="the link from A to B operational")
    wait_until(lambda: "fed.topic" in route("route", "list", a.url), message="the route listed")
    cb, ca = Client(b), Client(a)
    try:
        bodies = ["m%d" % i for i in range(50)]
        # The bridge's subscription on B may attach a moment after the link is up: send until one arrives.
        wait_until(lambda: cb.send("fed.topic", ["probe"], subject="stock.probe") or ca.drain("inbox", 0.2),
                   message="a first message across the route")
        cb.send("fed.topic", bodies, subject="stock.buy")
        cb.send("fed.topic", ["not routed"], subject="bonds.sell")
        got = ca.receive("inbox", 50)
        assert got == bodies
        assert ca.drain("inbox") in ([], ["probe"])
    finally:
        cb.close()
        ca.close()


def test_route_del_stops_forwarding(three):
    a, b, _ = three
    for x in (a, b):
        config(x, "add", "exchange", "direct", "fed.direct")
    bind_queue(a, "fed.direct", "inbox", "k")
    route("route", "add", a.url, b.url, "fed.direct", "k")
    cb, ca = Client(b), Client(a)
    try:
        wait_until(lambda: cb.send("fed.direct", ["probe"], subject="k") or ca.drain("inbox", 0.2),
                   message="a first message across the route")
        route("route", "del", a.url, b.url, "fed.direct", "k")
        assert route("route", "list", a.url).strip() == ""
        cb.send("fed.direct", ["after del"], subject="k")
        assert ca.drain("inbox", 1.0) == []
    finally:
        cb.close()
        ca.close()


def test_dynamic_route_follows_a_later_binding(three):
    a, b, _ = three
    for x in (a, b):
        config(x, "add", "exchange", "topic", "fed.topic")
    route("dynamic", "add", a.url, b.url, "fed.topic")
    wait_until(lambda: link_operational(a, b), message="the link operational")
    bind_queue(a, "fed.topic", "late", "news.#")       # made after the route
    cb, ca = Client(b), Client(a)
    try:
        wait_until(lambda: cb.send("fed.topic", ["probe"], subject="news.x") or ca.drain("late", 0.2),
                   message="the binding made later on A propagated to B")
        cb.send("fed.topic", ["n1", "n2"], subject="news.world")
        assert ca.receive("late", 2) == ["n1", "n2"]
    finally:
        cb.close()
        ca.close()


def test_dynamic_routes_both_ways_deliver_each_message_once(three):
    a, b, _ = three
    for x in (a, b):
        config(x, "add", "exchange", "topic", "fed.topic")
    route("dynamic", "add", a.url, b.url, "fed.topic")
    route("dynamic", "add", b.url, a.url, "fed.topic")
    bind_queue(a, "fed.topic", "qa", "#")
    bind_queue(b, "fed.topic", "qb", "#")
    ca, cb = Client(a), Client(b)
    try:
        def both_see_probe():
            ca.send("fed.topic", ["probe"], subject="p")
            return "probe" in cb.drain("qb", 0.3)
        wait_until(both_see_probe, message="A's messages reach B")
        ca.drain("qa", 0.3)
        ca.send("fed.topic", ["from-a-%d" % i for i in range(20)], subject="x")
        cb.send("fed.topic", ["from-b-%d" % i for i in range(20)], subject="x")
        everything = sorted(["from-a-%d" % i for i in range(20)] + ["from-b-%d" % i for i in range(20)])
        got_a, got_b = [], []
        wait_until(lambda: got_a.extend(ca.drain("qa", 0.3)) or len(got_a) >= 40, message="A got all 40")
        wait_until(lambda: got_b.extend(cb.drain("qb", 0.3)) or len(got_b) >= 40, message="B got all 40")
        # Nothing more arrives: no message looped back.
        got_a += ca.drain("qa", 1.0)
        got_b += cb.drain("qb", 1.0)
        got_a = [x for x in got_a if x != "probe"]
        got_b = [x for x in got_b if x != "probe"]
        assert sorted(got_a) == everything
        assert sorted(got_b) == everything
    finally:
        ca.close()
        cb.close()


def test_queue_route_moves_a_queue(three):
    a, b, _ = three
    config(a, "add", "exchange", "direct", "fed.direct")
    bind_queue(a, "fed.direct", "moved", "orders")
    config(b, "add", "queue", "orders")
    cb, ca = Client(b), Client(a)
    try:
        bodies = ["o%d" % i for i in range(100)]
        cb.send("orders", bodies, subject="orders")
        route("queue", "add", a.url, b.url, "fed.direct", "orders")
        assert ca.receive("moved", 100) == bodies
        assert cb.drain("orders") == []          # moved, not copied
    finally:
        cb.close()
        ca.close()


def test_chain_a_b_c_delivers_end_to_end(three):
    a, b, c = three
    for x in three:
        config(x, "add", "exchange", "topic", "fed.topic")
    bind_queue(c, "fed.topic", "end", "#")
    route("route", "add", b.url, a.url, "fed.topic", "#")      # A -> B
    route("route", "add", c.url, b.url, "fed.topic", "#")      # B -> C
    ca, cc = Client(a), Client(c)
    try:
        wait_until(lambda: ca.send("fed.topic", ["probe"], subject="z") or cc.drain("end", 0.2),
                   message="a message across A -> B -> C")
        ca.send("fed.topic", ["c%d" % i for i in range(30)], subject="z")
        got = []
        wait_until(lambda: got.extend(cc.drain("end", 0.3)) or len([x for x in got if x != "probe"]) >= 30,
                   message="30 messages at C")
        assert [x for x in got if x != "probe"] == ["c%d" % i for i in range(30)]
    finally:
        ca.close()
        cc.close()


def test_push_route_with_src_local(three):
    a, b, _ = three
    for x in (a, b):
        config(x, "add", "exchange", "direct", "fed.direct")
    bind_queue(a, "fed.direct", "pushed", "k")
    route("-s", "route", "add", a.url, b.url, "fed.direct", "k")    # link made on B, pushing to A
    links = route("link", "list", b.url)
    assert "%d" % a.port in links
    cb, ca = Client(b), Client(a)
    try:
        wait_until(lambda: "Operational" in route("link", "list", b.url), message="B's link up")
        cb.send("fed.direct", ["p%d" % i for i in range(10)], subject="k")
        assert ca.receive("pushed", 10) == ["p%d" % i for i in range(10)]
    finally:
        cb.close()
        ca.close()


def test_usage_and_errors_have_qpidds_exit_codes(three):
    a, b, _ = three
    assert run("qpid-route").returncode == 255
    assert run("qpid-route", "route", "add", a.url).returncode == 255
    result = run("qpid-route", "route", "del", a.url, b.url, "amq.topic", "k")
    assert result.returncode == 1
    assert result.stdout.startswith("Failed: Exception - No link found from")
    assert route("link", "list", a.url).strip() == "No Links Found"


def test_route_map_prints_the_seed_layout(three):
    a, b, c = three
    for x in three:
        config(x, "add", "exchange", "topic", "fed.topic")
    config(c, "add", "exchange", "direct", "fed.direct")
    config(b, "add", "exchange", "direct", "fed.direct")
    route("dynamic", "add", a.url, b.url, "fed.topic")
    route("dynamic", "add", b.url, a.url, "fed.topic")
    route("route", "add", b.url, c.url, "fed.direct", "rkey")
    text = route("route", "map", a.url)
    lines = text.splitlines()
    assert lines[1] == "Finding Linked Brokers:"
    assert "    %s... Ok" % a.url in lines
    assert "Dynamic Routes:" in lines and "Static Routes:" in lines
    assert "  Exchange fed.topic:" in lines
    assert any(line.strip() in ("%s <=> %s" % (a.url, b.url), "%s <=> %s" % (b.url, a.url)) for line in lines)
    assert "  %s(ex=fed.direct) <= %s(ex=fed.direct) key=rkey" % (b.url, c.url) in lines
    listed = route("link", "list", b.url).splitlines()
    assert listed[1].startswith("Host            Port    Transport Durable  State")
    assert listed[2] == "=" * 77


def test_durable_link_and_route_survive_restarts(broker_factory):
    a, b = broker_factory(*FAST_LINKS), broker_factory(*FAST_LINKS)
    for x in (a, b):
        config(x, "add", "exchange", "direct", "fed.direct", "--durable")
    config(a, "add", "queue", "inbox", "--durable")
    config(a, "bind", "fed.direct", "inbox", "k")
    route("-d", "route", "add", a.url, b.url, "fed.direct", "k")
    a.restart()
    b.restart()
    listed = route("link", "list", a.url)
    assert listed.splitlines()[3].split()[3] == "Y"      # durable
    assert "fed.direct k" in route("route", "list", a.url)
    cb, ca = Client(b), Client(a)
    try:
        wait_until(lambda: cb.send("fed.direct", ["probe"], subject="k") or ca.drain("inbox", 0.2),
                   message="the recovered route carries messages")
        cb.send("fed.direct", ["after restart"], subject="k")
        assert "after restart" in ca.receive("inbox", 1) + ca.drain("inbox", 0.3)
    finally:
        cb.close()
        ca.close()


def test_source_killed_mid_stream_under_a_durable_queue_route_loses_nothing(broker_factory):
    """B (the source) holds a durable queue that A drains over a durable queue route; B is killed -9
    while messages flow and restarted on its port: the link reconnects and every message B accepted
    reaches A's durable queue (duplicates allowed and counted)."""
    a, b = broker_factory(*FAST_LINKS), broker_factory(*FAST_LINKS)
    config(a, "add", "exchange", "direct", "fed.direct", "--durable")
    config(a, "add", "queue", "moved", "--durable")
    config(a, "bind", "fed.direct", "moved", "orders")
    config(b, "add", "queue", "orders", "--durable")
    route("-d", "queue", "add", a.url, b.url, "fed.direct", "orders")
    total = 2000
    cb = Client(b)
    cb.send("orders", ["o%d" % i for i in range(total // 2)], subject="orders", durable=True)
    ca = Client(a)
    first = ca.receive("moved", 10)          # the route is moving messages
    b.kill()
    try:
        cb.close()
    except Exception:
        pass
    b.start()
    cb = Client(b)
    cb.send("orders", ["o%d" % i for i in range(total // 2, total)], subject="orders", durable=True)
    got = list(first)
    wait_until(lambda: got.extend(ca.drain("moved", 0.3)) or set(got) >= {"o%d" % i for i in range(total)},
               timeout=60, message="every accepted message at A")
    got += ca.drain("moved", 0.5)
    duplicates = len(got) - len(set(got))
    print("delivered %d, distinct %d, duplicates %d" % (len(got), len(set(got)), duplicates))
    assert set(got) == {"o%d" % i for i in range(total)}
    cb.close()
    ca.close()

