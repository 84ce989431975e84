"""Catch-up of a fresh HA backup: how long a backup joining a primary that holds N queued messages
takes to become ready, and whether its copy of the queue is identical (a digest of every message's
bytes, browsed on both brokers).

    python -m cypid.perf.ha_catchup --count 200000 --size 1024 [--transient] [--keep DIR]

Prints one line: count, size, seconds from the backup being told the brokers URL to ``ready``,
messages/s, and whether the digests match. Brokers are real processes on loopback (port 0)."""
import argparse
import asyncio
import hashlib
import sys
import tempfile
import time

from cypid.client import connect

sys.path.insert(0, ".")


async def _digest(url, queue, count):
    conn = await connect(url, timeout=60, properties={"qpid.ha-admin": 1})
    rcv = await conn.receiver(queue, credit=5000, browse=True, settled=True)
    h = hashlib.sha256()
    for _ in range(count):
        data = await rcv.get_raw(timeout=120)
        h.update(data[-1024:])
    await conn.close()
    return h.hexdigest()


def main(argv=None):
    from tests.support.broker import BrokerFactory
    from tests.support.ha import HA_ARGS, HaCluster, HaConsole, fill, queue_depths, wait_status

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--count", type=int, default=200000)
    p.add_argument("--size", type=int, default=1024)
    p.add_argument("--transient", action="store_true")
    p.add_argument("--keep", help="directory for the brokers (default: a temporary one)")
    args = p.parse_args(argv)
    root = args.keep or tempfile.mkdtemp(prefix="ha-catchup-")
    factory = BrokerFactory(root)
    try:
        cluster = HaCluster(factory, 1)
        t = time.monotonic()
        fill(cluster[0], "deep", args.count, size=args.size, durable=not args.transient)
        fill_s = time.monotonic() - t
        backup = factory(*HA_ARGS)
        t = time.monotonic()
        with HaConsole(backup.url) as c:
            c.set_brokers_url(cluster.url)
        wait_status(backup, "ready", timeout=3600)
        took = time.monotonic() - t
        depth = queue_depths(backup)["deep"]
        same = asyncio.run(_digest(cluster[0].url, "deep", args.count)) == \
            asyncio.run(_digest(backup.url, "deep", depth)) if depth == args.count else False
        print("catch-up %s: %d x %d B in %.2f s (%.0f msg/s); fill %.1f s; backup depth %d; contents %s"
              % ("transient" if args.transient else "durable", args.count, args.size, took,
                 args.count / took, fill_s, depth, "identical" if same else "DIFFER"))
    finally:
        factory.close()


if __name__ == "__main__":
    main()
