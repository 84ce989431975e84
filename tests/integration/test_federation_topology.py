"""qpid-route over the seed's federated network (section 2.1.2): eight brokers on loopback linked as the
seed's ``route map`` example shows; ``route map`` from the first broker prints the seed's output line for
line (the seed's ``localhost:1000N`` being our N-th broker's address), and ``link list`` / ``route list``
print every broker's links and routes in qpidd's layouts.

The brokers start in parallel; the routes are made with the tool in this process (``-q``: without it
each new link costs the tool's one-second state poll), in the order the seed's map lists them.
"""
from __future__ import annotations

import contextlib
import io
import pytest

from cypid.tools import config as qpid_config
from cypid.tools import route as qpid_route
from tests.integration.test_federation import Client, delivered_once, keys_bound, started
from tests.conftest import fail_on_leaks
from tests.support.broker import BrokerFactory, wait_until

#: The seed's example, verbatim (qpidd-1.36-managing-and-ha.txt, section 2.1.2).
SEED_MAP = """\
$ qpid-route route map localhost:10001

Finding Linked Brokers:
    localhost:10001... Ok
    localhost:10002... Ok
    localhost:10003... Ok
    localhost:10004... Ok
    localhost:10005... Ok
    localhost:10006... Ok
    localhost:10007... Ok
    localhost:10008... Ok

Dynamic Routes:

  Exchange fed.topic:
    localhost:10002 <=> localhost:10001
    localhost:10003 <=> localhost:10002
    localhost:10004 <=> localhost:10002
    localhost:10005 <=> localhost:10002
    localhost:10006 <=> localhost:10005
    localhost:10007 <=> localhost:10006
    localhost:10008 <=> localhost:10006

  Exchange fed.direct:
    localhost:10002  => localhost:10001
    localhost:10004  => localhost:10003
    localhost:10003  => localhost:10002
    localhost:10001  => localhost:10004

Static Routes:

  localhost:10003(ex=amq.direct) <= localhost:10005(ex=amq.direct) key=rkey
  localhost:10003(ex=amq.direct) <= localhost:10005(ex=amq.direct) key=rkey2

"""

#: The routes behind it, as (command, dest broker, src broker, exchange[, key]), brokers numbered as the
#: seed's ports. ``X <=> Y`` in the map is a dynamic route on Y from X made first, then one on X from Y;
#: ``X  => Y`` a dynamic route on Y from X; ``T(ex=E) <= F(ex=E) key=K`` a static route on T from F.
TOPIC_PAIRS = [(2, 1), (3, 2), (4, 2), (5, 2), (6, 5), (7, 6), (8, 6)]
DIRECT_PAIRS = [(2, 1), (4, 3), (3, 2), (1, 4)]
ROUTES = ([r for x, y in TOPIC_PAIRS for r in (("dynamic", y, x, "fed.topic"), ("dynamic", x, y, "fed.topic"))]
          + [("dynamic", y, x, "fed.direct") for x, y in DIRECT_PAIRS]
          + [("route", 3, 5, "amq.direct", "rkey"), ("route", 3, 5, "amq.direct", "rkey2")])

LINK_HEADER = "Host            Port    Transport Durable  State             Last Error"


