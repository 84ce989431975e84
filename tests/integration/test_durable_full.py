"""A durable queue's journal geometry from node properties, and a full journal.

``qpid.file_count=4, qpid.file_size=8`` gives four files of 8 pages of 64 KiB (each file 4 KiB of
header + 512 KiB of data) to start with; ``qpid.journal_max_size=3`` (MiB) lets it grow to five.
Durable sends fill it until the journal refuses one: the producer gets ``rejected`` with
``amqp:resource-limit-exceeded`` naming the queue and the limit, the broker keeps running, nothing
accepted is lost, and consuming lets the producer go on (many times round the files, and across a
restart).
"""
from proton import Delivery, Message
from proton.utils import BlockingConnection

from tests.support.amqp import CreateQueue
from tests.support.blocking import drain

GEOMETRY = {"durable": True, "qpid.file_count": 4, "qpid.file_size": 8, "qpid.journal_max_size": 3}
BODY = "x" * 10240


def fill(sender, start):
    """Send numbered 10 KiB durable messages until one is refused; returns (next number, that
    delivery)."""
    n = start
    while True:
        d = sender.send(Message(body=BODY, durable=True, properties={"n": n}), error_states=[])
        if d.remote_state != Delivery.ACCEPTED:
            return n, d
        n += 1
        assert n - start < 1000, "the journal never filled"


def take(conn, count):
    receiver = conn.create_receiver("full", credit=None)
    out = []
    for _ in range(count):
        out.append(receiver.receive(timeout=10).properties["n"])
        receiver.accept()
    receiver.close()
    return out


def test_4x8_journal_fills_refuses_and_recovers(broker_factory):
    broker = broker_factory()
    conn = BlockingConnection(broker.url, timeout=30)
    try:
        sender = conn.create_sender("full", options=CreateQueue(GEOMETRY))
        jdirs = list((broker.data_dir / "cypid-store" / "jrnl").glob("*-full"))
        assert len(jdirs) == 1

        accepted, refused = fill(sender, 0)
        files = sorted(jdirs[0].iterdir())       # the writer made the initial four (and one more?)
        assert [f.name for f in files] in (["journal-%04d.cjf" % i for i in range(n)] for n in (4, 5))
        assert all(f.stat().st_size == 4096 + 8 * 65536 for f in files)
        # live records may use (max_files - 2) files: about 1.5 MiB of 10 KiB messages
        assert 130 <= accepted <= 154, accepted
        assert refused.remote_state == Delivery.REJECTED
        cond = refused.remote.condition
        assert cond.name == "amqp:resource-limit-exceeded"
        assert "'full'" in cond.description and "at its limit: 5 files of 8 x 64 KiB" in cond.description
        assert "qpid.journal_max_size" in cond.description, cond.description
        # Still full, still running: the next send is refused the same way.
        _, again = fill(sender, accepted)
        assert again.remote_state == Delivery.REJECTED

        # Consuming makes room; the producer carries on. Go round the ring of files many times.
        expected = list(range(accepted))
        got = []
        n = accepted
        for _ in range(8):
            got += take(conn, accepted // 2)
            n, refused = fill(sender, n)
            assert refused.remote.condition.name == "amqp:resource-limit-exceeded"
            expected += list(range(expected[-1] + 1, n))
        sender.close()
    finally:
        conn.close()
    log = broker.log_text()
    assert "Journal of queue 'full' is at its limit" in log

    broker.restart(kill=True)
    conn = BlockingConnection(broker.url, timeout=30)
    try:
        rest = expected[len(got):]
        got += take(conn, len(rest))
        assert got == expected                  # nothing accepted was lost, in order
        assert drain(conn, conn.create_receiver("full", credit=None), 10) == 0
    finally:
        conn.close()
