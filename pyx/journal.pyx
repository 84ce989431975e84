# cython: language_level=3
"""cypid.pyx.journal: the durable message journal of one queue.

FORMAT: docs/JOURNAL-FORMAT.md defines every byte the journal writes and reads.
API: the journal section of docs/INTERFACES.md.

Write path: an append builds its record in a WriteBuffer (memory) and gives it its place in the
journal (file, offset, seq); it never touches a file, so the event loop never waits for a disk,
never takes a page fault on a journal file, and never dies of a SIGBUS. The JournalWriter thread
writes the buffered bytes with pwrite, fdatasyncs them and writes the checkpoint, with the GIL
released, creating and preallocating files as it reaches them; then ``callback(synced_seq,
error)`` runs. A write or sync that fails is an error naming the queue and the file: every record
appended since the last good sync is dropped (rewound), the journal refuses appends (``failed``),
and the writer retries every second; the journal resumes once it has cleared what it wrote but
never synced. The journal grows by files as the queue deepens, up to its limit, and gives surplus
files back as it drains.

Threads: appends, reads and compaction run on the caller's thread (the broker's loop). The writer
thread takes a snapshot of what to write while holding the GIL (atomic with respect to an append,
which is pure C with no Python call between its first and last byte), does the I/O without it, and
takes the GIL again to record the result. ``self.lock`` keeps one sync at a time per journal.
"""
import collections
import errno as _errno
import logging
import os
import threading

cimport cython
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, int64_t
from libc.stdlib cimport malloc, free
from libc.string cimport memcpy, memset

from cypid.pyx.journal_format cimport (
    JRNL_HDR_PAGE, JRNL_PAGE, JRNL_REC_HDR, JRNL_REC_VERSION, JRNL_MOVED_EXT, JRNL_F_MOVED,
    JRNL_FH_SIZE, JRNL_CKPT_OFF0, JRNL_CKPT_OFF1, JRNL_CKPT_SIZE,
    st16, st32, st64, ld16, ld32, ld64, align_up, build_file_header, build_ckpt, record_flags,
    JRNL_USER_FLAGS_MAX)
from cypid.pyx.journal_base cimport JournalBase, _Entry, _Txn
from cypid.pyx.journal_io cimport WriteBuffer, IoBatch, OP_WRITE, OP_ZERO

# The Python API, whole, from this one module (store.py, the tool and the tests import it here).
from cypid.pyx.journal_format import (
    FORMAT_VERSION, FILE_MAGIC, CKPT_MAGIC, HEADER_PAGE, PAGE, ALIGN, MAX_NAME, MAX_FILES,
    FILE_PATTERN, FILE_COUNT_RANGE, FILE_SIZE_RANGE, CRC_HARDWARE, JournalError, JournalCorrupt,
    JournalFull, Record, Damage, RawRecord, crc32c_bytes, file_path, read_file_header,
    check_geometry)
from cypid.pyx.journal_recover import SEQ_JUMP, existing_files
from cypid.pyx.journal_writer import JournalWriter, failpoint_sync_copy

log = logging.getLogger("cypid.journal")

DEFAULT_FILE_COUNT = 8
DEFAULT_FILE_SIZE = 24
DEFAULT_MAX_SIZE = 4096 << 20       # --journal-max-size (MiB) default: 4 GiB per queue
DEFAULT_BUFFER_LIMIT = 64 << 20     # appended bytes not yet written, per journal
cdef enum:
    SCAN_CHUNK = 262144             # bytes of a head file read at once when it is compacted
_WHAT = ("write", "create/extend", "sync (fdatasync)", "size check", "checkpoint write")


cdef inline bytes _xid_bytes(xid):
    if xid is None:
        return None
    b = bytes(xid)
    if not 0 < len(b) <= 0xFFFF:
        raise ValueError("xid must be 1..65535 bytes")
    return b


