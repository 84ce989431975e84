"""Durable queues, exchanges and bindings across broker restarts (python-qpid-proton clients).

- A restart (clean or kill -9) brings back every durable exchange, queue and binding, and every
  durable message not yet consumed, in order and with its delivery count; non-durable nodes and
  non-durable messages are gone.
- A durable message is accepted only once its journal record is synced; a queue deleted takes its
  journal and its configuration with it.
- A damaged or unreadable journal of one queue is logged (one line naming it) and does not stop
  the broker nor the recovery of the other queues.
- With --no-data-dir, durable is accepted, logged once, and nothing persists.
"""
from pathlib import Path

import pytest
from proton import Delivery, Message
from proton.reactor import DurableSubscription
from proton.utils import BlockingConnection

from tests.support.amqp import Capabilities, CreateExchange, CreateQueue
from tests.support.blocking import drain
from tests.support.broker import wait_until

DURABLE = {"durable": True}


def jdir(broker, queue):
    """The journal directory of durable queue ``queue``."""
    found = [p for p in (broker.data_dir / "cypid-store" / "jrnl").iterdir()
             if p.name.endswith("-" + queue) and ".quarantined-" not in p.name]
    assert len(found) == 1, found
    return found[0]


def send(conn, address, bodies, durable=True, options=None, **props):
    sender = conn.create_sender(address, options=options)
    for body in bodies:
        sender.send(Message(body=body, durable=durable, properties=props or None))
    sender.close()


def receive_all(conn, address, accept=True):
    """[(body, delivery_count)] of every message waiting on ``address``."""
    receiver = conn.create_receiver(address, credit=None)
    out = []
    while True:
        n = drain(conn, receiver, 1000)
        if not n:
            break
        for _ in range(n):
            msg = receiver.receive(timeout=10)
            out.append((msg.body, msg.delivery_count))
            if accept:
                receiver.accept()
            else:
                receiver.release(delivered=False)
    receiver.close()
    return out


def fail_delivery(conn, address, times):
    """Take the first message of ``address`` and let it go unsettled ``times`` times (each
    counts as a failed attempt)."""
    for _ in range(times):
        receiver = conn.create_receiver(address, credit=None)
        receiver.receive(timeout=10)
        receiver.close()


@pytest.mark.parametrize("kill", [False, True], ids=["stop", "kill"])
def test_restart_keeps_durable_nodes_and_messages(broker_factory, kill):
    broker = broker_factory()
    conn = BlockingConnection(broker.url, timeout=20)
    try:
        conn.create_sender("dq", options=CreateQueue(DURABLE)).close()
        conn.create_sender("nq", options=CreateQueue()).close()
        conn.create_sender("dx", options=CreateExchange("topic", DURABLE)).close()
        conn.create_sender("nx", options=CreateExchange("fanout")).close()
        # A shared durable subscription: a durable queue named for the link, bound to dx (key #)
        sub = conn.create_receiver("dx", name="dsub", options=[
            DurableSubscription(), Capabilities("shared")])
        sub.close()
        send(conn, "dq", ["m%d" % i for i in range(5)])
        send(conn, "dq", ["transient"], durable=False)
        send(conn, "nq", ["n0"])
        send(conn, "dx", ["t0", "t1"], options=None)
        fail_delivery(conn, "dq", 2)           # m0 comes back with delivery-count 2
        receiver = conn.create_receiver("dq", credit=None)
        receiver.receive(timeout=10)
        receiver.accept()                      # m0 is consumed (the third attempt)
        receiver.close()
        fail_delivery(conn, "dq", 1)           # m1: delivery-count 1
        # m5's accepted comes after a sync of dq's journal, which covers the dequeue and update
        # records before it (those are synced lazily: a kill -9 sooner may bring m0 back, as in qpidd)
        send(conn, "dq", ["m5"])
    finally:
        conn.close()
    broker.restart(kill=kill)

    conn = BlockingConnection(broker.url, timeout=20)
    try:
        assert receive_all(conn, "dq") == [("m1", 1), ("m2", 0), ("m3", 0), ("m4", 0), ("m5", 0)]
        assert receive_all(conn, "dsub") == [("t0", 0), ("t1", 0)]
        # The binding is back: the durable exchange routes to the subscription queue again.
        send(conn, "dx", ["t2"])
        assert receive_all(conn, "dsub") == [("t2", 0)]
        for gone in ("nq", "nx"):
            with pytest.raises(Exception, match="not found|Node not found"):
                conn.create_receiver(gone, credit=None)
    finally:
        conn.close()
    log = broker.log_text()
    assert "Recovered 1 exchanges, 2 queues, 1 bindings, 7 messages" in log


