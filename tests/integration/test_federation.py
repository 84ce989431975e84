"""Federation (issue 14): qpid-route's links and routes between real broker processes on loopback.

Every route is made with the qpid-route command (a subprocess), messages go in and out with
python-qpid-proton, and waits are deadlines on conditions.
"""
from __future__ import annotations

import contextlib
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from proton import Message
from proton.utils import BlockingConnection

from cypid.tools import qmf
from tests.integration.test_tools import ok, run
from tests.support.broker import wait_until

FAST_LINKS = ["--link-maintenance-interval", "0.1"]


def route(*args):
    return ok(run("qpid-route", *args))


def config(broker, *args):
    return ok(run("qpid-config", "-b", broker.url, *args))


def started(broker_factory, count):
    """``count`` brokers with fast link retries, started in parallel."""
    brokers = [broker_factory(*FAST_LINKS, start=False) for _ in range(count)]
    with ThreadPoolExecutor(count) as pool:
        list(pool.map(lambda b: b.start(), brokers))
    return brokers


@pytest.fixture
def two(broker_factory):
    return started(broker_factory, 2)


@pytest.fixture
def three(broker_factory):
    return started(broker_factory, 3)


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


def probe(sender, receiver, address, subject, queue, what="a first message across the route"):
    """Send probes (numbered, "probe <series> N") to ``address`` through ``sender`` until one arrives on
    ``queue`` at ``receiver``: the route's subscription may attach a moment after its link is up. Then
    take every probe sent after the first that came, which the route carries too (in order): none of
    them may arrive later, among the messages a test counts."""
    series = "probe %s " % uuid.uuid4().hex[:6]
    sent, seen = [], []

    def ours():
        return [body for body in seen if isinstance(body, str) and body.startswith(series)]

    def across():
        sent.append(series + str(len(sent)))
        sender.send(address, sent[-1:], subject=subject)
        seen.extend(receiver.drain(queue, 0.2))
        return ours()

    wait_until(across, message=what)
    first = min(sent.index(body) for body in ours())
    wait_until(lambda: seen.extend(receiver.drain(queue, 0.2)) or set(ours()) >= set(sent[first:]),
               message="the probes sent after the first one that came")


@contextlib.contextmanager
def routed(dest, src, exchange, key, *options, kind="direct", queue="inbox", durable=False):
    """The two-broker set-up most tests share: ``exchange`` (of ``kind``) on both brokers, ``queue`` on
    ``dest`` bound to it with ``key``, ``qpid-route [options] route add dest src exchange key`` and a
    probe across. Yields (client of src, client of dest); closes them after."""
    flags = ["--durable"] if durable else []
    for x in (dest, src):
        config(x, "add", "exchange", kind, exchange, *flags)
    config(dest, "add", "queue", queue, *flags)
    config(dest, "bind", exchange, queue, key)
    route(*options, "route", "add", dest.url, src.url, exchange, key)
    with clients(src, dest) as (cs, cd):
        probe(cs, cd, exchange, key.replace("#", "probe").replace("*", "probe"), queue)
        yield cs, cd


@contextlib.contextmanager
def clients(*brokers):
    """One Client per broker, closed after (a broker killed meanwhile is fine)."""
    made = [Client(b) for b in brokers]
    try:
        yield made
    finally:
        for c in made:
            try:
                c.close()
            except Exception:
                pass


def test_static_route_carries_messages(three):
    a, b, _ = three
    with routed(a, b, "fed.topic", "stock.#", kind="topic") as (cb, ca):
        wait_until(lambda: link_operational(a, b), message="the link from A to B operational")
        assert "fed.topic" in route("route", "list", a.url)
        bodies = ["m%d" % i for i in range(50)]
        cb.send("fed.topic", bodies, subject="stock.buy")
        cb.send("fed.topic", ["not routed"], subject="bonds.sell")
        assert ca.receive("inbox", 50) == bodies
        assert without_probes(ca.drain("inbox")) == []      # "not routed" was not


def test_route_del_stops_forwarding(three):
    a, b, _ = three
    with routed(a, b, "fed.direct", "k") as (cb, ca):
        route("route", "del", a.url, b.url, "fed.direct", "k")
        assert route("route", "list", a.url).strip() == ""
        cb.send("fed.direct", ["after del"], subject="k")
        assert without_probes(ca.drain("inbox", 1.0)) == []


def test_dynamic_route_follows_a_later_binding(two):
    a, b = two
    for x in (a, b):
        config(x, "add", "exchange", "topic", "fed.topic")
    route("dynamic", "add", a.url, b.url, "fed.topic")
    wait_until(lambda: link_operational(a, b), message="the link operational")
    bind_queue(a, "fed.topic", "late", "news.#")       # made after the route
    with clients(b, a) as (cb, ca):
        probe(cb, ca, "fed.topic", "news.x", "late", what="the binding made later on A propagated to B")
        cb.send("fed.topic", ["n1", "n2"], subject="news.world")
        assert ca.receive("late", 2) == ["n1", "n2"]