@cython.final
cdef class Journal(JournalRecovery):
    """The journal of one durable queue (see the module docstring and docs/INTERFACES.md).

    ``Journal(directory, file_count=8, file_size=24, *, name=None, writer=None, load_data=True,
    readonly=False, keep_records=False, max_size=DEFAULT_MAX_SIZE, buffer_limit=DEFAULT_BUFFER_LIMIT)``
    opens the journal in ``directory``, creating it if it has no journal files (file 0's header
    now; the writer thread makes the other files). Opening an existing journal recovers it:
    ``recovered``, ``damage``, ``end``, ``in_doubt``. ``max_size``: most bytes of files the journal
    may grow to (0: only the format's 65535 files). Opening and closing do blocking I/O.
    """

    def __init__(self, directory, int file_count=DEFAULT_FILE_COUNT, int file_size=DEFAULT_FILE_SIZE,
                 *, name=None, writer=None, bint load_data=True, bint readonly=False,
                 bint keep_records=False, uint64_t max_size=DEFAULT_MAX_SIZE,
                 uint64_t buffer_limit=DEFAULT_BUFFER_LIMIT):
        check_geometry(file_count, file_size)
        self.directory = os.fspath(directory)
        self.bdir = os.fsencode(self.directory)
        self.name = name
        if name is None:            # an existing journal's own name, else the directory's
            for i, path in sorted(existing_files(self.directory).items()):
                try:
                    h = read_file_header(path)
                except OSError:
                    continue
                if h["valid"] and h["name"]:
                    self.name = h["name"]
                    break
            else:
                self.name = os.path.basename(os.path.normpath(self.directory))
        nb = str(self.name).encode("utf-8")[:MAX_NAME]
        self.cname_len = len(nb)
        memcpy(self.cname, PyBytes_AS_STRING(nb), self.cname_len)
        self.readonly = readonly
        self.writer = writer
        self.max_size = max_size
        self.lock = threading.Lock()
        self.paths = {}
        self.hdr_pending = []
        self.to_delete = []
        self.stale = []
        self.stale_files = []
        if keep_records:
            self.scanned = []
        existing = existing_files(self.directory)
        self.opening = True
        try:
            if not existing:
                if readonly:
                    raise JournalError(_errno.ENOENT, "no journal in %s" % self.directory)
                self._create(file_count, file_size, buffer_limit)
                if writer is not None:
                    try:
                        writer.flush(self, None)    # the writer makes the other files now
                    except JournalError:
                        pass                        # writer closed: the first sync makes them
            else:
                self._open_existing(existing, file_count, file_size, load_data, buffer_limit)
        except BaseException:
            self._close_fds()
            raise
        finally:
            self.opening = False
        self.lrec = self.buf.end

    # -- appending -------------------------------------------------------------------------------

    cdef int _check_writable(self) except -1:
        if self.closed:
            raise JournalError(_errno.EBADF, "journal %s is closed" % self.name)
        if self.readonly:
            raise JournalError(_errno.EROFS, "journal %s is open read-only" % self.name)
        if self.failed:
            raise JournalError(self.failed, "journal of queue %r takes no records until its disk works "
                               "again: %s" % (self.name, self.fail_error.strerror))
        return 0

    cdef int _reusable(self, int i) noexcept:
        """A free file may be written unless recovery could still need it: its number is at or
        above the durable checkpoint's head."""
        return (self.exists[i] and not self.inuse[i] and
                (self.fnum[i] == 0 or self.fnum[i] < self.ckpt_head))

    cdef int _free_files(self) noexcept:
        cdef int i, n = 0
        for i in range(self.nfiles):
            if self._reusable(i):
                n += 1
        return n

    def _limit_message(self, uint64_t alen):
        return ("Journal of queue %r is at its limit: %d files of %d x 64 KiB (%d MiB, --journal-max-size "
                "or qpid.journal_max_size) in %s hold %d bytes of live records; a record of %d bytes does "
                "not fit" % (self.name, self.max_files, self.file_size,
                             (self.max_files * (JRNL_HDR_PAGE + self.dsz)) >> 20, self.directory,
                             self.total_live, alen))

    cdef int _make_room(self, uint64_t alen, bint enq) except -1:
        cdef uint64_t rest = self.dsz - self.woff
        cdef int64_t need, avail
        cdef int h, rounds = 0
        cdef bint stalled = False
        if enq and self.total_live + alen > <uint64_t>(self.max_files - 2) * self.dsz:
            raise JournalFull(_errno.ENOSPC, self._limit_message(alen))
        if self.buf.end - self.buf.base + alen > self.buf.limit:
            raise JournalFull(_errno.ENOBUFS, "journal of queue %r: %d bytes appended are not yet written "
                              "to %s (the disk is slow or stalled; at most %d are kept in memory): refused"
                              % (self.name, self.buf.end - self.buf.base, self.directory, self.buf.limit))
        if alen <= rest:
            return 0
        need = <int64_t>((alen - rest + self.dsz - 1) // self.dsz) + (1 if enq else 0)
        if not self.compacting:
            # Empty heads go. Heads holding little (a few unconsumed messages) are copied forward
            # and their files come back after the next sync, rather than the journal growing
            # around them; while free files remain, nothing is copied (a queue a burst made a
            # few files deep would otherwise have its tail read back and rewritten at every file).
            while rounds < 4 and self.used[0] != self.w:
                h = self.used[0]
                if self.live_count[h] and (self.live_bytes[h] * 4 > self.dsz or self._free_files() >= need):
                    break
                if self.lstart[h] + self.dsz > self.lsynced:
                    if self.writer is not None or stalled:
                        break
                    self._stall()
                    stalled = True
                    continue
                self._release_head()
                rounds += 1
        avail = self._free_files() + (self.max_files - self.n_exist)
        if need > avail and self.writer is None and not self.compacting:
            self._stall()                       # no writer thread: the released files come back now
            avail = self._free_files() + (self.max_files - self.n_exist)
        if need > avail:
            raise JournalFull(_errno.ENOSPC, self._limit_message(alen) if avail <= 0 or enq else
                              "journal of queue %r: files being released are not yet free (a sync is "
                              "under way): refused" % self.name)
        return 0

    def _stall(self):
        """A journal without a writer thread (tools, tests) syncs itself when it needs room."""
        self.n_stalls += 1
        self.sync()

    cdef int _release_head(self) except -1:
        """Copy the head file's pinning records forward (MOVED), then let the file go. Only a head
        whose bytes are all synced is released, so a copy's original is durable (a rewind after a
        failed sync puts the entry back there). The file is read in chunks of SCAN_CHUNK bytes (not
        one pread per record: a head released at every file change is read once, in a few calls)."""
        cdef int h = self.used[0]
        cdef uint64_t off, size, alen, xl
        cdef char p[JRNL_REC_HDR]
        cdef _Entry e
        cdef char ext[JRNL_MOVED_EXT]
        cdef uint32_t nfidx
        cdef uint64_t noff, seq
        cdef char* chunk = NULL
        cdef const char* dp
        cdef uint64_t clo = 0, clen = 0
        if self.live_count[h]:
            self.compacting = True
            chunk = <char*>malloc(SCAN_CHUNK)
            if chunk == NULL:
                raise MemoryError()
            try:
                off = self.fro[h]
                while off + JRNL_REC_HDR <= self.dsz and self.live_count[h]:
                    if off < clo or off + JRNL_REC_HDR > clo + clen:
                        clen = min(<uint64_t>SCAN_CHUNK, self.dsz - off)
                        self._file_read(h, off, chunk, clen)
                        clo = off
                    memcpy(p, chunk + (off - clo), JRNL_REC_HDR)
                    if p[0] != b'c' or p[1] != b'J':
                        break
                    size = ld32(p + 24)
                    xl = ld16(p + 30)
                    alen = align_up(JRNL_REC_HDR + size)
                    rid = ld64(p + 16)
                    if p[2] == b'e':
                        e = self.live.get(rid)
                        if e is not None and e.fidx == h and e.off == off:
                            if off + e.doff + e.dlen <= clo + clen:   # in the chunk read
                                dp = chunk + (off - clo) + e.doff
                            else:
                                data = self._gather(h, off, e.doff, e.dlen)
                                dp = PyBytes_AS_STRING(data)
                            st64(ext, e.seq)
                            st32(ext + 8, e.dcount)
                            st32(ext + 12, 0)
                            seq = self._write(b'e', e.rid, JRNL_F_MOVED | record_flags(e.uflags), e.xid, ext,
                                              JRNL_MOVED_EXT, dp, e.dlen, False,
                                              &nfidx, &noff)
                            self._pin(h, e.alen, -1)
                            e.prev_rseq = e.rseq
                            e.prev_fidx = e.fidx
                            e.prev_off = e.off
                            e.prev_doff = e.doff
                            e.prev_alen = e.alen
                            e.rseq = seq
                            e.fidx = nfidx
                            e.off = noff
                            e.doff = JRNL_REC_HDR + (len(e.xid) if e.xid is not None else 0) + JRNL_MOVED_EXT
                            e.alen = align_up(e.doff + e.dlen)
                            self._pin(nfidx, e.alen, 1)
                            self.n_moved += 1
                            self.n_moved_bytes += e.alen
                    elif p[2] == b'd' and xl:
                        xid = self._gather(h, off, JRNL_REC_HDR, xl)
                        t = self.txns.get(xid)
                        if t is not None:
                            for d in (<_Txn>t).deq:
                                if d[1] == h and d[2] == off:
                                    seq = self._write(b'd', rid, 0, xid, NULL, 0, NULL, 0, False, &nfidx, &noff)
                                    self._pin(h, d[3], -1)
                                    d[1] = nfidx
                                    d[2] = noff
                                    d[4] = seq
                                    self._pin(nfidx, d[3], 1)
                                    self.n_moved += 1
                                    self.n_moved_bytes += d[3]
                                    break
                    off += alen
            finally:
                self.compacting = False
                free(chunk)
            if self.live_count[h]:
                raise JournalError(_errno.EIO, "journal %s: %d live records of %s were not found while "
                                   "compacting it" % (self.name, self.live_count[h], file_path(self.directory, h)))
            self.n_compactions += 1
        self.used.popleft()
        self.inuse[h] = 0
        if self.writer is not None:
            try:
                self.writer.flush(self, None)  # get the checkpoint durable soon
            except JournalError:
                pass                            # writer shut down: the next sync() writes it
        return 0

    cdef int _take_file(self) except -1:
        """A file for the writer to enter: a free one whose old contents nothing needs (lowest
        index first), else a new index (the writer thread makes the file)."""
        cdef int i
        for i in range(self.nfiles):
            if self._reusable(i):
                return i
        if self.n_exist >= self.max_files:
            raise JournalFull(_errno.ENOSPC, self._limit_message(0))
        for i in range(self.nfiles):
            if not self.exists[i]:
                break
        else:
            i = self.nfiles
            self._tables(i + 1)
        self.exists[i] = 1
        self.fnum[i] = 0
        self.n_exist += 1
        self.n_grown += 1
        return i

    cdef int _enter_next(self, uint64_t remaining, uint64_t first_seq) except -1:
        cdef int nxt = self._take_file()
        self.fnum[nxt] = self.fnum[self.w] + 1
        self.fro[nxt] = min(remaining, self.dsz)
        self.fseq[nxt] = first_seq
        self.lstart[nxt] = self.lstart[self.w] + self.dsz
        self.live_bytes[nxt] = 0
        self.live_count[nxt] = 0
        self.inuse[nxt] = 1
        self.used.append(nxt)
        self.segs.append((self.lstart[nxt], nxt))
        self.hdr_pending.append(nxt)
        self.w = nxt
        self.woff = 0
        return 0

    cdef int _put(self, const char* src, uint64_t n, uint64_t* remaining, uint64_t seq) except -1:
        """Append n bytes of the current record (``remaining`` bytes of it, with padding, still to
        write; src NULL = zeroes) at the write position, moving to the next file as needed."""
        cdef uint64_t take
        while n:
            if self.woff == self.dsz:
                self._enter_next(remaining[0], seq + 1)
            take = min(n, self.dsz - self.woff)
            self.buf.put(src, take)
            if src != NULL:
                src += take
            self.woff += take
            n -= take
            remaining[0] -= take
        return 0

    cdef uint64_t _write(self, char rtype, uint64_t rid, uint16_t flags, xid,
                         const char* ext, uint32_t elen, const char* data, uint64_t dlen,
                         bint enq, uint32_t* fidx, uint64_t* off) except? 0:
        """Append one record; returns its seq and where its header went."""
        cdef char hdr[JRNL_REC_HDR]
        cdef const char* xp = NULL
        cdef uint64_t xl = 0
        cdef uint64_t seq, size, reclen, alen, remaining
        cdef uint32_t crc
        if xid is not None:
            xp = PyBytes_AS_STRING(xid)
            xl = PyBytes_GET_SIZE(xid)
        size = xl + elen + dlen
        if size > 0xFFFFFFFF:
            raise JournalFull(_errno.EFBIG, "journal %s: a record of %d bytes is over the 4 GiB limit"
                              % (self.name, size))
        reclen = JRNL_REC_HDR + size
        alen = align_up(reclen)
        self._make_room(alen, enq)
        # -- from here on no Python call: a snapshot never sees half of it --
        seq = self.next_seq
        hdr[0] = b'c'
        hdr[1] = b'J'
        hdr[2] = rtype
        hdr[3] = JRNL_REC_VERSION
        st64(hdr + 8, seq)
        st64(hdr + 16, rid)
        st32(hdr + 24, <uint32_t>size)
        st16(hdr + 28, flags)
        st16(hdr + 30, <uint16_t>xl)
        crc = crc32c(0, hdr, 4)
        crc = crc32c(crc, hdr + 8, JRNL_REC_HDR - 8)
        if xl:
            crc = crc32c(crc, xp, xl)
        if elen:
            crc = crc32c(crc, ext, elen)
        if dlen:
            crc = crc32c(crc, data, dlen)
        st32(hdr + 4, crc)
        if self.woff == self.dsz:
            self._enter_next(0, seq)            # the record starts the next file
        fidx[0] = self.w
        off[0] = self.woff
        remaining = alen
        self._put(hdr, JRNL_REC_HDR, &remaining, seq)
        if xl:
            self._put(xp, xl, &remaining, seq)
        if elen:
            self._put(ext, elen, &remaining, seq)
        if dlen:
            self._put(data, dlen, &remaining, seq)
        if remaining:
            self._put(NULL, remaining, &remaining, seq)
        self.next_seq = seq + 1
        self.lrec = self.buf.end
        return seq

    cpdef uint64_t append_enqueue(self, uint64_t rid, data, xid=None, int flags=0) except? 0:
        """Append an enqueue of ``rid`` with message bytes ``data`` (any buffer); returns its seq.
        ``xid``: part of that open transaction. ``flags``: 15 bits kept with the record. Raises
        JournalFull (nothing changed) if it cannot fit, ValueError if rid is already held."""
        cdef const unsigned char[::1] view
        cdef const char* dp = NULL
        cdef uint64_t dl = 0
        cdef uint32_t fidx
        cdef uint64_t off, seq
        cdef _Entry e
        cdef _Txn t = None
        self._check_writable()
        if rid in self.live:
            raise ValueError("journal %s already holds rid %d" % (self.name, rid))
        if flags < 0 or flags > JRNL_USER_FLAGS_MAX:
            raise ValueError("flags must be 0..%d" % JRNL_USER_FLAGS_MAX)
        bx = _xid_bytes(xid)
        if isinstance(data, bytes):
            dp = PyBytes_AS_STRING(data)
            dl = PyBytes_GET_SIZE(data)
        else:
            view = memoryview(data).cast("B")
            dl = view.shape[0]
            if dl:
                dp = <const char*>&view[0]
        if bx is not None:
            t = self.txns.get(bx)
            if t is None:
                t = _Txn()
        e = _Entry.__new__(_Entry)
        seq = self._write(b'e', rid, record_flags(flags), bx, NULL, 0, dp, dl, True, &fidx, &off)
        e.rid = rid
        e.seq = seq
        e.rseq = seq
        e.prev_rseq = 0
        e.fidx = fidx
        e.off = off
        e.doff = JRNL_REC_HDR + (len(bx) if bx is not None else 0)
        e.dlen = dl
        e.alen = align_up(e.doff + dl)
        e.uflags = flags
        e.xid = bx
        e.deq_xid = None
        self.live[rid] = e
        self._pin(fidx, e.alen, 1)
        if t is not None:
            self.txns[bx] = t
            t.enq.append(rid)
        return seq

    cpdef uint64_t append_dequeue(self, uint64_t rid, xid=None) except? 0:
        """Append a dequeue of live ``rid``; returns its seq. With ``xid`` the dequeue takes effect
        at that transaction's commit. KeyError if rid is not live (or already being dequeued)."""
        cdef _Entry e
        cdef uint32_t fidx
        cdef uint64_t off, seq
        cdef _Txn t
        self._check_writable()
        e = self.live.get(rid)
        if e is None or e.xid is not None or e.deq_xid is not None:
            raise KeyError(rid)
        bx = _xid_bytes(xid)
        seq = self._write(b'd', rid, 0, bx, NULL, 0, NULL, 0, False, &fidx, &off)
        if bx is None:
            del self.live[rid]
            self._pin(e.fidx, e.alen, -1)
        else:
            t = self.txns.get(bx)
            if t is None:
                t = self.txns[bx] = _Txn()
            t.deq.append([rid, fidx, off, align_up(JRNL_REC_HDR + len(bx)), seq])
            self._pin(fidx, align_up(JRNL_REC_HDR + len(bx)), 1)
            e.deq_xid = bx
        return seq

    cpdef uint64_t append_update(self, uint64_t rid, uint32_t delivery_count) except? 0:
        """Record live ``rid``'s delivery count (recovery returns the latest); returns the seq."""
        cdef _Entry e
        cdef char body[8]
        cdef uint32_t fidx
        cdef uint64_t off, seq
        self._check_writable()
        e = self.live.get(rid)
        if e is None:
            raise KeyError(rid)
        st32(body, delivery_count)
        st32(body + 4, 0)
        seq = self._write(b'u', rid, 0, None, NULL, 0, body, 8, False, &fidx, &off)
        e.dcount = delivery_count
        return seq

    cdef uint64_t _end_txn(self, xid, bint commit) except? 0:
        cdef uint32_t fidx
        cdef uint64_t off, seq
        self._check_writable()
        bx = _xid_bytes(xid)
        if bx is None:
            raise ValueError("an xid is required")
        t = self.txns.get(bx)
        seq = self._write(b'c' if commit else b'a', 0, 0, bx, NULL, 0, NULL, 0, False, &fidx, &off)
        if t is not None:
            del self.txns[bx]
            self._finish_txn(t, bx, commit, True)
        if self.in_doubt.pop(bx, None) is not None and commit and self._rec_entries is not None:
            # an open transaction committed at recovery: what take_recovered hands over is the live
            # set now (its enqueues join, the records its dequeues removed leave)
            self._rec_entries = sorted((e for e in self.live.values() if (<_Entry>e).xid is None),
                                       key=lambda e: e.seq)
        return seq

    cpdef uint64_t append_commit(self, xid) except? 0:
        """Commit transaction ``xid``: its enqueues become live, its dequeues take effect."""
        return self._end_txn(xid, True)

    cpdef uint64_t append_abort(self, xid) except? 0:
        """Abort transaction ``xid``: its enqueues are dropped, its dequeues undone."""
        return self._end_txn(xid, False)

    # -- durability -------------------------------------------------------------------------------

    def sync(self):
        """Write and fdatasync every record appended so far, then the checkpoint if the head moved;
        return the highest durable seq. Blocks (the I/O runs with the GIL released): the broker
        calls it only from the writer thread. Raises JournalError if the journal has failed."""
        seq, err = self._sync_report()
        if err is not None:
            raise err
        if self.failed:
            raise self.fail_error
        return seq

    def _sync_report(self):
        """One sync: (synced_seq, error). ``error`` is the JournalError of this sync when it is the
        one that failed (each failure is reported once); while the journal is failed, a sync tries
        to resume it instead and reports nothing."""
        with self.lock:
            if self.closed or self.readonly:
                return self.synced_upto, None
            if self.failed:
                self._resume()
                return self.synced_upto, None
            return self._sync_locked()

    def _header(self, int i):
        cdef char b[JRNL_FH_SIZE]
        build_file_header(b, <uint16_t>i, <uint16_t>self.file_count, <uint32_t>self.file_size,
                          self.cname, self.cname_len, self.fnum[i], self.fseq[i], self.fro[i])
        return PyBytes_FromStringAndSize(b, JRNL_FH_SIZE)

    def _path(self, int i):
        """File i's path, encoded (made once: every sync names the files it writes)."""
        p = self.paths.get(i)
        if p is None:
            p = self.paths[i] = os.fsencode(file_path(self.directory, i))
        return p

    def _sync_locked(self):
        cdef IoBatch batch = IoBatch(self.bdir)
        cdef uint64_t full = JRNL_HDR_PAGE + self.dsz
        cdef uint64_t upto, lend, lfrom, l, fo, n, avail, ls
        cdef uint64_t head_num
        cdef int s, i, k, rc
        cdef const char* ptr
        cdef bint ckpt = False
        cdef char cb[JRNL_CKPT_SIZE]
        # -- snapshot (GIL held: no append is half done) --
        upto = self.next_seq - 1
        lend = self.lrec
        lfrom = self.buf.base
        head_num = self.fnum[<int>self.used[0]]
        headers = []
        for i in range(self.nfiles):            # files assigned but not made yet (ahead of need)
            if self.exists[i] and (self.fd[i] < 0 or (i < self.file_count and not self.ffull[i])):
                s = batch.slot(i, self.fd[i], self._path(i), full, False)
                hb = self._header(i)
                headers.append(hb)
                batch.op(OP_WRITE, s, 0, PyBytes_AS_STRING(hb), JRNL_FH_SIZE)
        for i in self.hdr_pending:
            if self.exists[i]:
                s = batch.slot(i, self.fd[i], self._path(i), full, self.ffull[i])
                hb = self._header(i)
                headers.append(hb)
                batch.op(OP_WRITE, s, 0, PyBytes_AS_STRING(hb), JRNL_FH_SIZE)
        self.hdr_pending = []
        l = lfrom
        k = 0
        while l < lend:
            ls, i = self.segs[k]
            if l >= ls + self.dsz:
                k += 1
                continue
            fo = l - ls
            ptr = self.buf.at(l, &avail)
            n = min(avail, self.dsz - fo, lend - l)
            s = batch.slot(i, self.fd[i], self._path(i), full, self.ffull[i])
            batch.op(OP_WRITE, s, JRNL_HDR_PAGE + fo, ptr, n)
            l += n
        resync = self._add_resync(batch)       # after the slots above (a slot keeps its first size)
        for fd, path in self.to_delete:
            batch.delete(fd, path)
        self.to_delete = []
        if head_num > self.ckpt_head:
            ckpt = True
            build_ckpt(cb, self.ckpt_gen + 1, head_num)
            s = batch.slot(0, self.fd[0], self._path(0), 0, False)
            batch.set_checkpoint(s, JRNL_CKPT_OFF1 if (self.ckpt_gen + 1) & 1 else JRNL_CKPT_OFF0,
                                 PyBytes_FromStringAndSize(cb, JRNL_CKPT_SIZE))
        # -- I/O --
        with nogil:
            rc = batch.run()
        # -- result (GIL held) --
        self._took_fds(batch, rc)
        if rc and self.removing:        # its directory went away under the batch: nobody waits
            return self.synced_upto, None
        if rc:
            return self.synced_upto, self._fail(batch, lend)
        self.n_syncs += 1
        if resync:
            self.resync = []
        self.buf.release(lend)
        self.lsynced = lend
        if upto > self.synced_upto:
            self.synced_upto = upto
        if ckpt:
            self.ckpt_gen += 1
            self.ckpt_head = head_num
        while len(self.segs) > 1 and self.segs[1][0] < self.lsynced:
            self.segs.popleft()
        self._shrink()
        if failpoint_sync_copy is not None and (batch.nop or ckpt):
            failpoint_sync_copy(self)
        return self.synced_upto, None

    def _add_resync(self, IoBatch batch):
        """Files recovery accepted records from, not synced since (a kill -9 can leave written
        bytes in the page cache only): this batch fdatasyncs them before it acknowledges anything."""
        cdef int s
        for i in self.resync:
            if self.exists[<int>i] and self.fd[<int>i] >= 0:
                s = batch.slot(i, self.fd[<int>i], self._path(i), 0, False)
                batch.op(OP_ZERO, s, JRNL_HDR_PAGE, NULL, 0)
        return bool(self.resync)

    def _took_fds(self, IoBatch batch, int rc):
        """Keep the descriptors of the files the batch opened; after a good batch every file it
        touched has its full size (from then on a shorter one was truncated under the broker)."""
        for i, fd, created, full in batch.slots():
            if fd >= 0 and self.fd[i] < 0:
                self.fd[i] = fd
            if full and not rc:
                self.ffull[<int>i] = 1

    def _shrink(self):
        """Surplus files (beyond file_count) that nothing needs any more go (the next sync removes
        them); file 0 stays (it holds the checkpoint). As many free files as are in use are kept
        besides: a queue whose depth swings (a burst, then its consumers catch up) would otherwise
        delete files only to create and preallocate them again at the next burst."""
        cdef int i
        cdef int target = max(self.file_count, 2 * len(self.used) + 2)
        if self.n_exist <= target:
            return
        for i in range(self.nfiles - 1, 0, -1):
            if self.n_exist <= target:
                break
            if self._reusable(i) and self.fd[i] >= 0:
                self.to_delete.append((self.fd[i], self._path(i)))
                self.fd[i] = -1
                self.exists[i] = 0
                self.fnum[i] = 0
                self.n_exist -= 1
                self.n_shrunk += 1

    def _fail(self, IoBatch batch, uint64_t lend):
        """A write or sync failed: drop (rewind) every record appended since the last good sync,
        remember what was written but not synced (cleared before the journal resumes), and refuse
        appends until then. Returns the JournalError, which names the queue and the file."""
        cdef uint64_t l, ls, n
        cdef int i, k
        cdef _Entry e
        err = batch.err
        path = batch.failed_path()
        if batch.err_what == 3:
            why = ("%s is %d bytes, shorter than the %d it had: truncated under the broker"
                   % (path, batch.err_size, JRNL_HDR_PAGE + self.dsz))
        else:
            why = "%s of %s failed: %s" % (_WHAT[batch.err_what], path, os.strerror(err))
        self.fail_error = JournalError(err, "journal of queue %r: %s; the records not yet synced are dropped "
                                       "and the journal takes none until the disk works again"
                                       % (self.name, why))
        self.fail_error.filename = path
        self.failed = err
        self.n_failures += 1
        # what the failed batch may have written: cleared on resume
        l = self.lsynced
        for ls, i in self.segs:
            if l < lend and l < ls + self.dsz and ls < lend:
                n = min(ls + self.dsz, lend) - max(l, ls)
                self.stale.append((i, max(l, ls) - ls, n))
                l = max(l, ls) + n
        # rewind the write position to the durable one
        keep = [seg for seg in self.segs if seg[0] < self.lsynced] or [self.segs[0]]
        for ls, i in self.segs:
            if (ls, i) in keep:
                continue
            self.inuse[i] = 0
            self.fnum[i] = 0
            self.fro[i] = 0
            self.fseq[i] = 0
            if self.fd[i] < 0:              # never made: forget it
                self.exists[i] = 0
                self.n_exist -= 1
            else:
                self.stale_files.append(i)
        self.segs = collections.deque(keep)
        self.w = keep[len(keep) - 1][1]
        self.woff = self.lsynced - self.lstart[self.w]
        self.hdr_pending = []
        nums = {}
        for i in range(self.nfiles):
            self.inuse[i] = 0
            if self.exists[i] and self.ckpt_head <= self.fnum[i] <= self.fnum[self.w]:
                nums[self.fnum[i]] = i
        self.used = collections.deque(nums[x] for x in sorted(nums))
        for i in self.used:
            self.inuse[i] = 1
        # records not synced are gone; a MOVED copy not synced goes back to its durable original
        dropped = 0
        for rid in list(self.live):
            e = self.live[rid]
            if e.rseq <= self.synced_upto:
                continue
            if e.prev_rseq:
                e.rseq = e.prev_rseq
                e.fidx = e.prev_fidx
                e.off = e.prev_off
                e.doff = e.prev_doff
                e.alen = e.prev_alen
                e.prev_rseq = 0
            else:
                del self.live[rid]
                dropped += 1
        for xid, t in list(self.txns.items()):
            (<_Txn>t).deq = [d for d in (<_Txn>t).deq if d[4] <= self.synced_upto]
            (<_Txn>t).enq = [r for r in (<_Txn>t).enq if r in self.live]
        for i in range(self.nfiles):
            self.live_bytes[i] = 0
            self.live_count[i] = 0
        self.total_live = 0
        for e in self.live.values():
            self._pin(e.fidx, e.alen, 1)
        for t in self.txns.values():
            for d in (<_Txn>t).deq:
                self._pin(d[1], d[3], 1)
        self.buf.reset(self.lsynced)
        self.lrec = self.lsynced
        return self.fail_error

    def _resume(self):
        """While failed: clear what the failed batch wrote but never synced, and the headers of the
        files it entered, sync that; on success the journal takes records again (seqs jump past
        anything a torn write could have left). A failure here changes nothing (retried later)."""
        cdef IoBatch batch = IoBatch(self.bdir)
        cdef uint64_t full = JRNL_HDR_PAGE + self.dsz
        cdef int s, rc
        headers = []
        for i, off, n in self.stale:
            s = batch.slot(i, self.fd[i], self._path(i), full, self.ffull[i])
            batch.op(OP_ZERO, s, JRNL_HDR_PAGE + off, NULL, n)
        for i in self.stale_files:
            s = batch.slot(i, self.fd[i], self._path(i), full, self.ffull[i])
            hb = self._header(i)
            headers.append(hb)
            batch.op(OP_WRITE, s, 0, PyBytes_AS_STRING(hb), JRNL_FH_SIZE)
        s = batch.slot(self.w, self.fd[self.w], self._path(self.w), full, self.ffull[self.w])
        batch.op(OP_ZERO, s, JRNL_HDR_PAGE, NULL, 0)     # a sync and the size check, at least
        self._add_resync(batch)
        with nogil:
            rc = batch.run()
        self._took_fds(batch, rc)
        if rc:
            return False
        self.resync = []
        self.stale = []
        self.stale_files = []
        self.next_seq += SEQ_JUMP
        self.failed = 0
        err, self.fail_error = self.fail_error, None
        log.warning("journal of queue %r: writing again (%s)", self.name, err.strerror if err else "")
        return True

    def flush_async(self, callback=None):
        """Ask the journal's writer thread to sync; it then calls ``callback(synced_seq, error)``
        from that thread: ``error`` is None, or the JournalError of the sync that failed (once per
        failure: every record appended since the last good sync is gone). Many calls share one sync."""
        if self.writer is None:
            raise JournalError(_errno.EINVAL, "journal %s has no writer" % self.name)
        self.writer.flush(self, callback)

    @property
    def error(self):
        """The JournalError the journal failed with (None while it works)."""
        return self.fail_error

    def stats(self):
        """Counters for management and the tool."""
        return dict(
            file_count=self.file_count, file_size=self.file_size, capacity=self.max_files * self.dsz,
            files=self.n_exist, max_files=self.max_files,
            live_records=len(self), live_bytes=self.total_live,
            head=self.used[0] if self.used else 0, writer=self.w, write_offset=self.woff,
            files_in_use=len(self.used),
            next_seq=self.next_seq, synced_seq=self.synced_upto,
            buffered=self.buf.end - self.buf.base if self.buf is not None else 0,
            open_transactions=len(self.txns),
            compactions=self.n_compactions, stalls=self.n_stalls, moved_records=self.n_moved, moved_bytes=self.n_moved_bytes,
            grown=self.n_grown, shrunk=self.n_shrunk, syncs=self.n_syncs,
            failures=self.n_failures, failed=self.failed,
        )

    # -- closing ------------------------------------------------------------------------------

    def close(self, bint sync=True):
        """Sync (unless sync=False, or the journal has failed) and close the files. Idempotent.
        Without a sync it does not wait for a sync under way: the files are closed when it ends."""
        if self.closed:
            return
        if sync and not self.readonly and not self.failed:
            self.sync()
        if self.lock.acquire(blocking=sync):
            try:
                self._close_fds()
            finally:
                self.lock.release()
        else:
            self.closed = True                  # the writer closes the files after its batch
            threading.Thread(target=self._close_later, daemon=True).start()

    def _close_later(self):
        with self.lock:
            self._close_fds()

    def _close_fds(self):
        self.closed = True
        if self.fd != NULL:
            for i in range(self.nfiles):
                if self.fd[i] >= 0:
                    os.close(self.fd[i])
                    self.fd[i] = -1
        for fd, path in self.to_delete:
            if fd >= 0:
                os.close(fd)
        self.to_delete = []
        if self.buf is not None:
            self.buf.reset(self.buf.end)

    def remove(self):
        """Close without syncing and delete the journal's files (the queue is being deleted). When
        the writer is in a batch of this journal (it holds the lock, and may be making files), the
        directory is first renamed to ``<dir>.removed``, so that it is gone at once and the batch
        cannot make files in it (a create the batch had not done yet fails, and is not reported);
        the files are deleted when the batch ends. A crash before then leaves ``<dir>.removed``,
        which the store sets aside at its next start like any directory no queue owns."""
        if self.closed or self.lock.acquire(blocking=False):
            if not self.closed:
                try:
                    self._close_fds()
                finally:
                    self.lock.release()
            _delete_files(self.directory)
            return
        self.removing = True
        self.closed = True                      # the writer closes the files after its batch
        gone = self.directory + ".removed"
        try:
            os.rename(self.directory, gone)
        except OSError:
            gone = self.directory
        threading.Thread(target=self._remove_later, args=(gone,), daemon=True).start()

    def _remove_later(self, gone):
        with self.lock:
            self._close_fds()
        _delete_files(gone)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _delete_files(directory):
    """Delete a removed journal's files, then its directory (which stays if it holds anything else:
    nothing the journal does not know is deleted)."""
    for i, path in existing_files(directory).items():
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
    try:
        os.rmdir(directory)
    except OSError:
        pass
