"""qpid-journal (tools/journal_tool.py): what it prints, its exit status, and that it only reads."""
import os

from cypid.pyx.journal import Journal
from cypid.tools import journal_tool


def make(d, name="orders"):
    with Journal(d, 4, 1, name=name) as j:
        for rid in range(1, 40):
            j.append_enqueue(rid, b"msg-%d" % rid * 100)
            if rid > 2:
                j.append_dequeue(rid - 1)
        j.append_update(1, 3)
        j.append_enqueue(500, b"in-doubt", xid=b"\x01\x02")


def test_prints_files_records_live_and_no_damage(tmp_path, capsys):
    make(tmp_path / "q")
    before = {n: (tmp_path / "q" / n).read_bytes() for n in os.listdir(tmp_path / "q")}
    assert journal_tool.main(["--show-recs", "--show-data", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "queue 'orders': 4 files x 1 pages of 64 KiB" in out
    assert "journal-0000.cjf" in out and "Records (in recovery order)" in out
    assert "Live messages: 2" in out and "rid 1 " in out and "delivery-count 3" in out
    assert "msg-1msg-1" in out
    assert "In-doubt transactions: 1" in out and "xid 0102: enqueue 500" in out
    assert "No damage." in out
    assert {n: (tmp_path / "q" / n).read_bytes() for n in os.listdir(tmp_path / "q")} == before


def test_reports_damage_with_offset(tmp_path, capsys):
    make(tmp_path / "q")
    with Journal(tmp_path / "q", readonly=True, keep_records=True) as j:
        victim = j.scanned[10]
    with open(victim.file, "r+b") as f:
        f.seek(victim.offset + 40)
        f.write(b"\xee")
    assert journal_tool.main([str(tmp_path / "q")]) == 1
    out = capsys.readouterr().out
    assert "DAMAGE: 1" in out
    assert "offset %d: record seq %d checksum mismatch" % (victim.offset, victim.seq) in out


def test_several_journals_and_unreadable(tmp_path, capsys):
    make(tmp_path / "a", "a")
    make(tmp_path / "b", "b")
    with open(tmp_path / "b" / "journal-0001.cjf", "r+b") as f:
        f.write(b"garbage!")
    assert journal_tool.main(["--limit", "1", str(tmp_path)]) == 2
    out = capsys.readouterr().out
    assert "queue 'a'" in out and "UNREADABLE" in out and "bad file header magic" in out


def test_not_a_journal(tmp_path, capsys):
    assert journal_tool.main([str(tmp_path)]) == 2
    assert "no journal files" in capsys.readouterr().err
