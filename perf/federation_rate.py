"""Messages/s across one federation route beside the same producer into the destination directly.

    python perf/federation_rate.py --count 100000 --size 1024 [--durable]

Two brokers (real processes on loopback): A holds exchange fed.direct with a queue bound to key k; B
holds fed.direct too, and A pulls from it over ``qpid-route route add A B fed.direct k``. The same
cypid.client producer sends COUNT messages with subject k, once into A directly and once into B; a
consumer on A's queue counts them. Prints the two rates (first send to last receive) and the ratio."""
import argparse
import asyncio
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, ".")


def _tool(*args):
    subprocess.run(list(args), check=True, capture_output=True, text=True, timeout=120)


def _run(send_url, recv_url, count, size, durable):
    from cypid.client import connect, encode_message

    async def run():
        rconn = await connect(recv_url, timeout=60)
        rcv = await rconn.receiver("inbox", credit=2000, keep=False)
        sconn = await connect(send_url, timeout=60)
        snd = await sconn.sender("fed.direct", window=1000)
        data = encode_message(b"x" * size, durable=durable, subject="k")
        start = time.monotonic()
        await snd.send(data, count=count)
        await rcv.wait_for(count, timeout=600)
        took = time.monotonic() - start
        await sconn.close()
        await rconn.close()
        return took
    return asyncio.run(run())


def prepare(a_url, b_url, durable=False):
    """A holds fed.direct with queue inbox bound to k and pulls fed.direct/k from B over a route; returns
    once a first batch has crossed."""
    bindir = sys.prefix + "/bin/"
    flags = ["--durable"] if durable else []
    for url in (a_url, b_url):
        _tool(bindir + "qpid-config", "-b", url, "add", "exchange", "direct", "fed.direct", *flags)
    _tool(bindir + "qpid-config", "-b", a_url, "add", "queue", "inbox", "--max-queue-size", "0",
          "--max-queue-count", "0", *flags)
    _tool(bindir + "qpid-config", "-b", a_url, "bind", "fed.direct", "inbox", "k")
    _tool(bindir + "qpid-route", "route", "add", a_url, b_url, "fed.direct", "k")
    _run(b_url, a_url, 100, 64, durable)           # the route is up and carrying


def rates(a_url, b_url, count, size=1024, durable=False):
    """(msgs/s sent into A directly, msgs/s sent into B and carried to A by the route), each from the
    first send to the last message received on A's queue."""
    direct = count / _run(a_url, a_url, count, size, durable)
    routed = count / _run(b_url, a_url, count, size, durable)
    return direct, routed


def main(argv=None):
    from tests.support.broker import BrokerFactory

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--count", type=int, default=100000)
    p.add_argument("--size", type=int, default=1024)
    p.add_argument("--durable", action="store_true")
    args = p.parse_args(argv)
    factory = BrokerFactory(tempfile.mkdtemp(prefix="fed-rate-"))
    try:
        a = factory("--link-maintenance-interval", "0.1")
        b = factory("--link-maintenance-interval", "0.1")
        prepare(a.url, b.url, args.durable)
        direct, routed = rates(a.url, b.url, args.count, args.size, args.durable)
    finally:
        factory.close()
    kind = "durable" if args.durable else "transient"
    print("direct into A      %s %d x %d B: %.0f msg/s" % (kind, args.count, args.size, direct))
    print("across route B->A  %s %d x %d B: %.0f msg/s" % (kind, args.count, args.size, routed))
    print("ratio routed/direct: %.2f" % (routed / direct))


if __name__ == "__main__":
    main()
