"""The leak audit (cypid.broker.audit) over fake broker objects: it must see what is kept."""
import json
import re
import os

from cypid.broker import audit


def _fake(name):
    # a class of that name in one of cypid's modules, as the broker's own would be
    return type(name, (), {"__module__": "cypid.broker.fake"})


Connection, Session, Link, Pending, Delivery = (
    _fake(n) for n in ("Connection", "Session", "Link", "Pending", "Delivery"))


class Ns:
    def __init__(self, **kw):
        self.__dict__.update(kw)


def fake_broker(queues=(), flow_holds=None, producers=None, data_path=None):
    nodes = Ns(queues={q.name: q for q in queues}, flow_holds=flow_holds or {}, producers=producers or {})
    return Ns(connections=set(), nodes=nodes, options=Ns(data_path=data_path))


def test_a_clean_broker_has_nothing_to_report():
    report = audit.census(fake_broker([Ns(name="q", consumers=[], held=0)]), "stop", objects=[])
    assert all(report[key] == 0 for key in audit.MUST_BE_ZERO)
    assert audit.problems(report, report) == []


def test_a_leaked_link_and_its_session_are_counted():
    session = Session()
    session.outstanding = 1             # deliveries sent and not settled by the peer
    link = Link()
    kept = [link, session, Connection(), Pending(), object()]
    queue = Ns(name="q", consumers=[link], held=2)
    report = audit.census(fake_broker([queue], flow_holds={queue: [Pending()]}), "stop", objects=kept)
    assert (report["links"], report["sessions"], report["connections"], report["unsettled"],
            report["pending_waits"], report["consumers"], report["held"], report["flow_holds"]) == (
        1, 1, 1, 1, 1, 1, 2, 1)
    found = audit.problems(None, report)
    assert "links=1" in found and "unsettled=1" in found and "consumers=1" in found


def test_a_delivery_kept_waiting_on_its_holds_is_counted():
    waiting, settled = Delivery(), Delivery()
    waiting.holds, settled.holds = 2, 0   # a journal sync and a flow stop not released; one let go
    report = audit.census(fake_broker(), "stop", objects=[waiting, settled])
    assert (report["deliveries"], report["holds"]) == (2, 2)
    found = audit.problems(None, report)
    assert "deliveries=2" in found and "holds=2" in found


def test_classes_outside_cypid_are_not_counted():
    foreign = type("Link", (), {"__module__": "proton"})()
    assert audit.census(fake_broker(), "stop", objects=[foreign])["links"] == 0


def test_open_and_mapped_journal_files_are_named(tmp_path):
    import mmap

    path = tmp_path / "jrnl" / "q.jdat"
    path.parent.mkdir()
    path.write_bytes(b"\0" * 4096)
    fd = os.open(path, os.O_RDONLY)
    try:
        view = mmap.mmap(fd, 4096, prot=mmap.PROT_READ)
        try:
            report = audit.census(fake_broker(data_path=str(tmp_path)), "stop", objects=[])
        finally:
            view.close()
    finally:
        os.close(fd)
    # (Python's mmap holds a duplicate of the descriptor: two open, one file mapped)
    assert report["journal_files"] == 2 and report["journal_views"] == 1
    assert set(report["files"]) == {str(path)}
    assert any(str(path) in p for p in audit.problems(None, report))


def test_descriptors_beyond_the_start_up_ones_are_named(tmp_path):
    start = audit.census(fake_broker(), "start", objects=[])
    r, w = os.pipe()
    try:
        stop = audit.census(fake_broker(), "stop", objects=[])
    finally:
        os.close(r)
        os.close(w)
    assert audit.problems(start, stop) == ["file descriptors beyond the start-up ones: pipe: x2"]
    assert audit.problems(start, audit.census(fake_broker(), "stop", objects=[])) == []


def test_audit_lines_round_trip_through_a_log():
    report = {"when": "stop", "links": 2}
    text = "2026-12-06 notice Shut down\n" + audit.line(report) + "\naudit: not json\n"
    assert audit.parse(text) == [report]
    assert json.loads(audit.line(report)[len(audit.PREFIX):]) == report


def test_a_leaked_dev_null_is_named_under_uvloop_too():
    """The start-up report holds libuv's spare /dev/null (audit.prime_loop opens it first), so one
    more at the stop is a leak, whatever the loop."""
    start = {"loop": "uvloop", "fd_kinds": {"/dev/null": 1, "socket": 2}}
    stop = {"loop": "uvloop", "fd_kinds": {"/dev/null": 2, "socket": 2}}
    assert audit.problems(start, stop) == ["file descriptors beyond the start-up ones: /dev/null x1"]


def test_prime_loop_opens_the_loops_lasting_descriptors_before_the_baseline():
    import asyncio

    import uvloop
    loop = uvloop.new_event_loop()
    try:
        before = set(os.listdir("/proc/self/fd"))
        loop.run_until_complete(audit.prime_loop(loop))
        primed = set(os.listdir("/proc/self/fd"))
        # a stream handled after the baseline opens nothing more that stays
        class Closing(asyncio.Protocol):
            def __init__(self):
                self.lost = loop.create_future()

            def connection_lost(self, exc):
                self.lost.set_result(exc)

        async def one_stream():
            import socket
            a, b = socket.socketpair()
            transport, protocol = await loop.connect_accepted_socket(Closing, a)
            transport.close()
            b.close()
            await asyncio.wait_for(protocol.lost, 10)       # the close is complete
        loop.run_until_complete(one_stream())
        # (compared outside the loop: uvloop holds its signal socket while it runs)
        assert set(os.listdir("/proc/self/fd")) == primed
        assert len(primed - before) <= 1        # at most libuv's spare, once
    finally:
        loop.close()


def test_a_kept_connection_is_named_with_what_holds_it():
    """The stop line says what each kept connection is and what refers to it (the leak's owner)."""
    ClientConnection = type("Connection", (), {"__module__": "cypid.client.connection"})
    Holder = type("Holder", (), {})
    conn = ClientConnection()
    conn.address = "127.0.0.1:5672"
    holder = Holder()
    holder.conn = conn
    report = audit.census(fake_broker([]), "stop", objects=[conn])
    assert report["connections"] == 1
    (text,) = report["kept_connections"]
    assert text.startswith("cypid.client.connection.Connection address=127.0.0.1:5672")
    assert re.search(r"held by: (dict of )?Holder\b", text), text
    assert "kept_connections" not in audit.census(fake_broker([]), "start", objects=[conn])
