"""qpid-latency-test: end-to-end latency through a broker queue, at a fixed rate or for a count.

qpidd's options and output (../shared/reference/perftest.md section 3), over AMQP 1.0. Each message
carries its send time (ns since the epoch, taken when the sender encodes it) in the application
property ``ts``, as qpid-send does; the receiver subtracts it from its own clock, so both ends must share
one (same host). Besides qpidd's min/max/avg, the run ends with percentiles computed with numpy:
``Percentiles(ms): p50=..., p99=..., p99.9=...``.

Without ``--rate`` the test sends ``--count`` messages as fast as credit allows and reports once. With
``--rate R`` it sends R messages a second and reports every ``--report-frequency`` ms, until
``--time-limit``/``--time`` seconds have passed, or ``--count`` messages were sent if that was given,
or forever.
"""
import argparse
import asyncio
import sys
import time

import numpy

from cypid.client import connect, encode_message, run

from .options import (
    add_connection_options, broker_url, connect_options, g, non_negative_int, positive_int, yes_no,
)

TS_PLACEHOLDER = 0x7EDCBA9876543210     # 8 bytes (a long) in the template, replaced per message
TICK = 0.001                            # rate mode: seconds between sends (see send_rate)


def build_parser(prog="qpid-latency-test"):
    p = argparse.ArgumentParser(prog=prog, description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_connection_options(p)
    flag = dict(nargs="?", const=True, type=yes_no)
    a = p.add_argument_group("latency test options")
    a.add_argument("--size", type=positive_int, default=256, metavar="N", help="message size (default 256)")
    a.add_argument("--count", type=positive_int, default=None, metavar="N",
                   help="messages to send (default 1000; with --rate: stop after N if given)")
    a.add_argument("--rate", type=non_negative_int, default=0, metavar="N",
                   help="target rate (msgs/s); 0: count mode")
    a.add_argument("--sync", default=False, **flag, metavar="yes|no",
                   help="wait for each message's outcome before the next")
    a.add_argument("--report-frequency", type=positive_int, default=1000, metavar="MS",
                   help="ms between reports (rate mode)")
    a.add_argument("--time-limit", "--time", dest="time_limit", type=float, default=0, metavar="SECS",
                   help="seconds to run (rate mode; 0: no limit)")
    a.add_argument("--concurrentTests", "--concurrent-tests", dest="concurrent", type=positive_int, default=1,
                   metavar="N", help="N independent sender/receiver/queue sets")
    a.add_argument("--single-connection", default=False, **flag, metavar="yes|no",
                   help="all tests share one connection")
    a.add_argument("--prefetch", type=non_negative_int, default=100, metavar="N",
                   help="receiver credit window; 0: unlimited credit and no acks")
    a.add_argument("--ack", type=non_negative_int, default=0, metavar="N",
                   help="accept every N messages (0: prefetch/2)")
    a.add_argument("--durable", default=False, **flag, metavar="yes|no", help="durable queue and messages")
    a.add_argument("--csv", default=False, **flag, metavar="yes|no", help="print value,min,max,avg")
    a.add_argument("--cumulative", default=False, **flag, metavar="yes|no",
                   help="running min/max and smoothed avg (implies --csv)")
    a.add_argument("--queue-base-name", default="latency-test", metavar="NAME")
    a.add_argument("--timeout", type=float, default=0, metavar="SECS", help="give up after SECS (0: never)")
    return p


def parse_args(argv=None):
    args = build_parser().parse_args(argv)
    if args.cumulative:
        args.csv = True
    args.url = broker_url(args)
    args.connect = connect_options(args)
    return args


def make_template(size, durable):
    """The message every send re-uses, and the offset of its ``ts`` value's 8 bytes from the end."""
    body = bytes((ord("a") + i % 26) for i in range(size))
    data = encode_message(body, durable=durable, application_properties={"ts": TS_PLACEHOLDER})
    marker = b"\x81" + TS_PLACEHOLDER.to_bytes(8, "big")
    at = data.index(marker) + 1
    return data, at, len(data) - at


class Samples:
    """Latencies in ms: per report interval, and all of them for the percentiles."""

    def __init__(self):
        self.chunks = []
        self.interval = []
        self.count = 0

    def add(self, values):
        self.interval.extend(values)
        self.count += len(values)

    def take_interval(self):
        values, self.interval = self.interval, []
        if values:
            self.chunks.append(numpy.asarray(values, dtype=numpy.float64))
        return values

    def all(self):
        self.take_interval()
        return numpy.concatenate(self.chunks) if self.chunks else numpy.empty(0)


def summary(values):
    """(min, max, avg) of a sequence of latencies."""
    arr = numpy.asarray(values, dtype=numpy.float64)
    return float(arr.min()), float(arr.max()), float(arr.mean())


def percentiles(arr):
    return [float(v) for v in numpy.percentile(arr, [50, 99, 99.9])]


class LatencyTest:
    def __init__(self, args, index, conn, out):
        self.args = args
        self.queue = "%s-%d" % (args.queue_base_name, index + 1)
        self.conn = conn
        self.out = out
        self.samples = Samples()
        self.sent = 0
        self.template, self.ts_offset, self.ts_from_end = make_template(args.size, args.durable)
        self.started = self.finished = 0.0
        self.cumulative = None

    async def open(self):
        args = self.args
        rsession = await self.conn.session()
        props = {"auto-delete": True}
        if args.durable:
            props["durable"] = True
        # The receiver first: it makes the queue (auto-delete: it goes with the receiver), then empties it.
        prefetch = args.prefetch
        self.rcv = await rsession.receiver(
            self.queue, node="queue", create=True, properties=props, credit=prefetch or 100000,
            settled=prefetch == 0, ack_batch=args.ack or max(1, prefetch // 2), keep=True)
        found = await self._purge()
        if found:
            print("Warning: found %d msgs on %s. Purging..." % (found, self.queue), file=self.out, flush=True)
        ssession = await self.conn.session()
        self.snd = await ssession.sender(self.queue, node="queue", window=max(1000, args.rate // 10))

    async def _purge(self):
        rcv = self.rcv
        total = -1
        while total != rcv.received:
            total = rcv.received
            await rcv.drain()
        while rcv.get_raw_nowait() is not None:
            pass
        rcv.resume()
        return rcv.received

    async def receive(self, expected):
        """Take messages as they come until ``expected()`` says how many in all (None: not known yet)."""
        rcv = self.rcv
        offset = self.ts_from_end
        base = rcv.received
        taken = 0
        while True:
            limit = expected()
            if limit is not None and taken >= limit:
                return
            try:
                await rcv._wait_message(0.05)
            except TimeoutError:
                continue        # look at expected() again: the sender may be done
            now = time.time_ns()
            batch = []
            while True:
                item = rcv.get_raw_nowait()
                if item is None:
                    break
                data = item[0]
                end = len(data) - offset
                ts = int.from_bytes(data[end:end + 8], "big", signed=True)
                batch.append((now - ts) / 1e6)
            taken = rcv.received - base
            self.samples.add(batch)

    async def send_count(self, count):
        self.started = time.perf_counter()
        if self.args.sync:
            for _ in range(count):
                await self.snd.send(self.template, 1, seq_offset=self.ts_offset, seq=time.time_ns)
                await self.snd.wait_settled()
                self.sent += 1
        else:
            await self.snd.send(self.template, count, seq_offset=self.ts_offset, seq=time.time_ns)
            self.sent += count
        await self.snd.wait_settled()
        self.finished = time.perf_counter()

    async def send_rate(self, rate, count, time_limit):
        # Paced by a 1 ms tick, sending what is due since the start (rate/1000 messages a tick above
        # 1000 msgs/s). Not less: uvloop's timers have 1 ms resolution, so a shorter sleep returns at
        # once and the loop spins a core (which the broker and this receiver then wait for). Elapsed
        # time from perf_counter: uvloop's loop.time() is also in whole ms.
        self.started = start = time.perf_counter()
        tick = TICK
        snd = self.snd
        while True:
            elapsed = time.perf_counter() - start
            if time_limit and elapsed >= time_limit:
                break
            due = int(elapsed * rate) + 1 - self.sent
            if count is not None:
                due = min(due, count - self.sent)
            if due > 0:
                if self.args.sync:
                    for _ in range(due):
                        await snd.send(self.template, 1, seq_offset=self.ts_offset, seq=time.time_ns)
                        await snd.wait_settled()
                else:
                    snd.send_nowait(self.template, due, seq_offset=self.ts_offset, seq=time.time_ns)
                self.sent += due
            if count is not None and self.sent >= count:
                break
            await asyncio.sleep(tick)
        self.finished = time.perf_counter()
        await snd.wait_settled()

    def report_interval(self, rate):
        """One report line for the interval that just ended."""
        values = self.samples.take_interval()
        args = self.args
        if not values:
            return "Stalled: no samples for interval"
        lo, hi, avg = summary(values)
        if args.cumulative:
            if self.cumulative is None:
                self.cumulative = [lo, hi, avg]
            else:
                c = self.cumulative
                c[0], c[1], c[2] = min(c[0], lo), max(c[1], hi), (c[2] * 0.9 + avg * 0.1)
            lo, hi, avg = self.cumulative
        if args.csv:
            return "%s,%s,%s,%s" % (g(rate if args.rate else len(values)), g(lo), g(hi), g(avg))
        return "Latency(ms): min=%s, max=%s, avg=%s" % (g(lo), g(hi), g(avg))

    def final_lines(self):
        arr = self.samples.all()
        elapsed_ms = (self.finished - self.started) * 1000.0
        rate = self.sent / (elapsed_ms / 1000.0) if elapsed_ms > 0 else 0.0
        lines = []
        if self.args.rate and rate < self.args.rate * 0.99:
            lines.append("WARNING: Desired send rate: %d, actual send rate: %s" % (self.args.rate, g(rate)))
        if not len(arr):
            lines.append("Sent %d msgs through %s in %sms (%s msgs/s) no messages received"
                         % (self.sent, self.queue, g(elapsed_ms), g(rate)))
            return lines, None
        lo, hi, avg = float(arr.min()), float(arr.max()), float(arr.mean())
        p50, p99, p999 = percentiles(arr)
        lines.append("Sent %d msgs through %s in %sms (%s msgs/s) Latency(ms): min=%s, max=%s, avg=%s"
                     % (self.sent, self.queue, g(elapsed_ms), g(rate), g(lo), g(hi), g(avg)))
        lines.append("Percentiles(ms): p50=%s, p99=%s, p99.9=%s" % (g(p50), g(p99), g(p999)))
        return lines, dict(count=len(arr), min=lo, max=hi, avg=avg, p50=p50, p99=p99, p999=p999, rate=rate)

    async def close(self):
        await self.snd.close()
        await self.rcv.close()


async def run_tests(args, out=None):
    """Run the test(s); returns one result dict per test (count, min, max, avg, p50, p99, p999, rate)."""
    out = out or sys.stdout
    conns = []

    async def connection():
        if args.single_connection and conns:
            return conns[0]
        conn = await connect(args.url, **args.connect)
        conns.append(conn)
        return conn

    tests = []
    try:
        for i in range(args.concurrent):
            test = LatencyTest(args, i, await connection(), out)
            await test.open()
            tests.append(test)
        if args.rate:
            count = args.count
            senders = [asyncio.ensure_future(t.send_rate(args.rate, count, args.time_limit)) for t in tests]
            receivers = [asyncio.ensure_future(t.receive(lambda t=t, s=s: t.sent if s.done() else None))
                         for t, s in zip(tests, senders)]
            period = args.report_frequency / 1000.0
            loop = asyncio.get_running_loop()
            next_report = loop.time() + period
            while not all(r.done() for r in receivers):
                await asyncio.wait(receivers, timeout=max(0.0, next_report - loop.time()))
                if loop.time() >= next_report:
                    next_report += period
                    for t in tests:
                        print(t.report_interval(args.rate), file=out, flush=True)
            await asyncio.gather(*senders, *receivers)
        else:
            count = args.count or 1000
            senders = [asyncio.ensure_future(t.send_count(count)) for t in tests]
            receivers = [asyncio.ensure_future(t.receive(lambda: count)) for t in tests]
            await asyncio.gather(*senders, *receivers)
        results = []
        for t in tests:
            lines, result = t.final_lines()
            for line in lines:
                print(line, file=out, flush=True)
            results.append(result)
        for t in tests:
            await t.close()
        return results
    finally:
        for conn in conns:
            await conn.close()


def main(argv=None):
    args = parse_args(argv)

    async def go():
        if args.timeout:
            return await asyncio.wait_for(run_tests(args), args.timeout)
        return await run_tests(args)
    try:
        run(go())
    except KeyboardInterrupt:
        return 1
    except TimeoutError:
        print("Error: timed out after %gs" % args.timeout, flush=True)
        return 1
    except Exception as e:
        print("Error: %s" % (e or type(e).__name__), flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