def tool(*args, main=qpid_route.main):
    """qpid-route's (or another tool's) main() in this process; its output (exit status 0 asserted)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        status = main(list(args))
    assert status == 0, "%s: exit %d\n%s" % (" ".join(args), status, out.getvalue())
    return out.getvalue()


@pytest.fixture(scope="module")
def seed_network(tmp_path_factory):
    """The eight brokers (index 1..8 as the seed's ports 10001..10008; [0] is None), started in parallel,
    with the seed's routes; waits until every link is operational. Built once for the module's tests
    (they only read it)."""
    factory = BrokerFactory(tmp_path_factory.mktemp("seed-network"))
    try:
        yield _build(factory)
    finally:
        factory.close()
        fail_on_leaks(factory.leaks())


def _build(factory):
    brokers = [None] + started(factory, 8)
    for n in range(1, 9):
        tool("-b", brokers[n].url, "add", "exchange", "topic", "fed.topic", main=qpid_config.main)
        if n <= 4:
            tool("-b", brokers[n].url, "add", "exchange", "direct", "fed.direct", main=qpid_config.main)
    for kind, dest, src, exchange, *key in ROUTES:
        tool("-q", kind, "add", brokers[dest].url, brokers[src].url, exchange, *key)

    def all_operational():
        return all(line.split()[4] == "Operational" for b in brokers[1:]
                   for line in tool("link", "list", b.url).splitlines()[3:])
    wait_until(all_operational, timeout=30, message="every link of the seed's network operational")
    return brokers


def _links_in_order():
    """{dest: [src, ...]}: each broker's links in the order the routes made them."""
    links = {}
    for _kind, dest, src, *_ in ROUTES:
        if src not in links.setdefault(dest, []):
            links[dest].append(src)
    return links


def test_route_map_prints_the_seeds_map_over_the_seeds_network(seed_network):
    brokers = seed_network
    expected = SEED_MAP.split("\n", 1)[1]          # without the "$ qpid-route ..." line
    for n in range(8, 0, -1):                      # 10008 before 10001: no prefix clashes
        expected = expected.replace("localhost:1000%d" % n, brokers[n].url)
    got = tool("route", "map", brokers[1].url)
    assert got.splitlines() == expected.splitlines()
    assert got == expected


def test_link_list_and_route_list_over_the_seeds_network(seed_network):
    brokers = seed_network
    links = _links_in_order()
    for n in range(1, 9):
        rows = ["%-16s%-8d%-13s%c     %-18s%s" % ("127.0.0.1", brokers[src].port, "tcp", "N", "Operational", "")
                for src in links.get(n, [])]
        assert tool("link", "list", brokers[n].url).splitlines() == ["", LINK_HEADER, "=" * 77] + rows
        routes = ["%s %s %s %s" % (brokers[n].url, brokers[src].url, exchange, key[0] if key else "<dynamic>")
                  for _kind, dest, src, exchange, *key in ROUTES if dest == n]
        assert tool("route", "list", brokers[n].url).splitlines() == routes


def _inbox(broker, exchange, queue, key):
    tool("-b", broker.url, "add", "queue", queue, main=qpid_config.main)
    tool("-b", broker.url, "bind", exchange, queue, key, main=qpid_config.main)


def _carry(brokers, exchange, consumers, subject, publishers, count=10):
    """A queue on each of the ``consumers`` ({broker number: binding key}); ``count`` messages with
    ``subject`` published on each of the ``publishers`` once every key reached it; each consumer gets each
    message exactly once. The queues are deleted after, and their bindings then leave every broker."""
    queue = "hops-%s" % exchange
    for n, key in consumers.items():
        _inbox(brokers[n], exchange, queue, key)
    for n in publishers:
        for c, key in consumers.items():
            wait_until(lambda: key in keys_bound(brokers[n], exchange), timeout=30,
                       message="%s (bound on broker %d) bound on broker %d" % (key, c, n))
    sent = []
    for n in publishers:
        client = Client(brokers[n])
        bodies = ["%s-from-%d-%d" % (exchange, n, i) for i in range(count)]
        client.send(exchange, bodies, subject=subject)
        client.close()
        sent += bodies
    inboxes = {brokers[n]: queue for n in consumers}
    assert delivered_once(brokers[1:], inboxes, len(sent)) == {b: (len(sent), len(sent)) for b in inboxes}
    for n in consumers:
        client = Client(brokers[n])
        assert sorted(client.receive(queue, len(sent))) == sorted(sent)
        client.close()
        tool("-b", brokers[n].url, "del", "queue", queue, main=qpid_config.main)
    wait_until(lambda: not any(set(consumers.values()) & set(keys_bound(b, exchange)) for b in brokers[1:]),
               timeout=30, message="every binding gone from every broker")


def test_a_binding_on_broker_1_reaches_broker_8_across_the_seeds_topic_tree(seed_network):
    """fed.topic's routes are a tree both ways (1-2, 2-3, 2-4, 2-5, 5-6, 6-7, 6-8): a binding made on
    broker 1 travels 2, 5 and 6 to 8, so what 8 publishes reaches 1, once; and the reverse."""
    _carry(seed_network, "fed.topic", {1: "hop.#"}, "hop.x", publishers=[8])
    _carry(seed_network, "fed.topic", {8: "back.#"}, "back.x", publishers=[1])


def test_several_consumers_each_get_each_message_once_over_the_seeds_tree(seed_network):
    _carry(seed_network, "fed.topic", {1: "multi.*", 3: "*.x", 7: "#"}, "multi.x", publishers=[8, 4, 2])


def test_a_binding_follows_the_seeds_one_way_direct_routes_three_hops(seed_network):
    """fed.direct's routes go one way round 1..4 (1 pulls from 2, 2 from 3, 3 from 4, 4 from 1): a binding
    on 1 goes to 2, 3 and 4 and stops there (it passed 1), so what 4 publishes reaches 1 once."""
    _carry(seed_network, "fed.direct", {1: "d1"}, "d1", publishers=[4, 3])
