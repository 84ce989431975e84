"""What a restart recovers when the store is damaged or the configuration is unusual (issue 9: 1, 2,
4, 7), against real broker processes with python-qpid-proton clients and qpid-config.

- A durable queue or exchange whose alternate exchange did not survive (not durable) is recovered
  with its messages and bindings; one warning names the missing alternate.
- Bindings of durable queues to the built-in exchanges (amq.direct/topic/fanout/match) survive.
- The broker never deletes journal data it cannot account for: a lost or empty config.sqlite, a lost
  `queues` table, a journal with no config row are moved into `cypid-store/lost+found/` with an error
  line naming each file; a stray file in a journal directory is set aside alone; a journal directory
  that vanished leaves its queue empty with an error naming it; a row whose journal path leaves the
  store is refused.
- A durable message's TTL keeps its absolute expiry across a restart.
"""
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from proton import Message
from proton.utils import BlockingConnection

from tests.support.amqp import CreateExchange, CreateQueue
from tests.support.blocking import drain
from tests.support.broker import wait_until

DURABLE = {"durable": True}


def store_dir(broker):
    return broker.data_dir / "cypid-store"


def jdir(broker, queue):
    found = [p for p in (store_dir(broker) / "jrnl").iterdir() if p.name.endswith("-" + queue)]
    assert len(found) == 1, found
    return found[0]


