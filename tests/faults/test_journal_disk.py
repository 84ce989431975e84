"""The journal when its disk stalls, fills up, or has a file taken from under it (issue 9, item 8).

Each test puts the broker's data directory on a small ext4 filesystem of its own (a loop device,
tests/support/journal_disk.py; skipped without root or loop devices) and then:

- freezes it (fsfreeze): durable sends wait, while a bystander's non-durable round trips and new
  connections each take under 0.5 s; after the thaw every durable send is accepted;
- fills it: the journal cannot make its next file, the durable send is rejected, one error line
  names the queue and the file, the broker serves everyone else; once space is back the journal
  resumes, and after a kill -9 every accepted message is recovered and no rejected one;
- makes a journal file immutable (chattr +i) or truncates it under the broker: an error naming the
  file, never a SIGBUS.
"""
import os
import re
import subprocess
import time

import pytest
from proton import Message
from proton.utils import BlockingConnection, SendException

from tests.support.amqp import CreateQueue
from tests.support.broker import BrokerProcess, wait_until
from tests.support.faults import Bystander, assert_no_trouble
from tests.support.journal_disk import LoopFs, TimedProducer, received_numbers
from tests.support.rawclient import RawClient

SMALL = {"durable": True, "qpid.file_count": 3, "qpid.file_size": 1}   # 3 x 64 KiB to start


@pytest.fixture
def loopfs(tmp_path):
    fs = LoopFs(tmp_path / "fs", 48)
    try:
        yield fs
    finally:
        fs.close()


@pytest.fixture
def disk_broker(loopfs, tmp_path):
    """A broker whose data directory is on the loop filesystem (its log is not)."""
    broker = BrokerProcess(tmp_path / "broker", ["--data-dir", str(loopfs.mnt / "data")], data_dir=False)
    (loopfs.mnt / "data").mkdir()
    broker.start()
    try:
        yield broker
    finally:
        loopfs.thaw()
        if broker.is_running():
            broker.kill()
        print("===== broker log =====\n" + broker.log_text())


def journal_dir(broker_data, queue):
    root = broker_data / "cypid-store" / "jrnl"
    found = [p for p in root.iterdir() if p.name.endswith("-" + queue)]
    assert len(found) == 1, found
    return found[0]


def send_durable(sender, n, size=1024):
    """True if accepted, False if rejected."""
    try:
        sender.send(Message(body="x" * size, durable=True, properties={"n": n}), timeout=20)
        return True
    except SendException:
        return False


def error_lines(broker):
    return [line for line in broker.log_lines() if " error " in line.lower() or "[error" in line.lower()]


@pytest.mark.solo    # a bystander's round trip bound (0.5 s): timed alone, after the parallel pass
def test_journal_fsfreeze_stalls_only_durable_sends(disk_broker, loopfs):
    broker = disk_broker
    conn = BlockingConnection(broker.url, timeout=20)
    sender = conn.create_sender("dq", options=CreateQueue({"durable": True}))
    for n in range(1, 6):
        assert send_durable(sender, n)
    bystander = Bystander(broker, timeout=5)
    loopfs.freeze()
    producer = None
    try:
        producer = TimedProducer(broker.url, "dq", 20, window=20).start()
        worst = 0.0
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            t0 = time.monotonic()
            bystander.check()
            worst = max(worst, time.monotonic() - t0)
            t0 = time.monotonic()                   # a new connection: SASL, header, open answered
            with RawClient.connect(broker, timeout=5) as client:
                client.handshake()
            worst = max(worst, time.monotonic() - t0)
        print("worst round trip or new connection while frozen: %.3f s" % worst)
        assert worst < 0.5, "a round trip or a new connection took %.3f s while the disk was frozen" % worst
        assert producer.outcomes() == 0, "durable sends were settled while the disk was frozen"
    finally:
        loopfs.thaw()
    assert producer.join(30), "durable sends not settled after the thaw"
    assert sorted(producer.accepted) == list(range(1, 21)) and not producer.rejected
    conn.close()
    bystander.close()
    broker.kill()
    broker.start()
    assert received_numbers(broker.url, "dq") == list(range(1, 6)) + list(range(1, 21))


def test_journal_full_filesystem_rejects_then_resumes(disk_broker, loopfs):
    broker = disk_broker
    conn = BlockingConnection(broker.url, timeout=20)
    sender = conn.create_sender("dq", options=CreateQueue(SMALL))
    accepted, rejected = [], []
    for n in range(1, 21):
        assert send_durable(sender, n)
        accepted.append(n)
    bystander = Bystander(broker, timeout=5)
    filler = loopfs.fill()
    before = len(error_lines(broker))
    n = 21
    while not rejected and n < 2000:            # a few files' worth: the journal must grow
        (accepted if send_durable(sender, n) else rejected).append(n)
        n += 1
    assert rejected, "no durable send was refused on a full filesystem"
    bystander.check()
    wait_until(lambda: len(error_lines(broker)) > before, timeout=10)
    lines = error_lines(broker)[before:]
    assert len(lines) == 1, "expected one error line for the episode:\n" + "\n".join(lines)
    assert "'dq'" in lines[0] and re.search(r"journal-\d{4}\.cjf", lines[0]) and "No space" in lines[0], lines[0]
    assert broker.is_running()
    os.unlink(filler)
    # the journal resumes by itself (the writer retries every second)
    deadline = time.monotonic() + 15
    while True:
        if send_durable(sender, n):
            accepted.append(n)
            break
        rejected.append(n)
        assert time.monotonic() < deadline, "the journal did not resume once space was back"
        n += 1
        time.sleep(0.2)  # poll: retry the send until the writer has resumed (deadline above)
    for n in range(n + 1, n + 11):
        assert send_durable(sender, n)
        accepted.append(n)
    bystander.check()
    assert_no_trouble(broker)
    conn.close()
    bystander.close()
    broker.kill()
    broker.start()
    got = received_numbers(broker.url, "dq")
    assert got == accepted, "rejected %s; recovered but not accepted: %s; lost: %s" % (
        rejected, sorted(set(got) - set(accepted)), sorted(set(accepted) - set(got)))


@pytest.mark.parametrize("how", ["immutable", "truncated"])
def test_journal_file_taken_away_is_an_error_not_a_signal(disk_broker, loopfs, how):
    broker = disk_broker
    conn = BlockingConnection(broker.url, timeout=20)
    sender = conn.create_sender("dq", options=CreateQueue(SMALL))
    for n in range(1, 11):
        assert send_durable(sender, n)
    bystander = Bystander(broker, timeout=5)
    victim = journal_dir(loopfs.mnt / "data", "dq") / "journal-0000.cjf"
    before = len(error_lines(broker))
    if how == "immutable":
        subprocess.run(["chattr", "+i", str(victim)], check=True)
    else:
        os.truncate(victim, 4096 + 1000)
    try:
        refused = [n for n in range(11, 16) if not send_durable(sender, n)]
        assert refused, "durable sends accepted though the journal file cannot be written"
        assert broker.is_running(), "the broker died (status %s)" % broker.returncode
        bystander.check()
        wait_until(lambda: len(error_lines(broker)) > before, timeout=10)
        line = error_lines(broker)[before]
        assert "'dq'" in line and str(victim) in line, line
        assert ("Operation not permitted" in line) if how == "immutable" else ("truncated" in line), line
    finally:
        if how == "immutable":
            subprocess.run(["chattr", "-i", str(victim)], check=True)
    assert_no_trouble(broker)
    conn.close()
    bystander.close()
