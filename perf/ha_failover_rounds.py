"""Must show 1 of the HA issue as a script: three cypid brokers on loopback driven as a cluster manager
would, the primary killed (-9) under load, a ready backup promoted with ``qpid-ha promote
--cluster-manager``, ROUNDS times; the killed broker is started again and joins as a backup before the
next round. Odd rounds: python-qpid-proton with its own reconnect URL list sending transient messages;
even rounds: cypid.client's FailoverConnection sending durable ones (the queue is durable). After each
round the new primary's queue is drained and compared with what the client saw accepted.

    python perf/ha_failover_rounds.py --rounds 10

Prints one line per round (client, messages accepted, lost, duplicates, promote-to-active seconds) and
a total; exits 1 if any accepted message was lost. The test suite runs the same round once per client
(tests/tools/test_failover_ha.py)."""
import argparse
import sys
import tempfile
import time

sys.path.insert(0, ".")


def main(argv=None):
    from cypid.client import run as run_client
    from cypid.client.failover import FailoverConnection
    from cypid.client.message import Message
    from cypid.tools import qmf
    from tests.support import stock_qpidd
    from tests.support.broker import BrokerFactory
    from tests.support.reactor import run
    from tests.tools.test_failover_ha import N, ListSender, bodies_on, check_none_lost, fail_over
    from tests.tools.test_qpid_ha import promote, wait_status

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--keep", help="directory for the brokers (default: a temporary one)")
    args = p.parse_args(argv)
    factory = BrokerFactory(args.keep or tempfile.mkdtemp(prefix="ha-rounds-"))
    total_lost = total_dups = total_accepted = 0
    try:
        ports = stock_qpidd.free_ports(3)
        brokers = [factory(*stock_qpidd.ha_options(ports, "all"), port=port) for port in ports]
        promote(brokers[0])
        for b in brokers[1:]:
            wait_status(b, "ready")
        with qmf.connect(brokers[0].url, timeout=30) as agent:
            agent.create("queue", "q", {"durable": True})
        for b in brokers[1:]:
            wait_status(b, "ready")
        for r in range(1, args.rounds + 1):
            t = time.monotonic()
            if r % 2:
                handler = run(ListSender(brokers))
                handler.manager.join()
                accepted, client = handler.accepted, "proton reconnect list, transient"
            else:
                accepted, client = run_client(_cypid_round(brokers, FailoverConnection, Message, fail_over, N)), \
                    "cypid FailoverConnection, durable"
            new_primary = brokers[1]
            found = bodies_on(new_primary)
            try:
                dups = check_none_lost(accepted, found)
                lost = 0
            except AssertionError as e:
                lost, dups = len(set(accepted) - set(found)), 0
                print("round %d: %s" % (r, e), flush=True)
            total_lost += lost
            total_dups += dups
            total_accepted += len(accepted)
            print("round %2d: %-36s accepted %4d, lost %d, duplicates %d (%.1f s)"
                  % (r, client, len(accepted), lost, dups, time.monotonic() - t), flush=True)
            killed = brokers[0]
            killed.start()                          # back as a backup of the new primary
            brokers = brokers[1:] + [killed]
            for b in brokers[1:]:
                wait_status(b, "ready")
        print("%d rounds: %d accepted, %d lost, %d duplicates" % (args.rounds, total_accepted, total_lost,
                                                                   total_dups))
    finally:
        factory.close()
    return 1 if total_lost else 0


async def _cypid_round(brokers, FailoverConnection, Message, fail_over, n):
    """Durable sends through the list (backups first); the primary killed with messages in flight."""
    import asyncio
    urls = "amqp:" + ",".join("tcp:" + b.url for b in reversed(brokers))
    conn = await FailoverConnection.open(urls, heartbeat=1, reconnect_timeout=60)
    sender = await conn.sender("q")
    bodies = []
    for i in range(3 * n):
        if i == 2 * n:
            await asyncio.to_thread(fail_over, brokers)
        body = "m%d" % i
        await sender.send(Message(body, durable=True))
        bodies.append(body)
        if i == n - 1:
            await sender.wait_settled(60)
    await sender.wait_settled(60)
    await conn.close()
    return bodies


if __name__ == "__main__":
    sys.exit(main())
