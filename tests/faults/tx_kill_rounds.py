"""kill -9 rounds inside durable transactions: after every restart, each transaction's work is all
there or none of it is, and every transaction whose commit was answered ``accepted`` is all there.

    python -m tests.faults.tx_kill_rounds --rounds 50 [--seed N] [--workdir DIR]

Three durable queues: ``seeds`` holds messages the transactions consume, ``out1`` and ``out2`` take
what they send. Each transaction (tests/support/txclient.py) takes three seeds (every other one
acquiring them in the transaction: its flow names the txn-id) and accepts them in the transaction, sends three durable messages to ``out1`` and three to ``out2`` in it, then commits:
its work spans three journals, so the commit goes through the transaction log (broker/transactions.py).
The client runs until the broker is SIGKILLed on a condition: in odd rounds once a random number
of commits (possibly none) is answered and the next transaction has reached a random step (declared,
its seeds fetched, accepted, its messages sent), so that transaction is open; in even rounds by the
broker itself inside a commit (its failpoint, CYPID_TX_KILL_AT in broker/transactions.py): the
rounds go through the phases in turn, its xid records appended, synced, its decision synced in the
transaction log, its commit records appended, synced. The broker is restarted on the same data dir
and the queues are read:

- a transaction's six messages are all in out1/out2, or none is (never some);
- its three seeds are gone from ``seeds`` exactly when its messages are there;
- a transaction whose commit was answered ``accepted`` is there;
- no seed is lost or duplicated otherwise.

tests/faults/test_tx_kill.py runs a few rounds in the suite; CYPID_TX_KILL_SEED reproduces one.
"""
import os
import random
import sys
import threading
import time

from proton.utils import BlockingConnection

from cypid.broker.transactions import KILL_ENV, KILL_PHASES

from tests.faults.rounds import main as rounds_main
from tests.support.amqp import CreateQueue
from tests.support.broker import BrokerProcess, wait_until
from tests.support.rawclient import ProtocolError
from tests.support.txclient import ACCEPTED, TxClient, descriptor

QUEUES = ("seeds", "out1", "out2")
STEPS = ("declared", "fetched", "accepted", "sent")
PER_QUEUE = 3
SEEDS = 60


class Workload(threading.Thread):
    """Transactions one after another until the broker goes away."""

    def __init__(self, broker, round_no):
        super().__init__(daemon=True)
        self.broker = broker
        self.round_no = round_no
        self.started = {}           # txn number -> seeds it accepted in the transaction
        self.committed = set()      # txn numbers whose commit was answered accepted
        self.commits = 0
        self.error = None
        self.kill_point = None      # (txn number, step): where to signal ``reached``
        self.reached = threading.Event()

    def _at(self, n, step):
        if (n, step) == self.kill_point:
            self.reached.set()      # the round kills the broker now; this client carries on until then

    def run(self):
        try:
            with TxClient(self.broker, timeout=30) as c:
                seeds = c.receiver("seeds")
                outs = [c.sender("out1"), c.sender("out2")]
                n = 0
                while True:
                    n += 1
                    txn = c.declare()
                    self._at(n, "declared")
                    got = c.fetch(seeds, PER_QUEUE, txn=txn if n % 2 else None)
                    self.started[n] = [b for _, b in got]
                    self._at(n, "fetched")
                    for did, _ in got:
                        c.accept(did, txn=txn)
                    self._at(n, "accepted")
                    for s in outs:
                        for i in range(PER_QUEUE):
                            c.send(s, "r%d-t%d-%d" % (self.round_no, n, i), txn=txn, durable=True, wait=False)
                    self._at(n, "sent")
                    state = c.discharge(txn)
                    if descriptor(state) == ACCEPTED:
                        self.committed.add(n)
                        self.commits += 1
        except (ProtocolError, OSError):
            pass                    # the broker was killed
        except Exception as e:      # noqa: BLE001 - reported by the round
            self.error = e


def _read_all(broker, address):
    """Take every message of ``address`` in a transaction: once its commit is answered, the dequeues
    are durable (a plain accept is synced lazily, and a kill just after it may bring the message back)."""
    with TxClient(broker, timeout=30) as c:
        r = c.receiver(address)
        got = c.fetch(r, 100000)
        txn = c.declare()
        for did, _ in got:
            c.accept(did, txn=txn)
        assert descriptor(c.discharge(txn)) == ACCEPTED
        return [b for _, b in got]


def _seed(broker, round_no, count):
    with TxClient(broker, timeout=30, coordinator=False) as c:
        s = c.sender("seeds")
        dids = [c.send(s, "s%d-%d" % (round_no, j), durable=True, wait=False) for j in range(count)]
        for did in dids:
            assert descriptor(c.wait_outcome(did)) == ACCEPTED
    return ["s%d-%d" % (round_no, j) for j in range(count)]


