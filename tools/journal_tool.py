"""qpid-journal: print a cypid journal's files, records, live messages and damage.

The counterpart of qpidd's qpid-qls-analyze for cypid's journal format (docs/JOURNAL-FORMAT.md).
It only reads: the journal is opened read-only and nothing on disk changes.

    qpid-journal [--show-recs] [--show-data] [--limit N] [--data-dir DIR] DIR|QUEUE

DIR is one queue's journal directory, or a directory above several (each one found is shown);
QUEUE is a durable queue's name, whose journal is looked for under --data-dir (default ``data``,
the broker's default data directory; give the broker's --store-dir if it has one).
Exit status: 0 all readable and undamaged, 1 damage found, 2 a journal could not be read.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

from cypid.pyx import journal as jm

KIB = 1024


def _size(n: int) -> str:
    for unit, div in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= div:
            return "%.1f %s" % (n / div, unit)
    return "%d B" % n


def _preview(data: bytes, width: int = 48) -> str:
    text = "".join(chr(b) if 32 <= b < 127 else "." for b in data[:width])
    return text + ("..." if len(data) > width else "")


def find_journals(top: str) -> list[str]:
    """Directories at or under top that hold journal files."""
    found = []
    for root, dirs, files in os.walk(top):
        if any(f.startswith("journal-") and f.endswith(".cjf") for f in files):
            found.append(root)
        dirs.sort()
    return found


def journal_name(directory: str) -> str | None:
    """The name of the queue whose journal ``directory`` is (None if it cannot be read)."""
    try:
        with jm.Journal(directory, readonly=True, load_data=False, keep_records=False) as j:
            return j.name
    except jm.JournalError:
        return None


def show(directory: str, args, out) -> int:
    """Print one journal; return 0 (clean), 1 (damage) or 2 (unreadable)."""
    p = lambda *a: print(*a, file=out)  # noqa: E731
    p("Journal %s" % directory)
    try:
        j = jm.Journal(directory, readonly=True, load_data=args.show_data, keep_records=args.show_recs)
    except jm.JournalError as e:
        p("  UNREADABLE: %s" % e)
        return 2
    with j:
        st = j.stats()
        p("  queue %r: %d files x %d pages of 64 KiB to start, %d files now, grows to %s; format version %d"
          % (j.name, j.file_count, j.file_size, st["files"], _size(j.capacity), jm.FORMAT_VERSION))
        p("  live: %d records, %s; next seq %d; files in use %d (head file %d, writing file %d at %d)"
          % (st["live_records"], _size(st["live_bytes"]), st["next_seq"], st["files_in_use"],
             st["head"], st["writer"], st["write_offset"]))
        p("")
        p("  %-4s %-8s %-10s %-12s %-7s %-10s %-6s %s" % ("file", "number", "fro", "first seq", "live",
                                                          "live bytes", "in use", "entered"))
        for f in j.file_info():
            try:
                h = jm.read_file_header(f["path"])
                first = h["first_seq"]
                entered = (time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(h["entered_ns"] / 1e9))
                           if h["entered_ns"] and f["number"] else "-")
                if not h["valid"]:
                    entered = "HEADER CHECKSUM MISMATCH"
            except OSError as e:
                first, entered = "-", "unreadable: %s" % e
            p("  %-4d %-8d %-10d %-12s %-7d %-10d %-6s %s" % (f["index"], f["number"], f["fro"], first,
                                                              f["live_records"], f["live_bytes"],
                                                              "yes" if f["in_use"] else "no", entered))
        if args.show_recs:
            p("")
            p("  Records (in recovery order):")
            p("  %-16s %-4s %-12s %-18s %-9s %-8s %-6s %s" % ("seq", "type", "rid", "file", "offset", "size",
                                                             "flags", "xid"))
            for n, r in enumerate(j.scanned):
                if args.limit and n >= args.limit:
                    p("  ... %d more" % (len(j.scanned) - n))
                    break
                p("  %-16d %-4s %-12d %-18s %-9d %-8d 0x%04x %s" % (
                    r.seq, r.type, r.rid, os.path.basename(r.file), r.offset, r.size, r.flags,
                    r.xid.hex() if r.xid else "-"))
        p("")
        p("  Live messages: %d" % len(j.recovered))
        for n, r in enumerate(j.recovered):
            if args.limit and n >= args.limit:
                p("  ... %d more" % (len(j.recovered) - n))
                break
            line = "    rid %-12d seq %-16d delivery-count %-3d flags 0x%02x" % (
                r.rid, r.seq, r.delivery_count, r.flags)
            if r.data is not None:
                line += " %6d bytes  %s" % (len(r.data), _preview(r.data))
            p(line)
        if j.in_doubt:
            p("  In-doubt transactions: %d" % len(j.in_doubt))
            for xid, ops in j.in_doubt.items():
                p("    xid %s: %s" % (xid.hex(), ", ".join("%s %d" % op for op in ops)))
        p("  Recovery stops at %s offset %d: %s" % (os.path.basename(j.end.file), j.end.offset, j.end.reason))
        if j.damage:
            p("  DAMAGE: %d" % len(j.damage))
            for d in j.damage:
                p("    %s offset %d: %s" % (d.file, d.offset, d.reason))
            return 1
        p("  No damage.")
        return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="qpid-journal",
        description="Print a cypid journal's files, records, live messages and any damage "
                    "(read-only; like qpidd's qpid-qls-analyze).")
    parser.add_argument("dir", metavar="DIR|QUEUE",
                        help="a queue's journal directory, a directory above several, or a durable queue's name")
    parser.add_argument("--data-dir", "--store-dir", dest="data_dir", default="data", metavar="DIR",
                        help="where to look for QUEUE's journal: the broker's data or store directory (data)")
    parser.add_argument("--show-recs", "--show-all-recs", dest="show_recs", action="store_true",
                        help="list every record recovery read, in order")
    parser.add_argument("--show-data", action="store_true", help="show each live message's size and start")
    parser.add_argument("--limit", type=int, default=0, metavar="N",
                        help="show at most N records / messages per list (0: all)")
    args = parser.parse_args(argv)
    if not os.path.isdir(args.dir):
        if not os.path.isdir(args.data_dir):
            print("qpid-journal: %s is not a directory, nor a queue with a journal under %s (no such "
                  "directory; give --data-dir)" % (args.dir, args.data_dir), file=sys.stderr)
            return 2
        journals = [d for d in find_journals(args.data_dir) if journal_name(d) == args.dir]
        if not journals:
            print("qpid-journal: %s is not a directory, and no journal under %s belongs to a queue of "
                  "that name" % (args.dir, args.data_dir), file=sys.stderr)
            return 2
    else:
        journals = find_journals(args.dir)
    if not journals:
        print("qpid-journal: no journal files (journal-NNNN.cjf) under %s" % args.dir, file=sys.stderr)
        return 2
    status = 0
    for n, d in enumerate(journals):
        if n:
            print()
        status = max(status, show(d, args, sys.stdout))
    return status


if __name__ == "__main__":
    sys.exit(main())
