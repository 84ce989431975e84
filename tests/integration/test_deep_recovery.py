"""Recovery of a deep durable queue whose bodies stay on disk (issue 9, Must show 4, CI size).

perf/deep_queue.py times a million messages; here a few thousand, checked one by one. After a
kill -9 the broker makes each recovered message from its journal record's flags and leaves the body
in the journal until a consumer gets it (cypid.pyx.store_recovery). This test proves that what
comes back is what went in:

- every message, in order, with the same bytes (a checksum over the bodies in order), its subject
  and application-properties, TTL messages and priorities above 15 (records with a header section)
  among plain ones, and the delivery count of messages released as failed before the kill;
- the queue's msgDepth and byteDepth after the restart are what they were before it (the size a
  message had on arrival is kept in its record);
- a priority queue's recovered messages come out by priority, FIFO within each;
- the bodies are not in memory after recovery: the broker's RSS grows by far less than the data;
- the dequeues of the consumed messages survive the next kill -9.
"""
import hashlib
import re
import subprocess
import sys
from pathlib import Path

from proton import Delivery, Message
from proton.utils import BlockingConnection

from tests.support.amqp import CreateQueue
from tests.support.blocking import drain

COUNT = 1500
SIZE = 64 * 1024


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        return int(re.search(r"^VmRSS:\s+(\d+) kB", f.read(), re.M).group(1))


def depth(broker, queue):
    tool = [str(Path(sys.prefix) / "bin" / "qpid-stat"), "-b", broker.url, "-q", queue]
    r = subprocess.run(tool, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    m = re.search(r"^  queue-depth +([\d,]+) +([\d,]+)", r.stdout, re.M)
    assert m, r.stdout
    return int(m.group(1).replace(",", "")), int(m.group(2).replace(",", ""))


def body(i):
    seed = hashlib.sha256(b"%d" % i).digest()
    return (b"%08d:" % i) + seed * (SIZE // len(seed))


def make(i):
    msg = Message(body=body(i), durable=True)
    if i % 7 == 3:
        msg.ttl = 3600.0                    # a record with a header section and an absolute expiry
    if i % 11 == 5:
        msg.priority = 200                  # above 15: kept in a header section too
    if i % 13 == 1:
        msg.subject = "s%d" % i
        msg.properties = {"n": i, "tag": "t%d" % (i % 5)}
    return msg


def receive_all(conn, address):
    receiver = conn.create_receiver(address, credit=None)
    out = []
    try:
        while drain(conn, receiver, 200):
            out.append(receiver.receive(timeout=20))
            receiver.accept()
    finally:
        receiver.close()
    return out


def test_deep_queue_recovered_lazily_in_order(broker_factory):
    broker = broker_factory()
    base_rss = rss_kib(broker.pid)
    conn = BlockingConnection(broker.url, timeout=60)
    try:
        sender = conn.create_sender("deep", options=CreateQueue({"durable": True, "qpid.max_size": 0,
                                                                 "qpid.max_count": 0}))
        for i in range(COUNT):
            sender.send(make(i))
        sender.close()
        # three messages delivered and released as failed: their delivery count is recorded
        receiver = conn.create_receiver("deep", credit=0)    # one message per receive()
        for _ in range(3):
            receiver.receive(timeout=20)
        for delivery in receiver.fetcher.unsettled:
            delivery.local.failed = True
        for _ in range(3):
            receiver.settle(Delivery.MODIFIED)
        receiver.close()
        prio = conn.create_sender("prio", options=CreateQueue({"durable": True, "qpid.priorities": 10}))
        for i in range(60):
            prio.send(Message(body="p%d" % i, durable=True, priority=i % 10))
        prio.close()
    finally:
        conn.close()
    before = depth(broker, "deep")
    assert before[0] == COUNT

    broker.restart(kill=True)
    assert rss_kib(broker.pid) - base_rss < COUNT * SIZE // 1024 // 4, "bodies were loaded at recovery"
    assert depth(broker, "deep") == before
    conn = BlockingConnection(broker.url, timeout=60)
    try:
        got = receive_all(conn, "deep")
        assert [m.body[:9] for m in got] == [b"%08d:" % i for i in range(COUNT)]
        assert hashlib.sha256(b"".join(m.body for m in got)).hexdigest() == \
            hashlib.sha256(b"".join(body(i) for i in range(COUNT))).hexdigest()
        for i, m in enumerate(got):
            want = make(i)
            assert m.durable
            assert m.subject == want.subject, i
            assert (m.properties or None) == (want.properties or None), i
            assert m.priority == (want.priority if want.priority is not None else 4), i
            assert (m.ttl > 0) == bool(want.ttl), i
            assert (m.delivery_count > 0) == (i < 3), (i, m.delivery_count)
        prios = [m.body for m in receive_all(conn, "prio")]
        assert prios == ["p%d" % i for p in range(9, -1, -1) for i in range(60) if i % 10 == p]
    finally:
        conn.close()
    assert depth(broker, "deep") == (0, 0)

    broker.restart(kill=True)
    assert depth(broker, "deep") == (0, 0)
    assert depth(broker, "prio")[0] == 0