def test_dynamic_routes_both_ways_deliver_each_message_once(two):
    a, b = two
    for x in (a, b):
        config(x, "add", "exchange", "topic", "fed.topic")
    route("dynamic", "add", a.url, b.url, "fed.topic")
    route("dynamic", "add", b.url, a.url, "fed.topic")
    bind_queue(a, "fed.topic", "qa", "#")
    bind_queue(b, "fed.topic", "qb", "#")
    with clients(a, b) as (ca, cb):
        probe(ca, cb, "fed.topic", "p", "qb", what="A's messages reach B")
        probe(cb, ca, "fed.topic", "p", "qa", what="B's messages reach A")
        ca.send("fed.topic", ["from-a-%d" % i for i in range(20)], subject="x")
        cb.send("fed.topic", ["from-b-%d" % i for i in range(20)], subject="x")
        everything = sorted(["from-a-%d" % i for i in range(20)] + ["from-b-%d" % i for i in range(20)])
        got_a, got_b = [], []
        wait_until(lambda: got_a.extend(ca.drain("qa", 0.3)) or len(without_probes(got_a)) >= 40,
                   message="A got all 40")
        wait_until(lambda: got_b.extend(cb.drain("qb", 0.3)) or len(without_probes(got_b)) >= 40,
                   message="B got all 40")
        # Nothing more arrives: no message looped back.
        got_a += ca.drain("qa", 1.0)
        got_b += cb.drain("qb", 1.0)
        assert sorted(without_probes(got_a)) == everything
        assert sorted(without_probes(got_b)) == everything


def without_probes(bodies):
    return [x for x in bodies if not (isinstance(x, str) and x.startswith("probe "))]


def test_queue_route_moves_a_queue(two):
    a, b = two
    config(a, "add", "exchange", "direct", "fed.direct")
    bind_queue(a, "fed.direct", "moved", "orders")
    config(b, "add", "queue", "orders")
    with clients(b, a) as (cb, ca):
        bodies = ["o%d" % i for i in range(100)]
        cb.send("orders", bodies, subject="orders")
        route("queue", "add", a.url, b.url, "fed.direct", "orders")
        assert ca.receive("moved", 100) == bodies
        assert cb.drain("orders") == []          # moved, not copied


def test_chain_a_b_c_delivers_end_to_end(three):
    a, b, c = three
    for x in three:
        config(x, "add", "exchange", "topic", "fed.topic")
    bind_queue(c, "fed.topic", "end", "#")
    route("route", "add", b.url, a.url, "fed.topic", "#")      # A -> B
    route("route", "add", c.url, b.url, "fed.topic", "#")      # B -> C
    with clients(a, c) as (ca, cc):
        probe(ca, cc, "fed.topic", "z", "end", what="a message across A -> B -> C")
        ca.send("fed.topic", ["c%d" % i for i in range(30)], subject="z")
        got = []
        wait_until(lambda: got.extend(cc.drain("end", 0.3)) or len(without_probes(got)) >= 30,
                   message="30 messages at C")
        assert without_probes(got) == ["c%d" % i for i in range(30)]


def test_push_route_with_src_local(two):
    a, b = two
    with routed(a, b, "fed.direct", "k", "-s") as (cb, ca):     # the link made on B, pushing to A
        assert "%d" % a.port in route("link", "list", b.url)
        assert route("link", "list", a.url).strip() == "No Links Found"
        wait_until(lambda: "Operational" in route("link", "list", b.url), message="B's link up")
        ca.drain("inbox")
        cb.send("fed.direct", ["p%d" % i for i in range(10)], subject="k")
        assert without_probes(ca.receive("inbox", 10)) == ["p%d" % i for i in range(10)]


def test_usage_and_errors_have_qpidds_exit_codes(two):
    a, b = two
    assert run("qpid-route").returncode == 255
    assert run("qpid-route", "route", "add", a.url).returncode == 255
    result = run("qpid-route", "route", "del", a.url, b.url, "amq.topic", "k")
    assert result.returncode == 1
    assert result.stdout.startswith("Failed: Exception - No link found from")
    assert route("link", "list", a.url).strip() == "No Links Found"


def test_durable_link_and_route_survive_restarts(two):
    a, b = two
    with routed(a, b, "fed.direct", "k", "-d", durable=True):
        pass
    a.restart()
    b.restart()
    listed = route("link", "list", a.url)
    assert listed.splitlines()[3].split()[3] == "Y"      # durable
    assert "fed.direct k" in route("route", "list", a.url)
    with clients(b, a) as (cb, ca):
        probe(cb, ca, "fed.direct", "k", "inbox", what="the recovered route carries messages")
        cb.send("fed.direct", ["after restart"], subject="k")
        assert "after restart" in ca.receive("inbox", 1) + ca.drain("inbox", 0.3)


