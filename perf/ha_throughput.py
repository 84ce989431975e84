"""Replicated throughput, sender only: messages/s a producer gets accepted by a standalone broker and
by an HA primary with 1 and 2 ready backups, in the same run (brokers are real processes on loopback).

    python perf/ha_throughput.py --count 50000 --size 1024 [--transient]

Prints one line per setup and the ratios to standalone, and the CPU each process spent per message
(utime+stime, microseconds: the primary, each backup, the client), the figure to compare on a busy
machine. The client is cypid.client (window 1000), or with ``--neutral DIR`` the Proton-C neutral
client's amqp_send (``make neutral-client``: build/neutral-client; unsettled bounded only by the
broker's credit), the issue's measure. ``--only 1`` runs one setup (standalone is 0), ``--hold S``
waits before sending, to attach a profiler (``perf record -p PID``: the pids are printed first),
``--rounds N`` repeats the three setups (each round's ratios are of its own standalone rate)."""
import os
import argparse
import asyncio
import re
import resource
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, ".")


def _cpu(pid):
    """utime+stime of a process, in seconds."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _send(url, count, size, durable):
    from cypid.client import connect, encode_message

    async def run():
        conn = await connect(url, timeout=60)
        snd = await conn.sender("tput", node="queue", create=True, window=1000,
                                properties={"durable": durable, "qpid.max_size": 0, "qpid.max_count": 0})
        data = encode_message(b"x" * size, durable=durable)
        t, c = time.monotonic(), time.process_time()
        await snd.send(data, count=count)
        await snd.wait_settled(timeout=600)
        took, cpu = time.monotonic() - t, time.process_time() - c
        await conn.close()
        return took, cpu
    return asyncio.run(run())


def _send_neutral(client, url, count, size, durable):
    """amqp_send into queue tput (declared first with cypid.client, without limits)."""
    from cypid.client import connect

    async def declare():
        conn = await connect(url, timeout=60)
        await conn.sender("tput", node="queue", create=True,
                          properties={"durable": durable, "qpid.max_size": 0, "qpid.max_count": 0})
        await conn.close()
    asyncio.run(declare())
    host, port = url.rsplit(":", 1)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.monotonic()
    out = subprocess.run([os.path.join(client, "amqp_send"), "-h", host.split("//")[-1], "-p", port, "-a", "tput",
                          "-c", str(count), "-s", str(size)] + (["-d"] if durable else []),
                         capture_output=True, text=True, timeout=600)
    took = time.monotonic() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if out.returncode != 0 or "acked=%d " % count not in out.stdout:
        raise RuntimeError("amqp_send: %s %s" % (out.stdout, out.stderr))
    rate = re.search(r"rate=([\d.]+)", out.stdout)
    if rate:
        took = count / float(rate.group(1))       # its own first-to-last timing (no process start)
    return took, (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--count", type=int, default=50000)
    p.add_argument("--size", type=int, default=1024)
    p.add_argument("--transient", action="store_true")
    p.add_argument("--only", type=int, choices=(0, 1, 2), help="one setup: 0 standalone, 1 or 2 backups")
    p.add_argument("--hold", type=float, default=0, help="wait this long before sending (to attach a profiler)")
    p.add_argument("--neutral", metavar="DIR", help="send with DIR/amqp_send (the Proton-C neutral client)")
    p.add_argument("--rounds", type=int, default=1)
    args = p.parse_args(argv)
    durable = not args.transient
    setups = (0, 1, 2) if args.only is None else (args.only,)
    for _ in range(args.rounds):
        run_setups(args, setups, durable)


def run_setups(args, setups, durable):
    from tests.support.broker import BrokerFactory
    from tests.support.ha import HaCluster

    rates = {}
    for backups in setups:
        factory = BrokerFactory(tempfile.mkdtemp(prefix="ha-tput-"))
        try:
            if backups == 0:
                procs = [factory()]
            else:
                procs = HaCluster(factory, backups + 1).brokers
            url = procs[0].url
            pids = [b.pid for b in procs]
            if args.hold:
                print("pids (primary first): %s" % " ".join(map(str, pids)), flush=True)
                time.sleep(args.hold)
            before = [_cpu(pid) for pid in pids]
            if args.neutral:
                took, client_cpu = _send_neutral(args.neutral, url, args.count, args.size, durable)
            else:
                took, client_cpu = _send(url, args.count, args.size, durable)
            used = [_cpu(pid) - b for pid, b in zip(pids, before)]
        finally:
            factory.close()
        name = "standalone" if backups == 0 else "%d backup%s" % (backups, "s" if backups > 1 else "")
        rates[name] = args.count / took
        per = lambda s: 1e6 * s / args.count       # noqa: E731
        print("%-12s %s %d x %d B: %.0f msg/s; CPU us/msg: %s, client %.1f, load %.1f" % (
            name, "durable" if durable else "transient", args.count, args.size, rates[name],
            ", ".join(("primary %.1f" if i == 0 and backups else "broker %.1f" if i == 0 else "backup %.1f")
                      % per(u) for i, u in enumerate(used)), per(client_cpu), os.getloadavg()[0]), flush=True)
    if len(rates) == 3:
        base = rates["standalone"]
        print("ratios: 1 backup %.2f, 2 backups %.2f" % (rates["1 backup"] / base, rates["2 backups"] / base))


if __name__ == "__main__":
    main()