def test_consumed_messages_stay_consumed(broker_factory):
    broker = broker_factory()
    conn = BlockingConnection(broker.url, timeout=20)
    try:
        send(conn, "q", ["a", "b", "c"], options=CreateQueue(DURABLE))
        assert [b for b, _ in receive_all(conn, "q")] == ["a", "b", "c"]
    finally:
        conn.close()
    broker.restart()
    conn = BlockingConnection(broker.url, timeout=20)
    try:
        assert receive_all(conn, "q") == []
    finally:
        conn.close()


def test_deleted_durable_queue_leaves_nothing(broker_factory):
    broker = broker_factory()
    conn = BlockingConnection(broker.url, timeout=20)
    try:
        props = dict(DURABLE, **{"auto-delete": True})
        send(conn, "gone", ["x"], options=CreateQueue(props))
        path = jdir(broker, "gone")
        assert sorted(p.name for p in path.iterdir())[0] == "journal-0000.cjf"
        receiver = conn.create_receiver("gone", credit=None)   # first consumer ...
        receiver.close()                                       # ... leaves: the queue goes
        assert not path.exists()
    finally:
        conn.close()
    broker.restart()
    conn = BlockingConnection(broker.url, timeout=20)
    try:
        with pytest.raises(Exception, match="not found"):
            conn.create_receiver("gone", credit=None)
    finally:
        conn.close()


def test_durable_message_accepted_after_sync(broker_factory):
    """The accepted outcome of a durable send arrives once the record is synced: the journal's
    synced position then covers it (checked with the reader, from outside the broker)."""
    broker = broker_factory()
    conn = BlockingConnection(broker.url, timeout=20)
    try:
        sender = conn.create_sender("s", options=CreateQueue(DURABLE))
        d = sender.send(Message(body="x" * 1000, durable=True))
        assert d.remote_state == Delivery.ACCEPTED
    finally:
        conn.close()
    broker.kill()
    from cypid.pyx.journal import Journal
    with Journal(jdir(broker, "s"), readonly=True) as j:
        assert len(j.recovered) == 1 and j.recovered[0].data.endswith(b"x" * 1000)


def _fill(broker, queues, n):
    conn = BlockingConnection(broker.url, timeout=20)
    try:
        for q in queues:
            send(conn, q, ["%s-%d" % (q, i) for i in range(n)], options=CreateQueue(DURABLE))
    finally:
        conn.close()


