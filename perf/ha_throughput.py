"""Replicated throughput, sender only: messages/s a producer gets accepted by a standalone broker and
by an HA primary with 1 and 2 ready backups, in the same run (brokers are real processes on loopback).

    python perf/ha_throughput.py --count 50000 --size 1024 [--transient]

Prints one line per setup and the ratios to standalone. The client is cypid.client (window 1000)."""
import argparse
import asyncio
import sys
import tempfile
import time

sys.path.insert(0, ".")


def _send(url, count, size, durable):
    from cypid.client import connect, encode_message

    async def run():
        conn = await connect(url, timeout=60)
        snd = await conn.sender("tput", node="queue", create=True, window=1000,
                                properties={"durable": durable, "qpid.max_size": 0, "qpid.max_count": 0})
        data = encode_message(b"x" * size, durable=durable)
        t = time.monotonic()
        await snd.send(data, count=count)
        await snd.wait_settled(timeout=600)
        took = time.monotonic() - t
        await conn.close()
        return took
    return asyncio.run(run())


def main(argv=None):
    from tests.support.broker import BrokerFactory
    from tests.support.ha import HaCluster

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--count", type=int, default=50000)
    p.add_argument("--size", type=int, default=1024)
    p.add_argument("--transient", action="store_true")
    args = p.parse_args(argv)
    durable = not args.transient
    rates = {}
    for backups in (None, 1, 2):
        factory = BrokerFactory(tempfile.mkdtemp(prefix="ha-tput-"))
        try:
            if backups is None:
                url = factory().url
            else:
                url = HaCluster(factory, backups + 1)[0].url
            took = _send(url, args.count, args.size, durable)
        finally:
            factory.close()
        name = "standalone" if backups is None else "%d backup%s" % (backups, "s" if backups > 1 else "")
        rates[name] = args.count / took
        print("%-12s %s %d x %d B: %.0f msg/s" % (name, "durable" if durable else "transient", args.count,
                                                  args.size, rates[name]))
    base = rates["standalone"]
    print("ratios: 1 backup %.2f, 2 backups %.2f" % (rates["1 backup"] / base, rates["2 backups"] / base))


if __name__ == "__main__":
    main()
