"""The primary's per-message replication work in one process, without sockets or journals: CPU per
message of cypid.pyx.ha_stream's path (a copy queued on a replicated queue with 2 ready backups: its
record, the producer's hold, both backups' acknowledgements, the settlement), best of ``--reps``.

    python perf/ha_stream_bench.py --count 20000 --reps 15

Minimum over repetitions: steady on a busy machine, unlike the brokers' wall-clock rates; run it with
two builds' interpreters in turn to compare them."""
import argparse
import sys
import time

sys.path.insert(0, ".")


class _Queue:
    def __init__(self):
        self.name = "q"
        self.enqueue_hook = self.dequeue_hook = None
        self.observe_dequeues = False

    def all_messages(self):
        return []


class _Loop:
    def __init__(self):
        self.soon = []

    def call_soon(self, fn, *args):
        self.soon.append((fn, args))


class _Delivery:
    settled = 0

    def hold(self):
        return self

    def release(self, outcome=None):
        _Delivery.settled += 1


def run(count, turn):
    from cypid.client import encode_message
    from cypid.pyx.ha_stream import PrimaryCore, ReplicatedQueue
    from cypid.pyx.message import Message
    from cypid.pyx.store_core import Pending

    class Core(PrimaryCore):
        def __init__(self):
            self.loop = _Loop()
            self.senders = self.ready = 2

        def flush(self):
            batch = self.take_enqueues()
            if batch is not None:
                _, _, holds = batch
                self.arm(holds, 2)
                self.acknowledged(holds)
                self.acknowledged(holds)
            self.take_dequeues()

    core = Core()
    rq = ReplicatedQueue(core, _Queue())
    data = encode_message(b"x" * 1024, durable=True)
    msgs = [Message(data) for _ in range(count)]
    delivery = _Delivery()
    _Delivery.settled = 0
    t = time.process_time()
    for k, msg in enumerate(msgs):
        rq.enqueued(msg)
        p = Pending()
        p.count = 1             # the journal's own hold
        out = core.hold(p)
        out.attach(delivery)
        out.release()           # the journal synced
        if k % turn == turn - 1:
            core.end_turn()
    core.end_turn()
    took = time.process_time() - t
    assert _Delivery.settled == count, _Delivery.settled
    return took


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--count", type=int, default=20000)
    p.add_argument("--reps", type=int, default=15)
    p.add_argument("--turn", type=int, default=160, help="copies per loop turn (one blob)")
    args = p.parse_args(argv)
    best = min(run(args.count, args.turn) for _ in range(args.reps))
    print("ha_stream per copy, 2 ready backups: %.3f us" % (1e6 * best / args.count))


if __name__ == "__main__":
    main()