def lost_files(broker):
    """Every file under lost+found, relative to it."""
    root = store_dir(broker) / "lost+found"
    if not root.exists():
        return []
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def qpid_config(broker, *args):
    tool = [str(Path(sys.prefix) / "bin" / "qpid-config"), "-b", broker.url]
    r = subprocess.run(tool + list(args), capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


def send(conn, address, bodies, durable=True, options=None, subject=None, ttl=None, **props):
    sender = conn.create_sender(address, options=options)
    for body in bodies:
        msg = Message(body=body, durable=durable, properties=props or None, subject=subject)
        if ttl is not None:
            msg.ttl = ttl
        sender.send(msg)
    sender.close()


def receive_all(conn, address):
    """[message] of everything waiting on ``address``, accepted one by one."""
    receiver = conn.create_receiver(address, credit=None)
    out = []
    try:
        while drain(conn, receiver, 100):
            out.append(receiver.receive(timeout=10))
            receiver.accept()
    finally:
        receiver.close()
    return out


def bodies(conn, address):
    return [m.body for m in receive_all(conn, address)]


def connect(broker):
    return BlockingConnection(broker.url, timeout=20)


# -- 1. a missing alternate exchange ------------------------------------------------------------
def test_queue_and_exchange_with_missing_alternate_are_recovered(broker_factory):
    broker = broker_factory()
    conn = connect(broker)
    try:
        conn.create_sender("nalt", options=CreateExchange("fanout")).close()     # not durable
        conn.create_sender("dq", options=CreateQueue({"durable": True, "alternate-exchange": "nalt"})).close()
        conn.create_sender("dx", options=CreateExchange("direct", {"durable": True,
                                                                   "alternate-exchange": "nalt"})).close()
        qpid_config(broker, "bind", "dx", "dq", "k")
        send(conn, "dq", ["m1", "m2", "m3"])
    finally:
        conn.close()
    broker.restart()
    conn = connect(broker)
    try:
        assert bodies(conn, "dq") == ["m1", "m2", "m3"]
        send(conn, "dx", ["via-dx"], subject="k")        # dx and its binding to dq came back
        assert bodies(conn, "dq") == ["via-dx"]
        send(conn, "dq", ["kept"])
    finally:
        conn.close()
    lines = broker.log_lines(r"[Aa]lternate exchange 'nalt'")
    assert len([line for line in lines if "'dq'" in line]) == 1, broker.log_text()
    assert len([line for line in lines if "'dx'" in line]) == 1, broker.log_text()
    assert not broker.log_lines(r"not recovered")
    # Once more (kill -9): the queue's journal is still its own, nothing was set aside.
    broker.restart(kill=True)
    conn = connect(broker)
    try:
        assert bodies(conn, "dq") == ["kept"]
    finally:
        conn.close()
    assert lost_files(broker) == []


# -- 2. bindings to the built-in exchanges -------------------------------------------------------
def test_bindings_to_builtin_exchanges_survive_restart(broker_factory):
    broker = broker_factory()
    conn = connect(broker)
    try:
        conn.create_sender("orders", options=CreateQueue(DURABLE)).close()
    finally:
        conn.close()
    qpid_config(broker, "bind", "amq.direct", "orders", "kd")
    qpid_config(broker, "bind", "amq.topic", "orders", "eu.#")
    qpid_config(broker, "bind", "amq.fanout", "orders")
    qpid_config(broker, "bind", "amq.match", "orders", "hk", "all", "region=eu")
    broker.restart(kill=True)
    conn = connect(broker)
    try:
        send(conn, "amq.direct", ["direct"], subject="kd")
        send(conn, "amq.topic", ["topic"], subject="eu.fr")
        send(conn, "amq.fanout", ["fanout"])
        send(conn, "amq.match", ["match"], region="eu")
        assert bodies(conn, "orders") == ["direct", "topic", "fanout", "match"]
    finally:
        conn.close()


# -- 4. data the broker cannot account for -------------------------------------------------------
def _fill(broker, queues, n=5):
    conn = connect(broker)
    try:
        for q in queues:
            send(conn, q, ["%s-%d" % (q, i) for i in range(n)], options=CreateQueue(DURABLE))
    finally:
        conn.close()


def _lose_config(broker, how):
    config = store_dir(broker) / "config.sqlite"
    if how == "missing":
        for suffix in ("", "-wal", "-shm"):
            Path(str(config) + suffix).unlink(missing_ok=True)
    elif how == "empty":
        for suffix in ("-wal", "-shm"):
            Path(str(config) + suffix).unlink(missing_ok=True)
        config.write_bytes(b"")
    elif how == "no-queues-table":
        db = sqlite3.connect(str(config))
        db.execute("DROP TABLE queues")
        db.commit()
        db.close()


@pytest.mark.parametrize("how", ["missing", "empty", "no-queues-table"])
def test_journals_without_config_are_kept_aside(broker_factory, how):
    broker = broker_factory()
    _fill(broker, ["qa", "qb"])
    broker.stop()
    journals = {q: sorted(p.name for p in jdir(broker, q).iterdir()) for q in ("qa", "qb")}
    dirs = {q: jdir(broker, q).name for q in ("qa", "qb")}
    _lose_config(broker, how)
    broker.start()
    conn = connect(broker)
    try:
        # The broker works; the queues are unknown, and a new one of the same name starts empty.
        send(conn, "qa", ["new"], options=CreateQueue(DURABLE))
        assert bodies(conn, "qa") == ["new"]
    finally:
        conn.close()
    kept = lost_files(broker)
    for q in ("qa", "qb"):
        for name in journals[q]:
            assert any(k.endswith(dirs[q] + "/" + name) for k in kept), (q, name, kept)
            lines = broker.log_lines(r"error .*%s.*%s" % (dirs[q], name))
            assert lines, broker.log_text()
    assert not broker.log_lines("Removing journal")
    # Still there at the next start, and not reported again.
    broker.restart()
    assert lost_files(broker) == kept
    assert len(broker.log_lines(r"error .*%s" % dirs["qb"])) == 1, broker.log_text()


def test_stray_file_does_not_quarantine_a_journal(broker_factory):
    broker = broker_factory()
    _fill(broker, ["dq", "other"])
    broker.kill()
    d = jdir(broker, "dq")
    (d / "notes.txt").write_text("an operator's note")
    (d / "journal-0099.cjf").write_bytes(b"not a journal file at all")
    broker.start()
    conn = connect(broker)
    try:
        assert bodies(conn, "dq") == ["dq-%d" % i for i in range(5)]
        assert bodies(conn, "other") == ["other-%d" % i for i in range(5)]
    finally:
        conn.close()
    kept = lost_files(broker)
    assert any(k.endswith("notes.txt") for k in kept) and any(k.endswith("journal-0099.cjf") for k in kept), kept
    for name in ("notes.txt", "journal-0099.cjf"):
        assert len(broker.log_lines(r"'dq'.*%s" % name)) == 1, broker.log_text()
    assert not broker.log_lines("unreadable")


def test_vanished_journal_directory_is_an_error_not_silence(broker_factory):
    broker = broker_factory()
    _fill(broker, ["gone", "other"])
    broker.stop()
    d = jdir(broker, "gone")
    for p in d.iterdir():
        p.unlink()
    d.rmdir()
    broker.start()
    conn = connect(broker)
    try:
        assert bodies(conn, "gone") == []          # recovered, empty, and it works
        send(conn, "gone", ["again"])
        assert bodies(conn, "gone") == ["again"]
        assert bodies(conn, "other") == ["other-%d" % i for i in range(5)]
    finally:
        conn.close()
    lines = broker.log_lines(r"error .*'gone'.*%s" % d.name)
    assert len(lines) == 1 and "missing" in lines[0], broker.log_text()


def test_journal_path_outside_the_store_is_refused(broker_factory, tmp_path):
    broker = broker_factory()
    _fill(broker, ["evil", "other"])
    broker.stop()
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious").write_text("not the broker's")
    db = sqlite3.connect(str(store_dir(broker) / "config.sqlite"))
    rel = os.path.relpath(outside, store_dir(broker) / "jrnl")     # ../../../../../outside
    assert (store_dir(broker) / "jrnl" / rel).resolve() == outside.resolve()
    db.execute("UPDATE queues SET journal=? WHERE name='evil'", (rel,))
    db.commit()
    db.close()
    broker.start()
    conn = connect(broker)
    try:
        assert bodies(conn, "other") == ["other-%d" % i for i in range(5)]
        with pytest.raises(Exception, match="not found"):
            conn.create_receiver("evil", credit=None)
    finally:
        conn.close()
    assert sorted(p.name for p in outside.iterdir()) == ["precious"]
    assert len(broker.log_lines(r"error .*'evil'.*outside the store")) == 1, broker.log_text()


# -- 7. TTL across a restart ---------------------------------------------------------------------
def test_ttl_keeps_its_absolute_expiry_across_restart(broker_factory):
    broker = broker_factory()
    conn = connect(broker)
    try:
        conn.create_sender("tq", options=CreateQueue(DURABLE)).close()
        sent = time.time()
        send(conn, "tq", ["short"], ttl=2.0)
        send(conn, "tq", ["long"], ttl=120.0)
        send(conn, "tq", ["none"])
    finally:
        conn.close()
    broker.stop()
    wait_until(lambda: time.time() > sent + 2.5, timeout=10, message="the short TTL to pass")
    broker.start()
    conn = connect(broker)
    try:
        got = receive_all(conn, "tq")
    finally:
        conn.close()
    assert [m.body for m in got] == ["long", "none"]
    remaining = got[0].ttl
    assert 100.0 < remaining <= 120.0 - (time.time() - sent) + 0.5, remaining


def test_journal_of_a_queue_not_recovered_is_kept_when_declared_anew(broker_factory):
    """A queue that cannot be recovered (here: its row's properties ask for an impossible journal)
    keeps its journal; declaring the name again starts a new journal and sets the old one aside."""
    from cypid.pyx.codec import encode
    broker = broker_factory()
    _fill(broker, ["dq"])
    broker.stop()
    old = jdir(broker, "dq")
    files = sorted(p.name for p in old.iterdir())
    db = sqlite3.connect(str(store_dir(broker) / "config.sqlite"))
    db.execute("UPDATE queues SET properties=? WHERE name='dq'", (encode({"durable": True, "qpid.file_count": 1}),))
    db.commit()
    db.close()
    broker.start()
    assert broker.log_lines(r"Queue 'dq' not recovered")
    conn = connect(broker)
    try:
        send(conn, "dq", ["new"], options=CreateQueue(DURABLE))
    finally:
        conn.close()
    broker.restart()
    conn = connect(broker)
    try:
        assert bodies(conn, "dq") == ["new"]
    finally:
        conn.close()
    kept = lost_files(broker)
    assert all(any(k.endswith(old.name + "/" + f) for k in kept) for f in files), kept
    assert len(broker.log_lines(r"error .*%s" % old.name)) == 1, broker.log_text()
