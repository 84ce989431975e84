"""The corruption table: each kind of damage, and what recovery must make of it.

A journal of 6 files x 1 page holds enqueues 1..N (about 2.4 files' worth, all synced). Each case
damages it on disk, then opens it read-only (which must not change a byte) and for writing,
and checks the recovered rids and the damage report. After the writing open has repaired the
journal, a new record goes in and a second open reports no damage and recovers it too.
"""
import os

import pytest

from cypid.pyx.journal import Journal, JournalCorrupt

PAGE = 65536
HDR = 4096
N = 150
SIZE = 1000


def payload(rid):
    return (rid.to_bytes(4, "little") * (SIZE // 4 + 1))[:SIZE]


@pytest.fixture
def built(tmp_path):
    d = tmp_path / "q"
    with Journal(d, 6, 1, name="dmg") as j:
        for rid in range(1, N + 1):
            j.append_enqueue(rid, payload(rid))
    with Journal(d, readonly=True, keep_records=True) as j:
        recs = list(j.scanned)
    assert [r.rid for r in recs] == list(range(1, N + 1))
    return d, recs


def fpath(d, i):
    return os.path.join(d, "journal-%04d.cjf" % i)


def patch(path, offset, data):
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(data)


def first_in_file(recs, name):
    return next(r for r in recs if r.file.endswith(name))


def last_rec_in_file(recs, name):
    return [r for r in recs if r.file.endswith(name)][-1]


def records_before(recs, rid):
    return [r.rid for r in recs if r.rid < rid]


# -- the damage functions: (d, recs) -> expected recovered rids ---------------------------------

def truncated_file(d, recs):
    victim = first_in_file(recs, "0002.cjf")
    k = recs[recs.index(victim) + 3]                 # cut inside the 4th record of file 2
    os.truncate(k.file, k.offset + 100)
    return records_before(recs, k.rid), "truncated"


def torn_last_record(d, recs):
    last = recs[-1]
    patch(last.file, last.offset + 32 + last.size - 16, b"\0" * 16)
    return records_before(recs, last.rid), "checksum"


def zeroed_middle(d, recs):
    r = first_in_file(recs, "0001.cjf")
    k = recs[recs.index(r) + 5]
    patch(k.file, k.offset, b"\0" * 4096)            # a page of records gone mid-file
    return records_before(recs, k.rid), "lost"


def bad_checksum(d, recs):
    k = recs[60]
    patch(k.file, k.offset + 32 + 500, b"\xff")
    return records_before(recs, k.rid), "checksum"


def bad_record_length(d, recs):
    k = recs[40]
    patch(k.file, k.offset + 24, (10 ** 9).to_bytes(4, "little"))
    return records_before(recs, k.rid), "bad record header"


def missing_middle_file(d, recs):
    os.unlink(fpath(d, 2))
    cut = next(r for r in recs if r.file.endswith("0001.cjf") and r.offset + 32 + r.size > HDR + PAGE)
    return records_before(recs, cut.rid), "missing"


def missing_head_file(d, recs):
    os.unlink(fpath(d, 0))
    first = first_in_file(recs, "0001.cjf")
    return [r.rid for r in recs if r.rid >= first.rid], "missing"


def torn_file_header(d, recs):
    patch(fpath(d, 2), 30, b"\x77\x77")              # inside the crc-covered header, magic intact
    cut = next(r for r in recs if r.file.endswith("0001.cjf") and r.offset + 32 + r.size > HDR + PAGE)
    return records_before(recs, cut.rid), "header checksum"


def both_checkpoints_bad(d, recs):
    patch(fpath(d, 0), 512, b"\0" * 32)
    patch(fpath(d, 0), 1024, b"\0" * 32)
    return list(range(1, N + 1)), "checkpoint"


def garbage_after_end(d, recs):
    last = recs[-1]
    end = last.offset + ((32 + last.size + 31) // 32) * 32
    patch(last.file, end, os.urandom(3000).replace(b"cJ", b"xx"))
    return list(range(1, N + 1)), None


def stale_record_after_end(d, recs):
    """A valid old record (lower seq) right after the end: the normal end of a lap, not damage."""
    last = recs[-1]
    end = last.offset + ((32 + last.size + 31) // 32) * 32
    with open(recs[0].file, "rb") as f:
        f.seek(recs[0].offset)
        old = f.read(32 + SIZE)
    patch(last.file, end, old)
    return list(range(1, N + 1)), None


def bad_file_magic(d, recs):
    patch(fpath(d, 1), 0, b"NOTCYPID")
    return JournalCorrupt, "magic"


def bad_file_version(d, recs):
    patch(fpath(d, 3), 8, (99).to_bytes(2, "little"))
    return JournalCorrupt, "version"


def empty_file(d, recs):
    """A file with no header (the writer was making it): unused, the others' records all kept."""
    os.truncate(fpath(d, 3), 0)
    return list(range(1, N + 1)), "no header"


def _clear_tail_of_file_1(recs):
    """Zero file 1 from one of its last records on (as if that batch's data was never written)."""
    r = [x for x in recs if x.file.endswith("0001.cjf")][-3]
    patch(r.file, r.offset, b"\0" * (HDR + PAGE - r.offset))
    return r


def entered_file_unwritten(d, recs):
    """A kill between the write of a new file's header and the records entering it (the batch
    writes the header first): the file holds no newer record, which is the end, not damage."""
    r = _clear_tail_of_file_1(recs)
    patch(fpath(d, 2), HDR, b"\0" * PAGE)
    return records_before(recs, r.rid), None


def newer_records_past_a_gap(d, recs):
    """File 1's tail is gone but file 2 holds newer valid records: damage, reported."""
    r = _clear_tail_of_file_1(recs)
    return records_before(recs, r.rid), "after the stop point"


CASES = [truncated_file, torn_last_record, zeroed_middle, bad_checksum, bad_record_length,
         missing_middle_file, missing_head_file, torn_file_header, both_checkpoints_bad,
         garbage_after_end, stale_record_after_end, bad_file_magic, bad_file_version, empty_file,
         entered_file_unwritten, newer_records_past_a_gap]


def snapshot(d):
    return {n: open(os.path.join(d, n), "rb").read() for n in sorted(os.listdir(d))}


@pytest.mark.parametrize("damage", CASES, ids=lambda f: f.__name__)
def test_damage_table(built, damage):
    d, recs = built
    expected, reason = damage(d, recs)
    if expected is JournalCorrupt:
        for ro in (True, False):
            with pytest.raises(JournalCorrupt) as info:
                Journal(d, readonly=ro)
            assert reason in str(info.value)
        return
    before = snapshot(d)
    with Journal(d, readonly=True) as j:
        assert [r.rid for r in j.recovered] == expected
    assert snapshot(d) == before                     # read-only means read-only
    with Journal(d) as j:
        assert [r.rid for r in j.recovered] == expected
        assert all(r.data == payload(r.rid) for r in j.recovered)
        if reason is None:
            assert j.damage == []
        else:
            assert j.damage, "damage should be reported"
            assert any(reason in x.reason for x in j.damage), j.damage
            for x in j.damage:
                assert x.file.startswith(str(d)) and x.offset >= 0
        j.append_enqueue(1000, payload(1000))
    with Journal(d) as j:
        assert [r.rid for r in j.recovered] == expected + [1000]
        assert j.damage == []


def test_random_byte_flips_never_crash(built):
    """Flip random bytes anywhere: recovery returns a prefix of the records or JournalCorrupt,
    never anything else."""
    import random
    d, recs = built
    rnd = random.Random(7)
    pristine = snapshot(d)
    for _ in range(40):
        for n, data in pristine.items():
            open(os.path.join(d, n), "wb").write(data)
        for _ in range(rnd.randint(1, 5)):
            i = rnd.randrange(6)
            size = os.path.getsize(fpath(d, i))
            patch(fpath(d, i), rnd.randrange(size), bytes([rnd.randrange(256)]))
        try:
            with Journal(d, readonly=True) as j:
                got = [r.rid for r in j.recovered]
        except JournalCorrupt:
            continue
        assert got == list(range(1, len(got) + 1)) or got == sorted(got)