def test_torn_journal_tail_recovers_prefix_and_others(broker_factory):
    broker = broker_factory()
    _fill(broker, ["qa", "qb", "qc"], 10)
    broker.stop()
    # Garble qa's journal in the middle of its records: recovery keeps the records before.
    path = jdir(broker, "qa") / "journal-0000.cjf"
    with open(path, "r+b") as f:
        f.seek(4096 + 200)
        f.write(b"\xde\xad\xbe\xef" * 8)
    # Cut qc's journal file short.
    qc = jdir(broker, "qc") / "journal-0001.cjf"
    with open(qc, "r+b") as f:
        f.truncate(10000)
    broker.start()
    conn = BlockingConnection(broker.url, timeout=20)
    try:
        qa = [b for b, _ in receive_all(conn, "qa")]
        assert 1 <= len(qa) < 10 and qa == ["qa-%d" % i for i in range(len(qa))]
        assert [b for b, _ in receive_all(conn, "qb")] == ["qb-%d" % i for i in range(10)]
        assert [b for b, _ in receive_all(conn, "qc")] == ["qc-%d" % i for i in range(10)]
        send(conn, "qa", ["after"])            # the repaired journal takes records again
        assert receive_all(conn, "qa") == [("after", 0)]
    finally:
        conn.close()
    damage = broker.log_lines(r"journal damage")
    assert len([line for line in damage if "'qa'" in line]) == 1, damage
    assert all("'qb'" not in line for line in damage)
    assert any("'qc'" in line and "truncated" in line for line in damage), damage


def test_unreadable_journal_is_quarantined(broker_factory):
    broker = broker_factory()
    _fill(broker, ["bad", "good"], 5)
    broker.kill()
    path = jdir(broker, "bad")
    with open(path / "journal-0000.cjf", "r+b") as f:
        f.write(b"NOTAJRNL")               # the file header's magic
    broker.start()
    conn = BlockingConnection(broker.url, timeout=20)
    try:
        assert [b for b, _ in receive_all(conn, "good")] == ["good-%d" % i for i in range(5)]
        assert receive_all(conn, "bad") == []  # the queue is there, empty, and works
        send(conn, "bad", ["new"])
        assert receive_all(conn, "bad") == [("new", 0)]
    finally:
        conn.close()
    lines = broker.log_lines(r"'bad'.*journal unreadable")
    assert len(lines) == 1, broker.log_text()
    assert list(path.parent.glob(path.name + ".quarantined-*"))


def test_no_data_dir_accepts_durable_but_keeps_nothing(broker_factory):
    broker = broker_factory("--no-data-dir", data_dir=False)
    conn = BlockingConnection(broker.url, timeout=20)
    try:
        send(conn, "q1", ["a"], options=CreateQueue(DURABLE))
        send(conn, "q2", ["b"], options=CreateQueue(DURABLE))
        assert receive_all(conn, "q1", accept=False) == [("a", 0)]
    finally:
        conn.close()
    assert len(broker.log_lines("durable queues accepted, but nothing will persist")) == 1
    broker.restart()
    conn = BlockingConnection(broker.url, timeout=20)
    try:
        with pytest.raises(Exception, match="not found"):
            conn.create_receiver("q1", credit=None)
    finally:
        conn.close()
    assert not Path(broker.base_dir / "data").exists()


def test_qmf_declared_durable_config_survives_restart(broker_factory):
    """qpid-config (QMF create/delete/bind) goes through the same Nodes methods as attach."""
    import subprocess
    import sys
    broker = broker_factory()
    tool = [str(Path(sys.prefix) / "bin" / "qpid-config"), "-b", broker.url]

    def qc(*args):
        r = subprocess.run(tool + list(args), capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stdout + r.stderr
        return r.stdout

    qc("add", "queue", "cq", "--durable", "--file-count", "4", "--file-size", "8")
    qc("add", "queue", "tq")
    qc("add", "exchange", "topic", "cx", "--durable")
    qc("bind", "cx", "cq", "a.#")
    # the writer thread makes the journal's four files just after the declare
    wait_until(lambda: len(list(jdir(broker, "cq").iterdir())) == 4)
    broker.restart()
    out = qc("queues")
    assert "cq" in out and "--durable" in out and "tq" not in out
    assert "cx" in qc("exchanges")
    assert "bind a.# => cx" in qc("-r", "queues")
    qc("del", "queue", "cq", "--force")
    broker.restart()
    assert "cq" not in qc("queues")
    assert "Recovered 1 exchanges, 0 queues, 0 bindings" in broker.log_text()
