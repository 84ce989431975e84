"""qpid-perftest: qpidd's throughput test, over AMQP 1.0, for any AMQP 1.0 broker.

Same options, roles, coordination and output as qpidd's qpid-perftest (../shared/reference/perftest.md):
publishers and subscribers coordinate through the ``<base>_pub_start``, ``<base>_pub_done``,
``<base>_sub_ready``, ``<base>_sub_done`` (and ``<base>_sub_iteration``) queues; the controller prints
each client's rate and the totals. Without a role option the test runs in one command, but every
publisher and subscriber is its own process (forked), so that several cores work.

How the modes map onto AMQP 1.0 addresses: shared mode publishes to and consumes from the queues
``<base><i>`` (made by --setup with create-on-demand); fanout publishes to ``amq.fanout`` and each
subscriber attaches to ``amq.fanout`` (the broker makes its private subscription queue); topic
publishes to ``amq.topic`` with subject ``<base><i>`` and subscribers bind with a topic filter on
that key. Queues are purged by draining them. ``--sub-ack 0`` subscribes pre-settled (qpidd's
accept-mode none); ``--pub-confirm no`` publishes pre-settled. The sequence number each publisher
stamps into its messages sits in the last 8 bytes of the body (big-endian).
"""
import argparse
import asyncio
import multiprocessing
import os
import signal
import statistics
import sys
import time

from cypid.client import Message, connect, encode_message, run

from .options import (
    add_connection_options, broker_url, connect_options, g, non_negative_int, positive_int, yes_no,
)

HELP = """There are two ways to use perftest: single process or multi-process.

If none of the --setup, --publish, --subscribe or --control options are given perftest will run a
single-process test (each publisher and subscriber still runs in a process of its own).
For a multi-process test first run:
  qpid-perftest --setup <other options>
and wait for it to complete. The remaining process should run concurrently:
Run --npubs times: qpid-perftest --publish <other options>
Run --nsubs times: qpid-perftest --subscribe <other options>
Run once:          qpid-perftest --control <other options>
Note the <other options> must be identical for all processes."""

MODES = ("shared", "fanout", "topic")


class PerftestError(Exception):
    pass


