"""Catch-up of a fresh HA backup: how long a backup joining a primary that holds N queued messages
takes to become ready, by each path, and whether its copy of the queue is identical (a digest of
every message's bytes, browsed on both brokers).

    python perf/ha_catchup.py --count 200000 --size 1024 [--path both|journal|message] [--transient]

One primary is filled once (distinct bodies); then, one after the other, a fresh backup joins it
copying the durable queue by shipping its journal files (``journal``) and one copying it message by
message (``message``, the backup started with CYPID_HA_SHIP_JOURNALS=0). For each: seconds from the
backup being told the brokers URL to ``ready``, messages/s, and whether the digests match. Brokers
are real processes on loopback (port 0)."""
import argparse
import asyncio
import sys
import tempfile
import time

from cypid.client import connect, encode_message

sys.path.insert(0, ".")


async def _fill(url, queue, count, size, durable):
    conn = await connect(url, timeout=60)
    snd = await conn.sender(queue, node="queue", create=True,
                            properties={"qpid.max_size": 0, "qpid.max_count": 0, "durable": durable})
    pad = b"x" * max(0, size - 12)
    for i in range(count):
        await snd.send(encode_message(b"%012d" % i + pad, durable=durable))
        if i % 5000 == 4999:
            await snd.wait_settled(timeout=600)
    await snd.wait_settled(timeout=600)
    await conn.close()


def main(argv=None):
    from tests.support.broker import BrokerFactory
    from tests.support.ha import HA_ARGS, HaCluster, HaConsole, digest, queue_depths, wait_status

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--count", type=int, default=200000)
    p.add_argument("--size", type=int, default=1024)
    p.add_argument("--transient", action="store_true")
    p.add_argument("--path", choices=("both", "journal", "message"), default="both")
    p.add_argument("--keep", help="directory for the brokers (default: a temporary one)")
    args = p.parse_args(argv)
    root = args.keep or tempfile.mkdtemp(prefix="ha-catchup-")
    factory = BrokerFactory(root)
    try:
        cluster = HaCluster(factory, 1)
        t = time.monotonic()
        asyncio.run(_fill(cluster[0].url, "deep", args.count, args.size, not args.transient))
        fill_s = time.monotonic() - t
        print("primary filled: %d x %d B %s in %.1f s" % (args.count, args.size,
              "transient" if args.transient else "durable", fill_s), flush=True)
        want = digest(cluster[0], "deep", args.count, args.size, timeout=600)
        paths = ("journal", "message") if args.path == "both" else (args.path,)
        for path in paths:
            env = {"CYPID_HA_SHIP_JOURNALS": "0"} if path == "message" else None
            backup = factory(*HA_ARGS, env=env)
            t = time.monotonic()
            with HaConsole(backup.url) as c:
                c.set_brokers_url(cluster.url)
            wait_status(backup, "ready", timeout=3600)
            took = time.monotonic() - t
            depth = queue_depths(backup)["deep"]
            same = depth == args.count and digest(backup, "deep", depth, args.size, timeout=600) == want
            shipped = any("journal copied" in line for line in backup.log_lines("journal copied"))
            print("catch-up %s, %s path%s: %d x %d B in %.2f s (%.0f msg/s); backup depth %d; contents %s"
                  % ("transient" if args.transient else "durable", path,
                     "" if shipped or path == "message" else " (fell back to messages)", args.count,
                     args.size, took, args.count / took, depth, "identical" if same else "DIFFER"),
                  flush=True)
            backup.stop()
    finally:
        factory.close()


if __name__ == "__main__":
    main()