def test_source_killed_mid_stream_under_a_durable_queue_route_loses_nothing(two):
    """B (the source) holds a durable queue that A drains over a durable queue route; B is killed -9
    while messages flow and restarted on its port: the link reconnects and every message B accepted
    reaches A's durable queue (duplicates allowed and counted)."""
    a, b = two
    config(a, "add", "exchange", "direct", "fed.direct", "--durable")
    config(a, "add", "queue", "moved", "--durable")
    config(a, "bind", "fed.direct", "moved", "orders")
    config(b, "add", "queue", "orders", "--durable")
    route("-d", "queue", "add", a.url, b.url, "fed.direct", "orders")
    total = 2000
    with clients(a) as (ca,):
        with clients(b) as (cb,):
            cb.send("orders", ["o%d" % i for i in range(total // 2)], subject="orders", durable=True)
            first = ca.receive("moved", 10)          # the route is moving messages
            b.kill()
        b.start()
        with clients(b) as (cb,):
            cb.send("orders", ["o%d" % i for i in range(total // 2, total)], subject="orders", durable=True)
        assert_all_arrive(ca, "moved", ["o%d" % i for i in range(total)], first)


def assert_all_arrive(client, queue, sent, got=()):
    """Every body in ``sent`` reaches ``queue`` (duplicates allowed, counted and printed)."""
    got = list(got)
    wait_until(lambda: got.extend(client.drain(queue, 0.3)) or set(got) >= set(sent), timeout=60,
               message="every accepted message on %s" % queue)
    got += client.drain(queue, 0.5)
    got = without_probes(got)
    print("delivered %d, distinct %d, duplicates %d" % (len(got), len(set(got)), len(got) - len(set(got))))
    assert set(got) == set(sent)


def test_a_durable_push_routes_queue_survives_the_source_killed(two):
    """B pushes fed.direct/k to A over a durable push route (-s -d). B is killed -9 right after a stream of
    durable messages (some still in the route's queue or in flight to A), restarted; then A is stopped, B
    takes more messages for A and is killed -9 again: those sit only in the route's queue on B. Both B and
    A restarted, every message B accepted reaches A."""
    a, b = two
    with routed(a, b, "fed.direct", "k", "-s", "-d", durable=True) as (cb, ca):
        ca.drain("inbox")
        cb.send("fed.direct", ["p%d" % i for i in range(400)], subject="k", durable=True)
        b.kill()
    b.start()
    a.stop()
    with clients(b) as (cb,):
        cb.send("fed.direct", ["p%d" % i for i in range(400, 600)], subject="k", durable=True)
    b.kill()
    b.start()
    a.start()
    with clients(a) as (ca,):
        assert_all_arrive(ca, "inbox", ["p%d" % i for i in range(600)])


def queue_stats(broker):
    """{queue name: (msgDepth, msgTotalEnqueues)} of ``broker`` (QMF)."""
    with qmf.connect(broker.url, timeout=10) as agent:
        return {q.name: (q.msgDepth, q.msgTotalEnqueues) for q in agent.get_objects("queue")}


def keys_bound(broker, exchange):
    """The binding keys on ``broker``'s ``exchange`` (QMF), sorted, one per binding."""
    with qmf.connect(broker.url, timeout=10) as agent:
        return sorted(b.bindingKey for b in agent.get_objects("binding")
                      if str(b.exchangeRef).split(":")[-1] == exchange)


def delivered_once(brokers, inboxes, count):
    """Wait until every queue on ``brokers`` but the ``inboxes`` ({broker: queue}) is empty (nothing left
    on a route's subscription nor in flight: a bridge settles a message on its source only once its own
    exchange took it), each inbox holds ``count``, and nothing moved between two passes over all the
    brokers (no queue's enqueue count changed); then {broker: (depth, enqueues)} of each inbox.
    ``count``: one for all inboxes, or {broker: count}."""
    counts = count if isinstance(count, dict) else {b: count for b in inboxes}
    last = [None]

    def quiet():
        snapshot = {(b.url, name): stats for b in brokers for name, stats in queue_stats(b).items()}
        previous, last[0] = last[0], snapshot
        for (url, name), (depth, _) in snapshot.items():
            mine = [q for b, q in inboxes.items() if b.url == url]
            if depth and name not in mine:
                return False
        if any(snapshot[(b.url, q)][0] < counts[b] for b, q in inboxes.items()):
            return False
        if previous is None:
            return False
        both = snapshot.keys() & previous.keys()    # (each pass's QMF reply queues are new ones)
        return all(snapshot[k] == previous[k] for k in both)
    wait_until(quiet, timeout=30, message=lambda: "every route quiet and every inbox holding %d: %s" % (
        count, {k: v for k, v in (last[0] or {}).items() if v[0] or k[1] in inboxes.values()}))
    return {b: last[0][(b.url, q)] for b, q in inboxes.items()}