def build_parser(prog="qpid-perftest"):
    p = argparse.ArgumentParser(prog=prog, description=HELP,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_connection_options(p)
    flag = dict(nargs="?", const=True, type=yes_no)
    a = p.add_argument_group("perftest options")
    a.add_argument("--setup", default=False, **flag, metavar="yes|no", help="Create shared queues.")
    a.add_argument("--control", default=False, **flag, metavar="yes|no", help="Run test, print report.")
    a.add_argument("--publish", default=False, **flag, metavar="yes|no", help="Publish messages.")
    a.add_argument("--subscribe", default=False, **flag, metavar="yes|no", help="Subscribe for messages.")
    a.add_argument("--mode", default="shared", choices=MODES,
                   help="shared: --qt queues, --npubs publishers and --nsubs subscribers per queue; "
                        "fanout: --npubs publishers, --nsubs subscribers, fanout exchange; "
                        "topic: --qt topics, --npubs publishers and --nsubs subscribers per topic.")
    a.add_argument("--npubs", type=positive_int, default=1, metavar="N", help="Create N publishers.")
    a.add_argument("--count", type=positive_int, default=500000, metavar="N",
                   help="Each publisher sends N messages.")
    a.add_argument("--size", type=non_negative_int, default=1024, metavar="BYTES",
                   help="Size of messages in bytes.")
    a.add_argument("--headers", type=non_negative_int, default=0, metavar="N",
                   help="Add N application headers hdrI=hdrI to each message.")
    a.add_argument("--pub-confirm", default=True, **flag, metavar="yes|no",
                   help="Publisher use confirm-mode.")
    a.add_argument("--durable", default=False, **flag, metavar="yes|no", help="Publish messages as durable.")
    a.add_argument("--unique-data", default=False, **flag, metavar="yes|no",
                   help="Make data for each message unique.")
    a.add_argument("--sync-publish", default=False, **flag, metavar="yes|no",
                   help="Wait for confirmation of each message before sending the next one.")
    a.add_argument("--nsubs", type=positive_int, default=1, metavar="N", help="Create N subscribers.")
    a.add_argument("--sub-ack", type=non_negative_int, default=0, metavar="N",
                   help="N>0: Subscriber acks batches of N. N==0: Subscriber uses unconfirmed mode")
    a.add_argument("--qt", type=positive_int, default=1, metavar="N", help="Create N queues or topics.")
    a.add_argument("--single-connection", default=False, **flag, metavar="yes|no",
                   help="Use one connection for multiple sessions (all clients in this process).")
    a.add_argument("--iterations", type=positive_int, default=1, metavar="N",
                   help="Desired number of iterations of the test.")
    a.add_argument("-s", "--summary", default=False, **flag, metavar="yes|no",
                   help="Summary output: pubs/sec subs/sec transfers/sec Mbytes/sec")
    a.add_argument("--queue-max-count", type=non_negative_int, default=0, metavar="N",
                   help="queue policy: count to trigger 'flow to disk'")
    a.add_argument("--queue-max-size", type=non_negative_int, default=0, metavar="N",
                   help="queue policy: accumulated size to trigger 'flow to disk'")
    a.add_argument("--base-name", default="qpid-perftest", metavar="NAME",
                   help="base name used for queues or topics")
    a.add_argument("--queue-durable", default=False, **flag, metavar="yes|no",
                   help="Make queue durable (implied if durable set)")
    a.add_argument("--interval_sub", "--interval-sub", dest="interval_sub", type=non_negative_int, default=0,
                   metavar="ms", help=">=0 delay between msg consume")
    a.add_argument("--interval_pub", "--interval-pub", dest="interval_pub", type=non_negative_int, default=0,
                   metavar="ms", help=">=0 delay between msg publish")
    a.add_argument("--tx", type=non_negative_int, default=0, metavar="N",
                   help="if non-zero, the transaction batch size for publishing and consuming")
    a.add_argument("--pub-tx", type=non_negative_int, default=0, metavar="N")
    a.add_argument("--sub-tx", type=non_negative_int, default=0, metavar="N")
    a.add_argument("--async-commit", default=False, **flag, metavar="yes|no")
    x = p.add_argument_group("cypid additions")
    x.add_argument("--sub-credit", type=positive_int, default=2000, metavar="N",
                   help="subscriber credit window (topped up at half; never more than its quota)")
    x.add_argument("--pub-window", type=positive_int, default=5000, metavar="N",
                   help="unsettled deliveries a confirming publisher keeps in flight")
    x.add_argument("--timeout", type=float, default=0, metavar="SECS",
                   help="give up (exit 1) if the test has not finished after SECS (0: never)")
    return p


def parse_args(argv=None, prog="qpid-perftest", out=sys.stdout, err=sys.stderr):
    args = build_parser(prog).parse_args(argv)
    finish(args, out, err)
    return args


def finish(args, out=sys.stdout, err=sys.stderr):
    """The computed values, as qpidd's Opts::parse makes them (with its warnings)."""
    if args.mode == "shared":
        if args.count % args.nsubs:
            args.count += args.nsubs - args.count % args.nsubs
            print("WARNING: Adjusted --count to %d the nearest multiple of --nsubs" % args.count, file=out)
        args.total_pubs = args.npubs * args.qt
        args.total_subs = args.nsubs * args.qt
        args.sub_quota = args.npubs * args.count // args.nsubs
    elif args.mode == "fanout":
        if args.qt != 1:
            print("WARNING: Fanout mode, ignoring --qt=%d" % args.qt, file=err)
        args.qt = 1
        args.total_pubs = args.npubs
        args.total_subs = args.nsubs
        args.sub_quota = args.total_pubs * args.count
    else:
        args.total_pubs = args.npubs * args.qt
        args.total_subs = args.nsubs * args.qt
        args.sub_quota = args.npubs * args.count
    args.transfers = args.total_pubs * args.count + args.total_subs * args.sub_quota
    if args.tx:
        if args.pub_tx:
            print("WARNING: Using overriden tx value for publishers: %d" % args.pub_tx, file=err)
        else:
            args.pub_tx = args.tx
        if args.sub_tx:
            print("WARNING: Using overriden tx value for subscribers: %d" % args.sub_tx, file=err)
        else:
            args.sub_tx = args.tx
    args.url = broker_url(args)
    args.connect = connect_options(args)
    return args


def fqn(args, name):
    return "%s_%s" % (args.base_name, name)


def key(args, i):
    return "%s%d" % (args.base_name, i)


def _check_tx(args):
    if args.pub_tx or args.sub_tx:
        raise PerftestError("transactions (--tx, --pub-tx, --sub-tx) are not supported yet")


async def _open(args, shared=None):
    return shared if shared is not None else await connect(args.url, **args.connect)


async def _close(conn, shared):
    if shared is None:
        await conn.close()


# -- setup ---------------------------------------------------------------------------------------
async def purge(session, address):
    """Take every message off ``address`` (pre-settled, in drain rounds); returns how many."""
    rcv = await session.receiver(address, credit=1000, settled=True, keep=False)
    total = -1
    while total != rcv.received:
        total = rcv.received
        await rcv.drain()
    await rcv.close()
    return total


async def queue_init(session, name, durable=False, properties=None):
    props = dict(properties or {})
    if durable:
        props["durable"] = True
    snd = await session.sender(name, node="queue", create=True, properties=props or None)
    await snd.close()
    await purge(session, name)


async def setup(args, shared=None):
    conn = await _open(args, shared)
    session = await conn.session()
    for name in ("pub_start", "pub_done", "sub_ready", "sub_done"):
        await queue_init(session, fqn(args, name))
    if args.iterations > 1:
        await queue_init(session, fqn(args, "sub_iteration"))
    if args.mode == "shared":
        settings = {}
        if args.queue_max_count:
            settings["qpid.max_count"] = args.queue_max_count
        if args.queue_max_size:
            settings["qpid.max_size"] = args.queue_max_size
        for i in range(args.qt):
            await queue_init(session, key(args, i), args.durable or args.queue_durable, settings)
    await session.close()
    await _close(conn, shared)


# -- publisher -----------------------------------------------------------------------------------
def make_message(args, i, session_id):
    """The publisher's message, encoded once, and where its sequence number goes."""
    size = max(args.size, 8)
    if args.unique_data:
        body = b"data:" + b"X" * 8 + session_id.encode()
        if size > len(body) + 8:
            body += b"X" * (size - len(body))
        else:
            body += b"X" * 8
            if size < len(body):
                print("WARNING: Increased --size to %d to honour --unique-data" % len(body))
    else:
        body = b"X" * size
    headers = {"hdr%d" % h: "hdr%d" % h for h in range(args.headers)} or None
    subject = key(args, i) if args.mode == "topic" else None
    data = encode_message(body, durable=args.durable, subject=subject, application_properties=headers)
    return data, len(data) - 8


async def publisher(args, i, shared=None):
    _check_tx(args)
    conn = await _open(args, shared)
    session = await conn.session()
    if args.mode == "shared":
        address, node = key(args, i), "queue"
    else:
        address, node = ("amq.fanout" if args.mode == "fanout" else "amq.topic"), "topic"
    snd = await session.sender(address, node=node, settled=not args.pub_confirm, window=args.pub_window)
    # One start per iteration: credit for the next only once this one's work is done, so that no
    # publisher takes a start meant for another that attaches later.
    starts = await session.receiver(fqn(args, "pub_start"), credit=1, limit=0)
    done = await session.sender(fqn(args, "pub_done"))
    data, seq_offset = make_message(args, i, "%s-%d" % (conn.container_id, session.channel))
    for _ in range(args.iterations):
        starts.allow(1)
        msg = await starts.get()
        if msg.body != "start":
            raise PerftestError("Expecting start but received %s" % (msg.body,))
        start = time.perf_counter()
        if args.sync_publish or args.interval_pub:
            for n in range(args.count):
                await snd.send(data, 1, seq_offset=seq_offset, seq=n)
                if args.sync_publish:
                    await snd.wait_settled()
                if args.interval_pub:
                    await asyncio.sleep(args.interval_pub / 1000)
        else:
            await snd.send(data, args.count, seq_offset=seq_offset, seq=0)
        if args.pub_confirm:
            await snd.wait_settled()
        elapsed = time.perf_counter() - start
        await done.send(Message(repr(args.count / elapsed)))
        await done.wait_settled()
    await session.close()
    await _close(conn, shared)


# -- subscriber ----------------------------------------------------------------------------------
async def subscriber(args, i, shared=None):
    _check_tx(args)
    conn = await _open(args, shared)
    session = await conn.session()
    quota = args.sub_quota
    options = dict(credit=min(args.sub_credit, quota), limit=quota, settled=args.sub_ack == 0,
                   keep=bool(args.interval_sub), ack_batch=args.sub_ack or None)
    if args.mode == "shared":
        rcv = await session.receiver(key(args, i), node="queue", **options)
    else:
        exchange = "amq.fanout" if args.mode == "fanout" else "amq.topic"
        subject = key(args, i) if args.mode == "topic" else None
        rcv = await session.receiver(exchange, node="topic", subject=subject,
                                     durable=1 if args.durable else 0, **options)
    if args.npubs == 1:
        rcv.core.check_seq = True
        rcv.core.strict_seq = args.nsubs == 1 or args.mode == "fanout"
    ready = await session.sender(fqn(args, "sub_ready"))
    await ready.send(Message("ready"))
    await ready.wait_settled()
    iteration = None
    if args.iterations > 1:
        iteration = await session.receiver(fqn(args, "sub_iteration"), credit=1, limit=0)
    done = await session.sender(fqn(args, "sub_done"))
    for j in range(args.iterations):
        if j > 0:
            iteration.allow(1)
            await iteration.get()
            rcv.core.next_seq = 0
            rcv.allow(quota)
        start = time.perf_counter()
        target = quota * (j + 1)
        if args.interval_sub:
            for _ in range(quota):
                await rcv.get_raw()
                await asyncio.sleep(args.interval_sub / 1000)
        else:
            await rcv.wait_for(target)
        session.flush_accepts()      # accept everything not yet accepted
        elapsed = time.perf_counter() - start
        if rcv.core.seq_error is not None:
            await done.send(Message(rcv.core.seq_error))
            await done.wait_settled()
            raise PerftestError(rcv.core.seq_error)
        await done.send(Message(repr(quota / elapsed)))
        await done.wait_settled()
    await session.close()
    await _close(conn, shared)


# -- controller ----------------------------------------------------------------------------------
class Stats:
    """Rates reported by clients: mean and sample standard deviation, printed as qpidd prints them."""

    def __init__(self):
        self.values = []

    def add(self, text):
        try:
            self.values.append(float(text))
        except (TypeError, ValueError):
            raise PerftestError("Bad report: %s" % (text,)) from None

    def mean(self):
        return sum(self.values) / len(self.values)

    def stdev(self):
        return statistics.stdev(self.values) if len(self.values) > 1 else 0.0

    def print(self, out):
        for v in self.values:
            print(g(v), file=out)
        line = "Average: " + g(self.mean())
        if len(self.values) > 1:
            line += " (std.dev. " + g(self.stdev()) + ")"
        print(line, file=out)


async def controller(args, shared=None, out=None):
    """Wait for the subscribers, start the publishers, collect and print the reports. Returns a list of
    (pubs/sec, subs/sec, transfers/sec, Mbytes/sec) per iteration."""
    out = out or sys.stdout
    conn = await _open(args, shared)
    session = await conn.session()

    async def process(rcv, n, queue, fn):
        if not args.summary:
            print("Processing %d messages from %s " % (n, queue), end="", file=out, flush=True)
        rcv.allow(n)
        for _ in range(n):
            if not args.summary:
                print(".", end="", file=out, flush=True)
            fn((await rcv.get()).body)
        if not args.summary:
            print(" done.", file=out, flush=True)

    def expect_ready(body):
        if body != "ready":
            raise PerftestError("Expecting ready but received %s" % (body,))

    ready = await session.receiver(fqn(args, "sub_ready"), credit=max(args.total_subs, 1), limit=0)
    await process(ready, args.total_subs, fqn(args, "sub_ready"), expect_ready)
    pub_done = await session.receiver(fqn(args, "pub_done"), credit=max(args.total_pubs, 1), limit=0)
    sub_done = await session.receiver(fqn(args, "sub_done"), credit=max(args.total_subs, 1), limit=0)
    starts = await session.sender(fqn(args, "pub_start"))
    nexts = await session.sender(fqn(args, "sub_iteration")) if args.iterations > 1 else None
    start_msg = encode_message("start")
    next_msg = encode_message("next")
    results = []
    for j in range(args.iterations):
        start = time.perf_counter()
        if not args.summary:
            print("Sending start %d times to %s" % (args.total_pubs, fqn(args, "pub_start")), file=out,
                  flush=True)
        await starts.send(start_msg, args.total_pubs)
        if j:
            if not args.summary:
                print("Sending next %d times to %s" % (args.total_subs, fqn(args, "sub_iteration")), file=out,
                      flush=True)
            await nexts.send(next_msg, args.total_subs)
        pub_rates, sub_rates = Stats(), Stats()
        await process(pub_done, args.total_pubs, fqn(args, "pub_done"), pub_rates.add)
        await process(sub_done, args.total_subs, fqn(args, "sub_done"), sub_rates.add)
        elapsed = time.perf_counter() - start
        if elapsed <= 0:
            raise PerftestError("ERROR: Test completed in zero seconds. "
                                "Try again with a larger message count.")
        txrate = args.transfers / elapsed
        mbytes = txrate * args.size / (1024 * 1024)
        if not args.summary:
            print("\nTotal %d transfers of %d bytes in %s seconds." % (args.transfers, args.size, g(elapsed)),
                  file=out)
            print("\nPublish transfers/sec:    ", file=out)
            pub_rates.print(out)
            print("\nSubscribe transfers/sec:  ", file=out)
            sub_rates.print(out)
            print("\nTotal transfers/sec:      %s" % g(txrate), file=out)
            print("Total Mbytes/sec: %s" % g(mbytes), file=out, flush=True)
        else:
            row = (g(pub_rates.mean()), g(sub_rates.mean()), g(txrate), g(mbytes))
            print("\t".join(row), file=out, flush=True)
        results.append((pub_rates.mean(), sub_rates.mean(), txrate, mbytes))
    if args.iterations > 1:
        means = [sum(r[k] for r in results) / len(results) for k in range(4)]
        print("Averages: \n%s" % "\t".join(g(m) for m in means), file=out, flush=True)
    await starts.wait_settled()
    await session.close()
    await _close(conn, shared)
    return results


# -- processes -----------------------------------------------------------------------------------
def _child(kind, fn, args, i):
    """A forked publisher or subscriber: its own loop and connection."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    try:
        run(fn(args, i))
    except BaseException as e:   # one line per failed client, as qpidd's threads print
        print("%sThread exception: %s" % (kind, e or type(e).__name__), flush=True)
        sys.stdout.flush()
        os._exit(1)
    sys.stdout.flush()
    os._exit(0)


class Children:
    """The forked publisher and subscriber processes of a single-command run."""

    def __init__(self):
        self.procs = []
        self.ctx = multiprocessing.get_context("fork")

    def start(self, kind, fn, args, i):
        sys.stdout.flush()
        sys.stderr.flush()
        p = self.ctx.Process(target=_child, args=(kind, fn, args, i), name="%s-%d" % (kind.lower(), i),
                             daemon=True)
        p.start()
        self.procs.append(("%s %d (%s)" % (kind.lower(), len(self.procs), key(args, i)), p))

    def watch(self, loop):
        """A future that gets (label, exit status) when a child fails."""
        failed = loop.create_future()

        def ended(label, p):
            loop.remove_reader(p.sentinel)
            p.join(0)
            if p.exitcode and not failed.done():
                failed.set_result((label, p.exitcode))
        for label, p in self.procs:
            loop.add_reader(p.sentinel, ended, label, p)
        return failed

    def stop(self, timeout=10.0):
        deadline = time.monotonic() + timeout
        for _, p in self.procs:
            p.join(max(0.0, deadline - time.monotonic()))
        for _, p in self.procs:
            if p.is_alive():
                p.terminate()
                p.join(2)
        return [p.exitcode for _, p in self.procs]

    def kill(self):
        for _, p in self.procs:
            if p.is_alive():
                p.kill()
        for _, p in self.procs:
            p.join(2)


async def _guarded(args, coro, children=None):
    """Run ``coro`` (the controller) under --timeout, failing fast if a child process fails."""
    loop = asyncio.get_running_loop()
    task = asyncio.ensure_future(coro)
    waits = {task}
    failed = children.watch(loop) if children is not None else None
    if failed is not None:
        waits.add(failed)
    done, _ = await asyncio.wait(waits, timeout=args.timeout or None, return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        return task.result()
    task.cancel()
    try:
        await task
    except BaseException:
        pass
    if failed is not None and failed in done:
        label, status = failed.result()
        raise PerftestError("%s exited with status %d" % (label, status))
    raise PerftestError("timed out after %gs" % args.timeout)


async def _single_connection(args, out):
    conn = await connect(args.url, **args.connect)
    try:
        await setup(args, conn)
        clients = []
        for i in range(args.qt):
            clients += [subscriber(args, i, conn) for _ in range(args.nsubs)]
            clients += [publisher(args, i, conn) for _ in range(args.npubs)]
        tasks = [asyncio.ensure_future(c) for c in clients]
        try:
            return await _guarded(args, controller(args, conn, out))
        finally:
            for t in tasks:
                if not t.done():
                    t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        await conn.close()


async def _roles(args, out):
    """Explicit roles (qpidd's multi-process use): this process runs the ones given."""
    if args.setup:
        await setup(args)
    clients = []
    for i in range(args.qt):
        if args.publish:
            clients.append(publisher(args, i))
        if args.subscribe:
            clients.append(subscriber(args, i))
    tasks = [asyncio.ensure_future(c) for c in clients]
    results = None
    try:
        if args.control:
            results = await _guarded(args, controller(args, out=out))
        if tasks:
            await asyncio.gather(*tasks)
    finally:
        for t in tasks:
            if not t.done():
                t.cancel()
    return results


def run_test(args, out=None):
    """Run the test the options describe; returns the controller's results (None if no --control)."""
    out = out or sys.stdout
    _check_tx(args)
    if args.setup or args.control or args.publish or args.subscribe:
        return run(_roles(args, out))
    if args.single_connection:
        return run(_single_connection(args, out))
    run(setup(args))
    children = Children()
    try:
        for i in range(args.qt):
            for _ in range(args.nsubs):
                children.start("Subscribe", subscriber, args, i)
            for _ in range(args.npubs):
                children.start("Publish", publisher, args, i)
        results = run(_guarded(args, controller(args, out=out), children))
    except BaseException:
        children.kill()
        raise
    statuses = children.stop()
    if any(statuses):
        raise PerftestError("a client process failed (exit statuses %s)" % statuses)
    return results


def main(argv=None):
    args = parse_args(argv)
    try:
        run_test(args)
    except KeyboardInterrupt:
        return 1
    except (PerftestError, OSError, Exception) as e:
        print("Controller exception: %s" % (e or type(e).__name__), flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
