# cython: language_level=3
"""cypid.pyx.journal_base: one journal's state in memory and reading records back.

Files: each file index has a number (its place in the journal's history), a first-record offset,
and, while in use, its place in the logical stream (``lstart``: the byte of the stream at which its
data area begins; the files in use cover the stream contiguously, in number order). Bytes appended
but not yet written by the writer thread are in the WriteBuffer; reading a record takes them from
there, and everything older from the file with pread (never a mapping: a truncated file is an
error naming it, not a SIGBUS).
"""
import collections
import errno as _errno
import os

cimport cython
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, int64_t
from libc.stdlib cimport realloc, free
from libc.string cimport memcpy, memset

from cypid.pyx.journal_format cimport JRNL_HDR_PAGE, pread_full
from cypid.pyx.journal_format import JournalError, Record, file_path


@cython.final
@cython.no_gc
cdef class _Entry:
    # Not tracked by the cyclic GC: its only object fields are bytes or None (no cycle can go
    # through it), and a deep queue has a million of them that each collection would traverse.

    @property
    def data_size(self):
        """Bytes of the caller's data in the record."""
        return self.dlen


@cython.final
cdef class _Txn:

    def __cinit__(self):
        self.enq = []
        self.deq = []


cdef class JournalBase:

    def __cinit__(self):
        self.closed = True
        self.live = {}
        self.txns = {}
        self._recovered = None
        self._rec_entries = []
        self.resync = []
        self.damage = []
        self.in_doubt = {}
        self.scanned = None
        self.used = collections.deque()
        self.segs = collections.deque()
        self.win = NULL
        self.win_idx = -1

    def __dealloc__(self):
        if self.fd != NULL:
            for i in range(self.nfiles):
                if self.fd[i] >= 0:
                    os.close(self.fd[i])
        free(self.fnum); free(self.fro); free(self.fseq); free(self.lstart)
        free(self.live_bytes); free(self.live_count); free(self.fd); free(self.exists)
        free(self.inuse); free(self.ffull); free(self.win)

    cdef int _tables(self, int n) except -1:
        """Make the per-file tables hold indexes 0..n-1 (new entries: free, not on disk)."""
        cdef int i, cap
        if n > self.fcap:
            cap = max(n, self.fcap * 2, 16)
            self.fnum = <uint64_t*>realloc(self.fnum, cap * sizeof(uint64_t))
            self.fro = <uint64_t*>realloc(self.fro, cap * sizeof(uint64_t))
            self.fseq = <uint64_t*>realloc(self.fseq, cap * sizeof(uint64_t))
            self.lstart = <uint64_t*>realloc(self.lstart, cap * sizeof(uint64_t))
            self.live_bytes = <uint64_t*>realloc(self.live_bytes, cap * sizeof(uint64_t))
            self.live_count = <uint64_t*>realloc(self.live_count, cap * sizeof(uint64_t))
            self.fd = <int*>realloc(self.fd, cap * sizeof(int))
            self.exists = <uint8_t*>realloc(self.exists, cap)
            self.inuse = <uint8_t*>realloc(self.inuse, cap)
            self.ffull = <uint8_t*>realloc(self.ffull, cap)
            if (self.fnum == NULL or self.fro == NULL or self.fseq == NULL or self.lstart == NULL or
                    self.live_bytes == NULL or self.live_count == NULL or self.fd == NULL or
                    self.exists == NULL or self.inuse == NULL or self.ffull == NULL):
                raise MemoryError()
            for i in range(self.fcap, cap):
                self.fnum[i] = 0
                self.fro[i] = 0
                self.fseq[i] = 0
                self.lstart[i] = 0
                self.live_bytes[i] = 0
                self.live_count[i] = 0
                self.fd[i] = -1
                self.exists[i] = 0
                self.inuse[i] = 0
                self.ffull[i] = 0
            self.fcap = cap
        if n > self.nfiles:
            self.nfiles = n
        return 0

    cdef int _pin(self, int fidx, uint64_t alen, int sign) noexcept:
        if sign > 0:
            self.live_bytes[fidx] += alen
            self.live_count[fidx] += 1
            self.total_live += alen
        else:
            self.live_bytes[fidx] -= alen
            self.live_count[fidx] -= 1
            self.total_live -= alen
        return 0

    cdef int _next_file(self, int fidx) except -2:
        """The file after ``fidx`` in the chain in use."""
        cdef uint64_t k = self.fnum[fidx] - self.fnum[<int>self.used[0]] + 1
        if self.fnum[fidx] == 0 or k >= <uint64_t>len(self.used):
            raise JournalError(_errno.EIO, "journal %s: record runs past %s, the last file in use"
                               % (self.name, file_path(self.directory, fidx)))
        return self.used[k]

    cdef int _file_read(self, int fidx, uint64_t pos, char* dest, uint64_t n) except -1:
        """n bytes at data-area offset pos of file fidx, from the file (recovery: through the
        window, missing bytes read as zeroes)."""
        cdef int rc
        cdef uint64_t take
        if self.opening and self.win != NULL:
            while n:
                if fidx != self.win_idx or pos < self.win_lo or pos >= self.win_lo + self.win_len:
                    self._fill_window(fidx, pos)
                take = min(n, self.win_lo + self.win_len - pos)
                memcpy(dest, self.win + (pos - self.win_lo), take)
                dest += take
                pos += take
                n -= take
            return 0
        if self.fd[fidx] < 0:
            raise JournalError(_errno.EIO, "journal %s: %s is not open (record data beyond what was written)"
                               % (self.name, file_path(self.directory, fidx)))
        with nogil:
            rc = pread_full(self.fd[fidx], dest, n, JRNL_HDR_PAGE + pos)
        if rc == -1:
            raise JournalError(_errno.EIO, "journal %s: %s is shorter than its records (truncated under "
                               "the broker?)" % (self.name, file_path(self.directory, fidx)))
        if rc:
            raise JournalError(rc, "journal %s: cannot read %s: %s"
                               % (self.name, file_path(self.directory, fidx), os.strerror(rc)))
        return 0

    def _fill_window(self, int fidx, uint64_t pos):
        cdef int rc
        cdef uint64_t lo = pos & ~(<uint64_t>65535)
        cdef uint64_t n = min(<uint64_t>WINDOW, self.dsz - lo) if lo < self.dsz else 0
        if n == 0:
            n = 4096
        self.win_idx = -1
        if self.fd[fidx] < 0:
            memset(self.win, 0, n)
        else:
            with nogil:
                rc = pread_full(self.fd[fidx], self.win, n, JRNL_HDR_PAGE + lo)
            if rc > 0:
                raise JournalError(rc, "journal %s: cannot read %s: %s"
                                   % (self.name, file_path(self.directory, fidx), os.strerror(rc)))
        self.win_idx = fidx
        self.win_lo = lo
        self.win_len = n

    cdef int _copy_out(self, int fidx, uint64_t off, uint64_t skip, char* dest, uint64_t n) except -1:
        """Copy n bytes starting ``skip`` bytes into the record at (fidx, off), across files: the
        part not yet written from the write buffer, the rest from the files."""
        cdef uint64_t pos = off + skip
        cdef uint64_t take, l, f
        cdef int i = fidx
        while pos >= self.dsz:
            pos -= self.dsz
            i = self._next_file(i)
        while n:
            take = min(n, self.dsz - pos)
            l = self.lstart[i] + pos
            if self.inuse[i] and l + take > self.buf.base and not self.opening:
                if l < self.buf.base:               # the front is written, the rest is not
                    f = self.buf.base - l
                    self._file_read(i, pos, dest, f)
                    self.buf.copy(self.buf.base, dest + f, take - f)
                else:
                    self.buf.copy(l, dest, take)
            else:
                self._file_read(i, pos, dest, take)
            dest += take
            n -= take
            if n:
                pos = 0
                i = self._next_file(i)
        return 0

    def _gather(self, int fidx, uint64_t off, uint64_t skip, uint64_t n):
        b = PyBytes_FromStringAndSize(NULL, n)
        self._copy_out(fidx, off, skip, PyBytes_AS_STRING(b), n)
        return b

    cpdef bytes read(self, uint64_t rid):
        """The message bytes of live record ``rid``. KeyError if the journal holds no such record;
        JournalError (naming the file) if the file cannot give them back."""
        cdef _Entry e = self.live.get(rid)
        if e is None:
            raise KeyError(rid)
        if self.closed:
            raise JournalError(_errno.EBADF, "journal %s is closed" % self.name)
        return self._gather(e.fidx, e.off, e.doff, e.dlen)

    def _record(self, _Entry e, bint load_data):
        return Record(e.rid, e.seq, self.read(e.rid) if load_data else None, e.dcount, e.uflags,
                      e.xid)

    @property
    def recovered(self):
        """The Records live at open, in queue order (with their data if opened with load_data).
        Built when first asked for (a journal opened without load_data makes no Record until then)."""
        if self._recovered is None:
            entries = self._rec_entries or []
            self._rec_entries = None
            self._recovered = [self._record(e, self._rec_data) for e in entries]
        return self._recovered

    def take_recovered(self):
        """The live entries at open, in queue order, handed over once (the store's recovery reads
        their fields without a Record per message: rid, seq, dcount, uflags, data_size). The journal
        keeps no list of them afterwards; ``recovered`` is then empty."""
        entries = self._rec_entries if self._recovered is None else [
            self.live[r.rid] for r in self._recovered if r.rid in self.live]
        self._rec_entries = None
        self._recovered = []
        return entries or []

    def __contains__(self, rid):
        return rid in self.live

    def __len__(self):
        return sum(1 for e in self.live.values() if (<_Entry>e).xid is None)

    def get(self, uint64_t rid, bint load_data=True):
        """The Record of live rid (None if absent)."""
        e = self.live.get(rid)
        return None if e is None else self._record(e, load_data)

    def live_records(self, uint64_t from_seq=0, bint load_data=True):
        """Iterate the live records with original seq >= from_seq, in queue order. The order is
        taken when iteration starts; records dequeued meanwhile are skipped."""
        entries = sorted((e for e in self.live.values()
                          if (<_Entry>e).xid is None and (<_Entry>e).seq >= from_seq),
                         key=lambda e: e.seq)
        for e in entries:
            if self.live.get((<_Entry>e).rid) is e:
                yield self._record(e, load_data)

    # -- what management and the tool see ------------------------------------------------------

    @property
    def next_seq(self):
        """The seq the next append will get."""
        return self.next_seq

    @property
    def synced_seq(self):
        """Every record with a seq up to this one is durable."""
        return self.synced_upto

    @property
    def position(self):
        """(file index, offset in its data area) where the next record byte goes."""
        return self.w, self.woff

    @property
    def durable_position(self):
        """(file index, offset in its data area) up to which everything is durable."""
        for l, i in self.segs:
            if l <= self.lsynced <= l + self.dsz:
                return i, self.lsynced - l
        return self.w, self.lsynced - self.lstart[self.w]

    @property
    def capacity(self):
        """Data bytes the journal may grow to (its limit)."""
        return self.max_files * self.dsz

    @property
    def is_open(self):
        """False once closed."""
        return not self.closed

    @property
    def files(self):
        """Files the journal has now (on disk or being made)."""
        return self.n_exist

    @property
    def buffered(self):
        """Bytes appended but not yet written to a file."""
        return self.buf.end - self.buf.base if self.buf is not None else 0

    def file_info(self):
        """Per file: index, path, number, fro, live record count and bytes, in-use flag."""
        out = []
        for i in range(self.nfiles):
            if not self.exists[i]:
                continue
            out.append(dict(index=i, path=file_path(self.directory, i), number=self.fnum[i],
                            fro=self.fro[i], live_records=self.live_count[i],
                            live_bytes=self.live_bytes[i], in_use=bool(self.inuse[i])))
        return out

    def __repr__(self):
        return "<Journal %r %dx%d in %s>" % (self.name, self.file_count, self.file_size, self.directory)


WINDOW = 1 << 20        # recovery reads files in windows of this many bytes
