"""The durable journal alone (pyx/journal.pyx, format in docs/JOURNAL-FORMAT.md)."""
import os
import threading

import pytest

from cypid.pyx import journal as jm
from cypid.pyx.journal import Journal, JournalCorrupt, JournalError, JournalFull, JournalWriter

KIB = 1024
PAGE = 64 * KIB


def payload(rid: int, size: int) -> bytes:
    """Deterministic message bytes for a rid (so recovery can be checked byte for byte)."""
    unit = rid.to_bytes(8, "little") + b"cypid-jr"
    return (unit * (size // len(unit) + 1))[:size]


def live_rids(j):
    return [r.rid for r in j.live_records(load_data=False)]


@pytest.fixture
def jdir(tmp_path):
    return tmp_path / "q1"


def test_crc32c_known_vector():
    assert jm.crc32c_bytes(b"123456789") == 0xE3069283
    assert jm.crc32c_bytes(b"56789", jm.crc32c_bytes(b"1234")) == 0xE3069283
    assert jm.crc32c_bytes(b"") == 0


def fixed(n, pages):
    """max_size for a journal that may never grow past n files of ``pages`` pages."""
    return n * (4096 + pages * PAGE)


def test_geometry_4x8(jdir):
    with Journal(jdir, 4, 8, max_size=fixed(6, 8)) as j:
        assert (j.file_count, j.file_size, j.max_files, j.capacity) == (4, 8, 6, 6 * 8 * PAGE)
        assert os.listdir(jdir) == ["journal-0000.cjf"]  # the others: by the writer, ahead of need
        assert os.path.getsize(jdir / "journal-0000.cjf") == 4096
    names = sorted(os.listdir(jdir))
    assert names == ["journal-0000.cjf", "journal-0001.cjf", "journal-0002.cjf", "journal-0003.cjf"]
    for n in names:
        st = os.stat(jdir / n)
        assert st.st_size == 8 * PAGE + 4096           # 512 KiB + one header page
        assert st.st_blocks * 512 >= st.st_size        # preallocated, not sparse


def test_defaults_are_qpidd_8_by_24(jdir):
    with Journal(jdir) as j:
        assert (j.file_count, j.file_size) == (8, 24)
    assert os.path.getsize(jdir / "journal-0007.cjf") == 24 * PAGE + 4096


def test_existing_geometry_wins(jdir):
    Journal(jdir, 4, 8).close()
    with Journal(jdir, 8, 24) as j:
        assert (j.file_count, j.file_size) == (4, 8)


def test_bad_geometry_arguments(jdir):
    for count, size, word in ((2, 8, "qpid.file_count must be 3..64"), (65, 8, "3..64"),
                              (65535, 8, "3..64"), (4, 0, "qpid.file_size must be 1..32767"),
                              (4, 32768, "1..32767"), (4, 1 << 31, "1..32767")):
        with pytest.raises((ValueError, OverflowError)) as info:
            Journal(jdir, count, size)
        if isinstance(info.value, ValueError) and not isinstance(info.value, OverflowError):
            assert word in str(info.value)
    assert not jdir.exists()


def test_creating_a_journal_makes_one_header_page(jdir):
    """Creating a journal returns at once: no preallocation of the geometry on the caller's thread,
    whatever the geometry (the writer thread makes the files)."""
    import time
    t0 = time.monotonic()
    with Journal(jdir, 64, 32767, max_size=0) as j:
        assert os.listdir(jdir) == ["journal-0000.cjf"]
        assert os.stat(jdir / "journal-0000.cjf").st_blocks * 512 <= 8192
        j.close(sync=False)
    assert time.monotonic() - t0 < 5


def test_append_dequeue_recover(jdir):
    with Journal(jdir, 4, 8, name="orders") as j:
        seqs = [j.append_enqueue(rid, payload(rid, 100 * rid)) for rid in range(1, 11)]
        assert seqs == sorted(seqs) and len(set(seqs)) == 10
        j.append_dequeue(3)
        j.append_dequeue(7)
        assert j.read(5) == payload(5, 500)
        with pytest.raises(KeyError):
            j.read(3)
        assert j.sync() >= seqs[-1]
    with Journal(jdir, 4, 8) as j:
        assert [r.rid for r in j.recovered] == [1, 2, 4, 5, 6, 8, 9, 10]
        for r in j.recovered:
            assert r.data == payload(r.rid, 100 * r.rid)
            assert r.delivery_count == 0 and r.xid is None
        assert j.damage == []
        assert "end of the written data" in j.end.reason
        # the seq continues above everything seen (with the reopen gap)
        assert j.append_enqueue(11, b"x") > seqs[-1]


def test_recover_without_data_then_read(jdir):
    with Journal(jdir, 4, 8) as j:
        for rid in range(1, 6):
            j.append_enqueue(rid, payload(rid, 3000))
    with Journal(jdir, 4, 8, load_data=False) as j:
        assert [r.data for r in j.recovered] == [None] * 5
        assert j.read(4) == payload(4, 3000)
        assert [r.rid for r in j.live_records(from_seq=j.recovered[2].seq)] == [3, 4, 5]
        assert j.get(2).data == payload(2, 3000)
        assert j.get(99) is None and 2 in j and 99 not in j and len(j) == 5


def test_flags_delivery_count_update(jdir):
    with Journal(jdir, 4, 8) as j:
        j.append_enqueue(1, b"a", flags=0x81)
        j.append_enqueue(2, b"b")
        j.append_update(1, 3)
        j.append_update(1, 4)
        with pytest.raises(KeyError):
            j.append_update(9, 1)
    with Journal(jdir, 4, 8) as j:
        r1, r2 = j.recovered
        assert (r1.rid, r1.flags, r1.delivery_count) == (1, 0x81, 4)
        assert (r2.rid, r2.flags, r2.delivery_count) == (2, 0, 0)


def test_rid_rules(jdir):
    with Journal(jdir, 4, 8) as j:
        j.append_enqueue(1, b"a")
        with pytest.raises(ValueError):
            j.append_enqueue(1, b"again")
        with pytest.raises(KeyError):
            j.append_dequeue(2)
        j.append_dequeue(1)
        with pytest.raises(KeyError):
            j.append_dequeue(1)
        j.append_enqueue(1, b"reused")               # a rid may come back once dequeued
    with Journal(jdir, 4, 8) as j:
        assert [(r.rid, r.data) for r in j.recovered] == [(1, b"reused")]


def test_buffer_types_and_empty_message(jdir):
    with Journal(jdir, 4, 8) as j:
        j.append_enqueue(1, bytearray(b"ba"))
        j.append_enqueue(2, memoryview(b"xmvx")[1:3])
        j.append_enqueue(3, b"")
    with Journal(jdir, 4, 8) as j:
        assert [r.data for r in j.recovered] == [b"ba", b"mv", b""]


def test_records_span_files(jdir):
    """A record bigger than a file continues in the next one(s)."""
    big = payload(2, 3 * PAGE + 123)                # > one 1-page file
    with Journal(jdir, 6, 1) as j:
        j.append_enqueue(1, payload(1, 50_000))
        j.append_enqueue(2, big)
        j.append_enqueue(3, payload(3, 10))
        assert j.read(2) == big
    with Journal(jdir, 6, 1) as j:
        assert [r.rid for r in j.recovered] == [1, 2, 3]
        assert j.recovered[1].data == big
        assert j.damage == []


def test_circular_reuse_many_cycles(jdir):
    """Many laps round a small ring: files are reused, recovery sees exactly the live window."""
    window = 20
    with Journal(jdir, 4, 1) as j:
        for rid in range(1, 5001):
            j.append_enqueue(rid, payload(rid, 700))
            if rid > window:
                j.append_dequeue(rid - window)
            if rid % 97 == 0:
                j.sync()
        st = j.stats()
        assert st["live_records"] == window
        laps = (5000 * 768) // (4 * PAGE)
        assert laps > 10 and st["files"] <= 6          # reused, not grown
    with Journal(jdir, 4, 1) as j:
        assert [r.rid for r in j.recovered] == list(range(5001 - window, 5001))
        assert all(r.data == payload(r.rid, 700) for r in j.recovered)
        assert j.damage == []
        # and it keeps going after a reopen
        for rid in range(5001, 6001):
            j.append_enqueue(rid, payload(rid, 700))
            j.append_dequeue(rid - window)
    with Journal(jdir, 4, 1) as j:
        assert [r.rid for r in j.recovered] == list(range(6001 - window, 6001))


def test_enqcapthresh_old_live_records_never_block(jdir):
    """qpidd's ENQCAPTHRESH problem: a few old unconsumed messages while thousands cycle.
    The journal rewrites the old ones forward and never refuses."""
    with Journal(jdir, 4, 2) as j:                 # 4 x 128 KiB
        for rid in (1, 2, 3):
            j.append_enqueue(rid, payload(rid, 2000))
        for rid in range(100, 20100):              # ~80 laps of the ring
            j.append_enqueue(rid, payload(rid, 1000))
            j.append_dequeue(rid)
            if rid % 500 == 0:
                j.sync()
        st = j.stats()
        assert st["compactions"] > 0 and st["moved_records"] >= 3
        assert [r.rid for r in j.live_records()] == [1, 2, 3]
        assert j.read(2) == payload(2, 2000)
    with Journal(jdir, 4, 2) as j:
        assert [(r.rid, r.data) for r in j.recovered] == [(rid, payload(rid, 2000)) for rid in (1, 2, 3)]
        assert j.damage == []


def test_moved_records_keep_queue_order_and_delivery_count(jdir):
    with Journal(jdir, 4, 1) as j:
        j.append_enqueue(1, payload(1, 300))
        j.append_update(1, 5)
        j.append_enqueue(2, payload(2, 300))
        for rid in range(10, 2000):
            j.append_enqueue(rid, payload(rid, 900))
            j.append_dequeue(rid)
        j.append_enqueue(3, payload(3, 300))
        assert j.stats()["moved_records"] > 0
    with Journal(jdir, 4, 1) as j:
        assert [(r.rid, r.delivery_count) for r in j.recovered] == [(1, 5), (2, 0), (3, 0)]


def test_full_journal_refuses_then_accepts_after_dequeues(jdir):
    with Journal(jdir, 4, 1, name="slowq", max_size=fixed(4, 1)) as j:
        rid = 0
        with pytest.raises(JournalFull) as info:
            while True:
                rid += 1
                j.append_enqueue(rid, payload(rid, 1000))
        err = info.value
        assert isinstance(err, JournalError) and isinstance(err, OSError)
        assert "slowq" in str(err) and "at its limit: 4 files of 1 x 64 KiB" in str(err) and str(jdir) in str(err)
        assert "--journal-max-size" in str(err)
        accepted = rid - 1
        assert accepted * 1056 >= 2 * PAGE * 0.9     # about (file_count - 2) files of records
        # refusing changed nothing; dequeues still work when full
        assert len(j) == accepted
        with pytest.raises(JournalFull):
            j.append_enqueue(rid, payload(rid, 1000))
        for r in range(1, accepted // 2):
            j.append_dequeue(r)
        j.append_update(accepted, 2)
        # space is back
        for r in range(rid, rid + accepted // 3):
            j.append_enqueue(r, payload(r, 1000))
        expected = live_rids(j)
    with Journal(jdir, 4, 1) as j:
        assert [r.rid for r in j.recovered] == expected
        assert all(r.data == payload(r.rid, 1000) for r in j.recovered)


def test_record_larger_than_journal_is_refused(jdir):
    with Journal(jdir, 4, 1, max_size=fixed(4, 1)) as j:
        j.append_enqueue(1, b"small")
        with pytest.raises(JournalFull):
            j.append_enqueue(2, bytes(3 * PAGE))
        assert live_rids(j) == [1]
        j.append_enqueue(3, b"fine")
    with Journal(jdir, 4, 1) as j:
        assert [r.rid for r in j.recovered] == [1, 3]


def test_transactions_commit_abort_in_doubt(jdir):
    with Journal(jdir, 4, 8) as j:
        j.append_enqueue(1, b"one")
        j.append_enqueue(2, b"two")
        j.append_enqueue(10, b"tx-a", xid=b"A")
        j.append_dequeue(1, xid=b"A")
        j.append_enqueue(20, b"tx-b", xid=b"B")
        j.append_dequeue(2, xid=b"B")
        j.append_enqueue(30, b"tx-c", xid=b"C")
        assert live_rids(j) == [1, 2]                # pending enqueues are not live yet
        with pytest.raises(KeyError):
            j.append_dequeue(1)                      # locked by A
        j.append_commit(b"A")
        j.append_abort(b"B")
        assert live_rids(j) == [2, 10]
    with Journal(jdir, 4, 8) as j:
        assert [(r.rid, r.data) for r in j.recovered] == [(2, b"two"), (10, b"tx-a")]
        assert j.in_doubt == {b"C": [("enqueue", 30)]}
        j.append_commit(b"C")                        # the broker resolves it
        assert j.in_doubt == {}
        assert live_rids(j) == [2, 10, 30]
    with Journal(jdir, 4, 8) as j:
        assert [r.rid for r in j.recovered] == [2, 10, 30]


def test_pending_transaction_survives_compaction(jdir):
    """An open transaction's records pin their file: compaction copies them forward."""
    with Journal(jdir, 4, 1) as j:
        j.append_enqueue(1, b"keep")
        j.append_enqueue(5, b"pending", xid=b"X")
        j.append_dequeue(1, xid=b"X")
        for rid in range(100, 1500):
            j.append_enqueue(rid, payload(rid, 900))
            j.append_dequeue(rid)
        assert j.stats()["moved_records"] >= 3
        j.append_commit(b"X")
        assert live_rids(j) == [5]
    with Journal(jdir, 4, 1) as j:
        assert [(r.rid, r.data) for r in j.recovered] == [(5, b"pending")]


def test_readonly_open_changes_nothing(jdir):
    with Journal(jdir, 4, 8) as j:
        j.append_enqueue(1, b"x")
    before = {n: (jdir / n).read_bytes() for n in os.listdir(jdir)}
    with Journal(jdir, readonly=True, keep_records=True) as j:
        assert [r.rid for r in j.recovered] == [1]
        assert [r.type for r in j.scanned] == ["e"]
        with pytest.raises(JournalError):
            j.append_enqueue(2, b"y")
    assert {n: (jdir / n).read_bytes() for n in os.listdir(jdir)} == before
    with pytest.raises(JournalError):
        Journal(jdir.parent / "nothing-here", readonly=True)


def test_closed_journal_refuses(jdir):
    j = Journal(jdir, 4, 8)
    j.append_enqueue(1, b"x")
    j.close()
    j.close()
    with pytest.raises(JournalError):
        j.append_enqueue(2, b"y")
    with pytest.raises(JournalError):
        j.read(1)


def test_remove_deletes_files(jdir):
    j = Journal(jdir, 4, 8)
    j.remove()
    assert not jdir.exists()


def test_writer_group_commit_and_callbacks(jdir, tmp_path):
    """flush_async hands the sync to the writer thread; callbacks get the synced seq, many
    requests share syncs, and the caller's thread never waits."""
    writer = JournalWriter()
    try:
        j1 = Journal(jdir, 4, 8, writer=writer)
        j2 = Journal(tmp_path / "q2", 4, 8, writer=writer)
        done = []
        cond = threading.Condition()

        def cb(seq, err):
            with cond:
                done.append((threading.current_thread().name, seq, err))
                cond.notify_all()

        last = 0
        for rid in range(1, 201):
            last = j1.append_enqueue(rid, payload(rid, 1024))
            j2.append_enqueue(rid, b"y")
            if rid % 20 == 0:
                j1.flush_async(cb)
                j2.flush_async()
        with cond:
            assert cond.wait_for(lambda: len(done) == 10 and done[-1][1] >= last, timeout=10)
        assert all(name == "journal-writer" and err is None for name, _, err in done)
        assert [s for _, s, _ in done] == sorted(s for _, s, _ in done)
        assert j1.synced_seq >= last
        assert writer.drain(timeout=10)
        assert j1.stats()["syncs"] <= 11               # one per request at most, usually fewer
        j1.close()
        j2.close()
    finally:
        writer.close(timeout=10)
    with pytest.raises(JournalError):
        writer.flush(j1)


def test_writer_reports_errors_to_callback(jdir):
    writer = JournalWriter()
    try:
        j = Journal(jdir, 4, 8, writer=writer)
        j.append_enqueue(1, b"x")
        got = []
        ev = threading.Event()
        j.close()

        class Broken:
            name = "broken"

            def _sync_report(self):
                raise JournalError(5, "boom")
        writer.flush(Broken(), lambda seq, err: (got.append(err), ev.set()))
        assert ev.wait(10)
        assert isinstance(got[0], JournalError)
    finally:
        writer.close(timeout=10)


def test_flush_async_without_writer(jdir):
    with Journal(jdir, 4, 8) as j:
        with pytest.raises(JournalError):
            j.flush_async(lambda s, e: None)


def test_stats_and_file_info(jdir):
    with Journal(jdir, 4, 1) as j:
        for rid in range(1, 200):
            j.append_enqueue(rid, payload(rid, 1000))
            if rid > 5:
                j.append_dequeue(rid - 5)
        st = j.stats()
        assert st["live_records"] == 5 and st["live_bytes"] == 5 * 1056
        info = j.file_info()
        assert len(info) == st["files"] and sum(f["live_records"] for f in info) == 5
        assert sum(f["in_use"] for f in info) == st["files_in_use"]


def test_journal_corrupt_is_a_journal_error():
    assert issubclass(JournalCorrupt, JournalError) and issubclass(JournalFull, JournalError)
    assert issubclass(JournalError, OSError)
