"""Crash consistency beyond kill -9 (issue 9, Must show 2): recover from the durable image of the
store as of a journal sync, plus a torn tail, and find every message whose ``accepted`` had arrived.

kill -9 cannot lose what the page cache holds, so it never tests what fdatasync made durable. The
broker here runs with the failpoint CYPID_FAILPOINT_SYNC_COPY: after each journal sync (after its
fdatasync, before its callbacks send any ``accepted``) the writer copies the store directory
(journals + config.sqlite) with the CLOCK_MONOTONIC time of the copy. Producers and a consumer
record (same clock) when each ``accepted`` arrived and when each consumer accept was sent. Then,
for random copies, the test adds a torn tail at the copy's durable end (as etcd's WAL tests do: a
zeroed sector, random bytes, or half a record with a valid-looking header), starts a broker on the
copy and drains the queue. Required: every message accepted before the copy was taken and not
consumed before it is recovered; nothing is recovered that was never sent; nothing twice.

The seed is printed; CYPID_CRASH_IMAGE_SEED=N reproduces a run and CYPID_CRASH_IMAGE_ROUNDS=N
checks N copies (default 8: well under a minute).
"""
import json
import os
import random
import time

from proton.utils import BlockingConnection

from tests.support.amqp import CreateQueue
from tests.support.broker import BrokerProcess
from tests.support.journal_disk import TimedProducer, received_numbers

from cypid.pyx.journal import crc32c_bytes

HDR = 4096
QUEUE = "cq"


def torn_tail(copy_dir, info, rnd, mode):
    """Damage the copy's journal right at its durable end."""
    jdir = os.path.join(copy_dir, info["root"], "jrnl", os.path.basename(info["journal"]))
    path = os.path.join(jdir, "journal-%04d.cjf" % info["file"])
    size = os.path.getsize(path)
    at = HDR + info["offset"]
    if at >= size:
        return "none (the durable end is the end of the file)"
    if mode == "zero":
        data = b"\0" * 512
    elif mode == "random":
        data = rnd.randbytes(rnd.randint(32, 4096))
    else:                                           # half a record: a header saying more than follows
        body = rnd.randbytes(2000)
        hdr = bytearray(32)
        hdr[0:4] = b"cJe\x01"
        hdr[8:16] = (info["synced_seq"] + 1).to_bytes(8, "little")
        hdr[16:24] = (10 ** 9).to_bytes(8, "little")
        hdr[24:28] = len(body).to_bytes(4, "little")
        crc = crc32c_bytes(bytes(hdr[8:32]), crc32c_bytes(bytes(hdr[0:4])))
        hdr[4:8] = crc32c_bytes(body, crc).to_bytes(4, "little")
        data = bytes(hdr) + body[:1000]
    data = data[:size - at]
    with open(path, "r+b") as f:
        f.seek(at)
        f.write(data)
    return "%s: %d bytes at %s offset %d" % (mode, len(data), os.path.basename(path), at)


def test_journal_recovers_every_accepted_message_from_sync_images(tmp_path):
    seed = int(os.environ.get("CYPID_CRASH_IMAGE_SEED") or random.randrange(1 << 30))
    rounds = int(os.environ.get("CYPID_CRASH_IMAGE_ROUNDS", "8"))
    print("CYPID_CRASH_IMAGE_SEED=%d" % seed)
    rnd = random.Random(seed)
    copies = tmp_path / "copies"
    data = tmp_path / "data"
    data.mkdir()
    broker = BrokerProcess(tmp_path / "broker", ["--data-dir", str(data)], data_dir=False, env={
        "CYPID_FAILPOINT_SYNC_COPY": str(copies), "CYPID_FAILPOINT_SYNC_COPY_MAX": "400"})
    broker.start()
    sizes = [rnd.choice((rnd.randint(1, 300), rnd.randint(300, 3000), rnd.randint(3000, 30000)))
             for _ in range(1500)]
    consumed = {}                                    # n -> time just before its accept was sent
    try:
        conn = BlockingConnection(broker.url, timeout=30)
        conn.create_sender(QUEUE, options=CreateQueue(
            {"durable": True, "qpid.file_count": 3, "qpid.file_size": 1})).close()
        first = TimedProducer(broker.url, QUEUE, 800, window=rnd.randint(1, 40),
                              sizes=lambda n: sizes[n - 1]).start()
        assert first.join(60) and not first.rejected and len(first.accepted) == 800, first.error
        receiver = conn.create_receiver(QUEUE, credit=50)
        for _ in range(600):
            msg = receiver.receive(timeout=10)
            consumed[msg.properties["n"]] = time.monotonic()
            receiver.accept()
        receiver.close()

        second = TimedProducer(broker.url, QUEUE, 700, window=rnd.randint(1, 40),
                               sizes=lambda n: sizes[n - 1], first=801)
        accepted = dict(first.accepted)
        second.start()
        assert second.join(60) and not second.rejected, second.error
        accepted.update(second.accepted)
        conn.close()
    finally:
        broker.kill()
    made = sorted(p for p in copies.iterdir()) if copies.exists() else []
    assert len(made) >= 20, "the failpoint made %d copies of the store" % len(made)
    sent = set(range(1, 1501))
    for copy_dir in rnd.sample(made, min(rounds, len(made))):
        info = json.loads((copy_dir / "failpoint.json").read_text())
        t = info["monotonic"]
        what = torn_tail(str(copy_dir), info, rnd, rnd.choice(("zero", "random", "half")))
        required = {n for n, at in accepted.items() if at < t and not (n in consumed and consumed[n] < t)}
        b = BrokerProcess(tmp_path / ("r-" + copy_dir.name), ["--data-dir", str(copy_dir)], data_dir=False)
        b.start()
        try:
            got = received_numbers(b.url, QUEUE)
        finally:
            b.stop()
        where = "copy %s (synced seq %d, torn tail %s, seed %d)" % (copy_dir.name, info["synced_seq"], what, seed)
        assert len(got) == len(set(got)), "duplicates recovered from " + where
        assert set(got) <= sent, "recovered messages never sent from " + where
        missing = sorted(required - set(got))
        assert not missing, "accepted before the copy but not recovered from %s: %s" % (where, missing[:20])