def run(rounds, seed, workdir, out=sys.stdout):
    rnd = random.Random(seed)
    broker = BrokerProcess(os.path.join(str(workdir), "broker"))
    broker.start()
    totals = {"rounds": 0, "transactions": 0, "committed": 0, "answered": 0, "in_flight_kept": 0,
              "in_flight_dropped": 0}
    t0 = time.monotonic()
    try:
        conn = BlockingConnection(broker.url, timeout=30)
        for q in QUEUES:
            conn.create_sender(q, options=CreateQueue({"durable": True})).close()
        conn.close()
        for round_no in range(1, rounds + 1):
            target = rnd.randrange(0, 12)
            inside = round_no % 2 == 0
            if inside:
                # the broker kills itself inside the commit of transaction target + 1 (counted
                # from this start: the restart below keeps the reads' commits out of the count)
                broker.stop()
                phase = KILL_PHASES[(round_no // 2 - 1) % len(KILL_PHASES)]
                broker.env = dict(os.environ, **{KILL_ENV: "%s:%d" % (phase, target + 1)})
                broker.start()
            seeds = set(_seed(broker, round_no, SEEDS))
            work = Workload(broker, round_no)
            if inside:
                work.start()
                wait_until(lambda: broker.proc.poll() is not None, timeout=60,
                           message="seed %d round %d: the broker did not kill itself" % (seed, round_no))
            else:
                work.kill_point = (target + 1, rnd.choice(STEPS))
                work.start()
                assert work.reached.wait(60), "seed %d round %d: the client never reached %s" % (
                    seed, round_no, work.kill_point)
            broker.kill()
            broker.env = None
            work.join(30)
            assert work.error is None, "seed %d round %d: the client failed: %r" % (seed, round_no, work.error)
            broker.start()
            left = _read_all(broker, "seeds")
            sent = _read_all(broker, "out1") + _read_all(broker, "out2")
            assert len(left) == len(set(left)), "seed %d round %d: a seed is there twice" % (seed, round_no)
            present = {}
            for body in sent:
                r, t, _i = body.split("-")
                assert r == "r%d" % round_no, "seed %d round %d: a message of an earlier round is " \
                    "back: %s" % (seed, round_no, body)
                present[int(t[1:])] = present.get(int(t[1:]), 0) + 1
            gone = set()
            for n, taken in work.started.items():
                count = present.get(n, 0)
                assert count in (0, 2 * PER_QUEUE), "seed %d round %d: transaction %d is partly there: " \
                    "%d of %d messages" % (seed, round_no, n, count, 2 * PER_QUEUE)
                if n in work.committed:
                    assert count, "seed %d round %d: transaction %d was committed (accepted) and " \
                        "is gone" % (seed, round_no, n)
                    totals["answered"] += 1
                if count:
                    totals["committed"] += 1
                    assert not set(taken) & set(left), "seed %d round %d: transaction %d is there but " \
                        "its seeds came back: %s" % (seed, round_no, n, set(taken) & set(left))
                    gone |= set(taken)
                    if n not in work.committed:
                        totals["in_flight_kept"] += 1
                else:
                    assert set(taken) <= set(left), "seed %d round %d: transaction %d is not there but " \
                        "its seeds are gone: %s" % (seed, round_no, n, set(taken) - set(left))
                    if n not in work.committed and taken:
                        totals["in_flight_dropped"] += 1
            assert set(left) == seeds - gone, "seed %d round %d: seeds lost or left: %s" % (
                seed, round_no, sorted((seeds - gone) ^ set(left))[:10])
            stray = set(present) - set(work.started)
            assert not stray, "seed %d round %d: messages of unknown transactions %s" % (seed, round_no, stray)
            totals["transactions"] += len(work.started)
            totals["rounds"] += 1
    finally:
        broker.stop()
    totals["seconds"] = round(time.monotonic() - t0, 1)
    print("%(rounds)d kills in %(seconds).1f s: %(transactions)d transactions, %(committed)d there after "
          "the restart (%(answered)d answered accepted, %(in_flight_kept)d committed as the broker died), "
          "%(in_flight_dropped)d in flight and rolled back" % totals + " (CYPID_TX_KILL_SEED=%d)" % seed,
          file=out)
    return totals


def main(argv=None):
    return rounds_main(run, argv, "python -m tests.faults.tx_kill_rounds", __doc__,
                       50, "CYPID_TX_KILL_SEED", "cypid-tx-kill-")


if __name__ == "__main__":
    sys.exit(main())
