"""Failover time: kill -9 of the primary, the promotion scripted at once (QMF promote, as
``qpid-ha promote --cluster-manager`` sends it), then the first durable message accepted by the new
primary. Three brokers on loopback; several rounds.

    python perf/ha_failover_time.py [--rounds 5]

Prints, per round, seconds from the kill to promote's answer and to the first accepted durable send."""
import argparse
import asyncio
import sys
import tempfile
import time

sys.path.insert(0, ".")


async def _first_accept(url):
    from cypid.client import connect, encode_message
    conn = await connect(url, timeout=60)
    snd = await conn.sender("fo", node="queue", create=True, properties={"durable": True})
    await snd.send(encode_message(b"x" * 1024, durable=True))
    await snd.wait_settled(timeout=60)
    await conn.close()


def main(argv=None):
    from tests.support.broker import BrokerFactory
    from tests.support.ha import HaCluster, HaConsole

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=5)
    args = p.parse_args(argv)
    for r in range(args.rounds):
        factory = BrokerFactory(tempfile.mkdtemp(prefix="ha-fo-"))
        try:
            cluster = HaCluster(factory, 3)
            asyncio.run(_first_accept(cluster[0].url))
            console = HaConsole(cluster[1].url)
            t = time.monotonic()
            cluster.kill(0)
            console.promote()
            promoted = time.monotonic() - t
            asyncio.run(_first_accept(cluster[1].url))
            accepted = time.monotonic() - t
            console.close()
            print("round %d: promote answered %.3f s, first durable send accepted %.3f s after kill -9"
                  % (r + 1, promoted, accepted))
        finally:
            factory.close()


if __name__ == "__main__":
    main()
