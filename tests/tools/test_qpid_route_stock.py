"""qpid-route against a stock qpidd 1.40 (issue 14: the tool drives qpidd's own federation too). Here,
not in tests/integration, so that it runs once (the asyncio pass reruns tests/integration)."""
from tests.integration.test_federation import Client, bind_queue, config, link_operational, route
from tests.support.broker import wait_until


def test_qpid_route_drives_a_stock_qpidd(broker_factory):
    """The same tool manages qpidd 1.40's own federation (its links are AMQP 0-10 between qpidds)."""
    from tests.support import stock_qpidd
    root = stock_qpidd.require()
    a, b = (broker_factory("--link-maintenance-interval", "0.1", command=stock_qpidd.command(root, "amqp"))
                for _ in range(2))
    for x in (a, b):
        config(x, "add", "exchange", "direct", "fed.direct")
    bind_queue(a, "fed.direct", "inbox", "k")
    route("route", "add", a.url, b.url, "fed.direct", "k")
    assert route("route", "list", a.url).split() == [a.url, b.url, "fed.direct", "k"]
    wait_until(lambda: link_operational(a, b), message="qpidd's link operational")
    cb, ca = Client(b), Client(a)
    try:
        wait_until(lambda: cb.send("fed.direct", ["probe"], subject="k") or ca.drain("inbox", 0.2),
                   message="a message across qpidd's route")
        route("route", "del", a.url, b.url, "fed.direct", "k")
        assert route("route", "list", a.url).strip() == ""
        route("link", "del", a.url, b.url)
        assert route("link", "list", a.url).strip() == "No Links Found"
    finally:
        cb.close()
        ca.close()
