# cython: language_level=3
"""cypid.pyx.journal_recover: a new journal's first file, and recovery of an existing journal.

Both run when a journal is opened, with blocking I/O on the caller's thread (the broker opens its
journals before it listens, and a declare makes one 4 KiB header): read every file header, find
the chain of files from the checkpoint's head, scan the records along it with pread through a
window (never a mapping), rebuild the live set, and, when opened for writing, repair the end so
that the damage is reported once. Format and rules: docs/JOURNAL-FORMAT.md.
"""
import collections
import errno as _errno
import logging
import os

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, int64_t
from libc.stdlib cimport malloc, free, realloc, qsort
from libc.string cimport memcpy, memset

from cypid.pyx.journal_format cimport (
    JRNL_HDR_PAGE, JRNL_PAGE, JRNL_REC_HDR, JRNL_REC_VERSION, JRNL_MOVED_EXT, JRNL_F_MOVED,
    JRNL_ALIGN, JRNL_FH_SIZE, JRNL_CKPT_OFF0, JRNL_CKPT_OFF1, JRNL_CKPT_SIZE, JRNL_MAX_NAME,
    crc32c, ld16, ld32, ld64, align_up, build_file_header, build_ckpt, pwrite_full, user_flags)
from cypid.pyx.journal_base cimport JournalBase, _Entry, _Txn
from cypid.pyx.journal_format import (
    JournalError, JournalCorrupt, Damage, RawRecord, Record, file_path, parse_header, parse_ckpt,
    fsync_dir)
from cypid.pyx.journal_base import WINDOW
from cypid.pyx.journal_io cimport WriteBuffer

log = logging.getLogger("cypid.journal")

SEQ_JUMP = 1 << 40          # seq gap after a reopen or a resume (JOURNAL-FORMAT.md, Recovery step 6)


# -- the scan's live set, in C (no Python object per record) ----------------------------------------
# While the records carry no transaction (the broker writes none), the scan keeps every enqueue in
# an array and finds it again by rid through an open-addressing table; dequeues and updates mark the
# array. _Entry objects are made only for the records still live at the end, in queue order. The
# first transactional record switches the scan to the general path (_apply, on self.live).

cdef inline size_t _slot(uint64_t rid, size_t mask) noexcept nogil:
    rid ^= rid >> 33
    rid *= <uint64_t>0xff51afd7ed558ccd
    rid ^= rid >> 33
    return <size_t>(rid & mask)


cdef int64_t _find(RecSet* s, uint64_t rid) noexcept nogil:
    """Index of rid's latest enqueue record, or -1."""
    cdef size_t mask, i, lo, hi, mid
    if s.by_rid:                        # rids increase along the array: binary search
        lo = 0
        hi = s.n
        while lo < hi:
            mid = (lo + hi) >> 1
            if s.recs[mid].rid < rid:
                lo = mid + 1
            else:
                hi = mid
        return <int64_t>lo if lo < s.n and s.recs[lo].rid == rid else -1
    if s.tcap == 0:
        return -1
    mask = s.tcap - 1
    i = _slot(rid, mask)
    while s.vals[i] >= 0:
        if s.keys[i] == rid:
            return s.vals[i]
        i = (i + 1) & mask
    return -1


cdef int _table(RecSet* s, size_t cap) except -1 nogil:
    """(Re)build the rid table with cap slots from the records (the latest record of each rid)."""
    cdef uint64_t* keys = <uint64_t*>malloc(cap * sizeof(uint64_t))
    cdef int64_t* vals = <int64_t*>malloc(cap * sizeof(int64_t))
    cdef size_t i, j, mask = cap - 1
    if keys == NULL or vals == NULL:
        free(keys)
        free(vals)
        with gil:
            raise MemoryError()
    for i in range(cap):
        vals[i] = -1
    for j in range(s.n):
        i = _slot(s.recs[j].rid, mask)
        while vals[i] >= 0 and keys[i] != s.recs[j].rid:
            i = (i + 1) & mask
        keys[i] = s.recs[j].rid
        vals[i] = <int64_t>j
    free(s.keys)
    free(s.vals)
    s.keys = keys
    s.vals = vals
    s.tcap = cap
    return 0


cdef RRec* _add(RecSet* s, uint64_t rid) except NULL nogil:
    """A new enqueue record of rid (the rid's earlier record, if live, is superseded)."""
    cdef size_t cap, i, mask
    cdef RRec* recs
    cdef int64_t old
    if s.n == s.cap:
        cap = s.cap * 2 if s.cap else 4096
        recs = <RRec*>realloc(s.recs, cap * sizeof(RRec))
        if recs == NULL:
            with gil:
                raise MemoryError()
        s.recs = recs
        s.cap = cap
    if s.by_rid and (s.n == 0 or rid > s.recs[s.n - 1].rid):
        s.n += 1                        # the usual case: each enqueue's rid above the last
        memset(&s.recs[s.n - 1], 0, sizeof(RRec))
        s.recs[s.n - 1].rid = rid
        return &s.recs[s.n - 1]
    if s.by_rid or (s.n + 1) * 2 > s.tcap:
        cap = 8192
        while cap < (s.n + 1) * 2:
            cap *= 2
        _table(s, cap)
        s.by_rid = False
    mask = s.tcap - 1
    i = _slot(rid, mask)
    while s.vals[i] >= 0 and s.keys[i] != rid:
        i = (i + 1) & mask
    old = s.vals[i]
    if old >= 0:
        s.recs[old].dead = 1
    s.keys[i] = rid
    s.vals[i] = <int64_t>s.n
    s.n += 1
    memset(&s.recs[s.n - 1], 0, sizeof(RRec))
    s.recs[s.n - 1].rid = rid
    return &s.recs[s.n - 1]


cdef void _free_set(RecSet* s) noexcept nogil:
    free(s.recs)
    free(s.keys)
    free(s.vals)
    memset(s, 0, sizeof(RecSet))


cdef int _by_seq(const void* a, const void* b) noexcept nogil:
    cdef uint64_t x = (<const SeqIdx*>a).seq, y = (<const SeqIdx*>b).seq
    return -1 if x < y else (1 if x > y else 0)


cdef _Entry _make_entry(RRec* r):
    cdef _Entry e = _Entry.__new__(_Entry)
    e.rid = r.rid
    e.seq = r.seq
    e.rseq = r.rseq
    e.prev_rseq = 0
    e.fidx = r.fidx
    e.off = r.off
    e.alen = r.alen
    e.doff = r.doff
    e.dlen = r.dlen
    e.uflags = r.uflags
    e.dcount = r.dcount
    e.xid = None
    e.deq_xid = None
    return e


def existing_files(directory):
    """{index: path} of the journal files in directory."""
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return {}
    found = {}
    for n in names:
        digits = n[8:len(n) - 4]
        if n.startswith("journal-") and n.endswith(".cjf") and digits.isdigit():
            found[int(digits)] = os.path.join(directory, n)
    return found


cdef class JournalRecovery(JournalBase):

    # -- a new journal -----------------------------------------------------------------------------

    def _create(self, int count, int pages, uint64_t buffer_limit):
        """File 0 (header page with the first checkpoint) made and synced now; the other files of
        the initial geometry are made by the writer thread ahead of need."""
        cdef char page[JRNL_HDR_PAGE]
        os.makedirs(self.directory, exist_ok=True)
        self._drop_tmp()
        self._geometry(count, pages)
        self._tables(count)
        memset(page, 0, JRNL_HDR_PAGE)
        build_file_header(page, 0, <uint16_t>count, <uint32_t>pages, self.cname, self.cname_len, 1, 1, 0)
        build_ckpt(page + JRNL_CKPT_OFF0, 0, 1)
        tmp = file_path(self.directory, 0) + ".tmp"
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        try:
            os.pwrite(fd, PyBytes_FromStringAndSize(page, JRNL_HDR_PAGE), 0)
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            raise
        os.rename(tmp, file_path(self.directory, 0))
        fsync_dir(self.directory)
        self.fd[0] = fd
        for i in range(count):
            self.exists[i] = 1              # file 0 on disk; 1.. made by the writer
        self.n_exist = count
        self.fnum[0] = 1
        self.fseq[0] = 1
        self.inuse[0] = 1
        self.used.append(0)
        self.w = 0
        self.woff = 0
        self.next_seq = 1
        self.synced_upto = 0
        self.ckpt_head = 1
        self.ckpt_gen = 0
        self.buf = WriteBuffer(buffer_limit)
        self.segs.append((0, 0))
        self.end = Damage(file_path(self.directory, 0), JRNL_HDR_PAGE, "new journal")
        self.closed = False

    def _geometry(self, int count, int pages):
        self.file_count = count
        self.file_size = pages
        self.dsz = <uint64_t>pages * JRNL_PAGE
        if self.max_size:
            self.max_files = <int>min(65535, max(count, self.max_size // (JRNL_HDR_PAGE + self.dsz)))
        else:
            self.max_files = 65535

    def _drop_tmp(self):
        if self.readonly:
            return
        for n in os.listdir(self.directory):
            if n.startswith("journal-") and n.endswith(".cjf.tmp"):
                os.unlink(os.path.join(self.directory, n))

    # -- an existing journal -----------------------------------------------------------------------

    def _open_existing(self, dict existing, int count, int pages, bint load_data, uint64_t buffer_limit):
        headers = {}
        sizes = {}
        for i, path in sorted(existing.items()):
            with open(path, "rb") as f:
                raw = f.read(JRNL_HDR_PAGE)
                sizes[i] = os.fstat(f.fileno()).st_size
            if len(raw) < JRNL_FH_SIZE or raw[:JRNL_FH_SIZE].count(0) == JRNL_FH_SIZE:
                headers[i] = None           # made but its header never written (a crash then)
                continue
            try:
                headers[i] = (parse_header(raw), raw)
            except JournalCorrupt as e:
                raise JournalCorrupt(_errno.EINVAL, "%s in %s (queue %r)"
                                     % (e.strerror, path, self.name)) from None
        geos = {(h["count"], h["pages"]) for h, raw in filter(None, headers.values()) if h["valid"]}
        if len(geos) > 1:
            raise JournalCorrupt(_errno.EINVAL, "journal %s: files disagree on geometry %s"
                                 % (self.directory, sorted(geos)))
        if geos:
            count, pages = geos.pop()
        self._geometry(count, pages)
        self._drop_tmp()
        self._tables(max(existing) + 1)
        flags = os.O_RDONLY if self.readonly else os.O_RDWR
        for i, path in existing.items():
            self.fd[i] = os.open(path, flags | os.O_CLOEXEC)
            self.ffull[i] = os.fstat(self.fd[i]).st_size >= JRNL_HDR_PAGE + self.dsz
            self.exists[i] = 1
            self.n_exist += 1
        self.buf = WriteBuffer(buffer_limit)
        self.closed = False
        self.win = <char*>malloc(WINDOW)
        if self.win == NULL:
            raise MemoryError()
        try:
            self._recover(headers, sizes, [], load_data)
        finally:
            free(self.win)
            self.win = NULL
            self.win_idx = -1

    def _recover(self, dict headers, dict sizes, list damage, bint load_data):
        cdef RecSet rs
        memset(&rs, 0, sizeof(RecSet))
        rs.by_rid = True
        try:
            self._recover_in(headers, sizes, damage, load_data, &rs)
        finally:
            _free_set(&rs)

    cdef _recover_in(self, dict headers, dict sizes, list damage, bint load_data, RecSet* rs):
        cdef int i, idx, ci, nxt
        cdef uint64_t off, seq, last_seq = 0, max_seq = 0, size, alen, rid, reclen
        cdef uint64_t take, roff, rem_body
        cdef uint32_t crc, want_crc
        cdef uint16_t flags, xl
        cdef char p[JRNL_REC_HDR]
        cdef char rtype
        cdef uint64_t dsz = self.dsz
        cdef bint stop_damage
        cdef RRec* rr
        cdef int64_t k
        cdef bint fast = True
        cdef char ext[JRNL_MOVED_EXT]
        cdef list chain
        reset = []                              # files whose header is to be reset (write mode)
        numbers = {}                            # file number -> index
        for i, hdr in sorted(headers.items()):
            path = file_path(self.directory, i)
            if hdr is None:
                damage.append(Damage(path, 0, "no header (%d bytes; a file being made when the broker "
                                     "stopped?): file treated as unused" % sizes[i]))
                reset.append(i)
                continue
            h = hdr[0]
            if not h["valid"]:
                damage.append(Damage(path, 0, "file header checksum mismatch: file treated as unused"))
                reset.append(i)
                continue
            if h["index"] != i:
                damage.append(Damage(path, 0, "file header says index %d: file treated as unused" % h["index"]))
                reset.append(i)
                continue
            if h["first_seq"] > max_seq:
                max_seq = h["first_seq"]
            if h["number"] == 0:
                continue
            if h["number"] in numbers:
                damage.append(Damage(path, 0, "file number %d also in %s: file treated as unused"
                                     % (h["number"], file_path(self.directory, numbers[h["number"]]))))
                reset.append(i)
                continue
            numbers[h["number"]] = i
            self.fnum[i] = h["number"]
            self.fseq[i] = h["first_seq"]
            self.fro[i] = min(<uint64_t>h["fro"], dsz)
        # The checkpoint: which file number recovery starts from.
        ckpts = []
        h0 = headers.get(0)
        if h0 is not None and len(h0[1]) >= JRNL_CKPT_OFF1 + JRNL_CKPT_SIZE:
            for c in (parse_ckpt(h0[1][JRNL_CKPT_OFF0:JRNL_CKPT_OFF0 + JRNL_CKPT_SIZE]),
                      parse_ckpt(h0[1][JRNL_CKPT_OFF1:JRNL_CKPT_OFF1 + JRNL_CKPT_SIZE])):
                if c is not None:
                    ckpts.append(c)
        if ckpts:
            self.ckpt_gen, start = max(ckpts)
        else:
            self.ckpt_gen = 0
            start = min(numbers) if numbers else 0
            if numbers:
                damage.append(Damage(file_path(self.directory, 0), JRNL_CKPT_OFF0,
                                     "no valid checkpoint%s: starting at the oldest file (number %d)"
                                     % ("" if 0 in headers else " (file 0 missing)", start)))
        later = [n for n in numbers if n >= start]
        chain = []
        if later:
            first = min(later)
            if first != start:
                damage.append(Damage(file_path(self.directory, numbers[first]), 0,
                                     "head file (number %d) missing or unreadable: starting at number %d"
                                     % (start, first)))
            n = first
            while n in numbers:
                chain.append(numbers[n])
                n += 1
            beyond = [x for x in numbers if x > n]
            if beyond:
                damage.append(Damage(file_path(self.directory, numbers[min(beyond)]), 0,
                                     "file number %d missing: the files from number %d on are not read"
                                     % (n, min(beyond))))
        for k in range(len(chain)):
            self.lstart[<int>chain[k]] = <uint64_t>k * dsz
            self.used.append(chain[k])
        # Scan the record stream along the chain.
        scanned = self.scanned
        ci = 0
        off = self.fro[<int>chain[0]] if chain else 0
        end_reason = "empty journal"
        stop_damage = False
        while chain:
            idx = chain[ci]
            if off >= dsz:                      # the previous record ended exactly at the end
                if ci + 1 >= len(chain):
                    end_reason = "end of the last file in use"
                    break
                ci += 1
                off -= dsz
                idx = chain[ci]
                if off != self.fro[idx]:
                    end_reason = "record boundary %d does not match the file's first-record offset %d" % (
                        off, self.fro[idx])
                    stop_damage = True
                    break
                continue
            self._file_read(idx, off, p, JRNL_REC_HDR)
            if p[0] != b'c' or p[1] != b'J':
                end_reason = "no record (end of the written data)"
                break
            if <uint8_t>p[3] != JRNL_REC_VERSION:
                end_reason = "record version %d unknown" % <uint8_t>p[3]
                stop_damage = True
                break
            rtype = p[2]
            seq = ld64(p + 8)
            if seq <= last_seq:
                end_reason = "record seq %d not above %d (older data: end of the newest lap)" % (seq, last_seq)
                break
            rid = ld64(p + 16)
            size = ld32(p + 24)
            flags = ld16(p + 28)
            xl = ld16(p + 30)
            reclen = JRNL_REC_HDR + size
            if (xl > size or not (rtype == b'e' or rtype == b'd' or rtype == b'u' or rtype == b'c' or
                                  rtype == b'a') or
                    (rtype == b'u' and size != 8) or ((rtype == b'c' or rtype == b'a') and (xl == 0 or xl != size)) or
                    (rtype == b'd' and xl != size) or
                    (rtype == b'e' and (flags & JRNL_F_MOVED) and size < xl + JRNL_MOVED_EXT) or
                    reclen > dsz * <uint64_t>(len(chain) - ci)):
                end_reason = "bad record header (type %r, size %d, xid size %d)" % (chr(rtype), size, xl)
                stop_damage = True
                break
            # crc over the header (minus the crc field) and the body, following the chain
            crc = crc32c(0, p, 4)
            crc = crc32c(crc, p + 8, JRNL_REC_HDR - 8)
            want_crc = ld32(p + 4)
            roff = off + JRNL_REC_HDR
            rem_body = size
            nxt = ci
            while rem_body:
                if roff >= dsz:
                    nxt += 1
                    roff = 0
                    if nxt >= len(chain):
                        break
                crc = self._crc_window(chain[nxt], roff, min(rem_body, dsz - roff), crc, &take)
                rem_body -= take
                roff += take
            if rem_body:
                end_reason = ("record seq %d continues in file number %d, which is missing (torn, or the "
                              "file was removed)" % (seq, self.fnum[<int>chain[len(chain) - 1]] + 1))
                stop_damage = True
                break
            if crc != want_crc:
                end_reason = "record seq %d checksum mismatch (torn or corrupt)" % seq
                stop_damage = True
                break
            # accepted
            last_seq = seq
            alen = align_up(reclen)
            if fast and (xl or rtype == b'c' or rtype == b'a'):
                self._materialize(rs)       # a transaction: the general path from here on
                fast = False
            if fast and scanned is None:
                if rtype == b'e':
                    rr = _add(rs, rid)
                    rr.seq = seq
                    rr.rseq = seq
                    rr.fidx = idx
                    rr.off = off
                    rr.alen = alen
                    rr.doff = JRNL_REC_HDR
                    rr.uflags = user_flags(flags)
                    if flags & JRNL_F_MOVED:
                        self._copy_out(idx, off, JRNL_REC_HDR, ext, JRNL_MOVED_EXT)
                        rr = &rs.recs[rs.n - 1]
                        rr.seq = ld64(ext)
                        rr.dcount = ld32(ext + 8)
                        rr.doff += JRNL_MOVED_EXT
                    rr.dlen = JRNL_REC_HDR + size - rr.doff
                elif rtype == b'd':
                    k = _find(rs, rid)
                    if k >= 0:
                        rs.recs[k].dead = 1
                elif rtype == b'u':
                    k = _find(rs, rid)
                    if k >= 0 and not rs.recs[k].dead:
                        self._copy_out(idx, off, JRNL_REC_HDR, ext, 4)
                        rs.recs[k].dcount = ld32(ext)
            else:
                if fast:
                    self._materialize(rs)   # keep_records (the tool): the general path
                    fast = False
                xid = None
                if xl:
                    xid = self._gather(idx, off, JRNL_REC_HDR, xl)
                if scanned is not None:
                    scanned.append(RawRecord(chr(rtype), seq, rid, file_path(self.directory, idx),
                                             JRNL_HDR_PAGE + off, size, flags, xid))
                self._apply(rtype, seq, rid, flags, xid, idx, off, alen, size)
            off += alen
            if off > dsz:
                while off > dsz:
                    off -= dsz
                    ci += 1
                if off != self.fro[<int>chain[ci]]:
                    end_reason = "record seq %d ends at %d but the next file's first-record offset is %d" % (
                        seq, off, self.fro[<int>chain[ci]])
                    stop_damage = True
                    break
        # where it stopped
        if chain:
            idx = chain[ci]
            # A file the writer has written is full size: a shorter one in use was truncated.
            for j in range(ci, min(ci + 2, len(chain))):
                fsz = sizes.get(chain[j], 0)
                if fsz < JRNL_HDR_PAGE + dsz and (
                        (j == ci and off > 0 and (stop_damage or fsz <= JRNL_HDR_PAGE + off)) or
                        (j > ci and stop_damage)):
                    end_reason = "file %s truncated: %d bytes, expected %d (%s)" % (
                        file_path(self.directory, chain[j]), fsz, JRNL_HDR_PAGE + dsz, end_reason)
                    stop_damage = True
                    break
            self.end = Damage(file_path(self.directory, idx), JRNL_HDR_PAGE + min(off, dsz), end_reason)
            if stop_damage:
                damage.append(self.end)
            else:
                probe = self._probe(idx, align_up(off + 1), last_seq)
                if probe is not None:
                    stop_damage = True
                    damage.append(Damage(self.end.file, self.end.offset,
                                         "%s, but a valid record (seq %d) follows at offset %d: the records"
                                         " between are lost" % (end_reason, probe[0], probe[1])))
            for j in range(ci + 1, len(chain)):
                # The writer puts a new file's header in the same batch as the records that enter
                # it, ahead of them: a kill in between (or one that tears the batch's last record)
                # leaves a numbered file with no record of this lap (nothing in it was
                # acknowledged): no record is ignored there. A file holding a newer valid record
                # past the stop point is damage.
                if self._probe(chain[j], self.fro[<int>chain[j]], last_seq) is None:
                    log.info("journal %s: %s (number %d) was entered but holds no record written after "
                             "the stop point: free again", self.name, file_path(self.directory, chain[j]),
                             self.fnum[<int>chain[j]])
                    continue
                damage.append(Damage(file_path(self.directory, chain[j]), 0,
                                     "file (number %d) after the stop point: its records are ignored"
                                     % self.fnum[<int>chain[j]]))
            if last_seq > max_seq:
                max_seq = last_seq
        else:
            self.end = Damage(self.directory, 0, "no file in use")
        # files not read that were cut short (a file is made full size before anything is written
        # to it, so only the first file of a new journal may be a bare header page)
        read = set(chain[:ci + 1])
        for i, hdr in sorted(headers.items()):
            if (hdr is not None and i not in read and JRNL_HDR_PAGE < sizes[i] < JRNL_HDR_PAGE + dsz):
                damage.append(Damage(file_path(self.directory, i), sizes[i],
                                     "file truncated: %d bytes, expected %d (not in use; it is made full "
                                     "size again before it is used)" % (sizes[i], JRNL_HDR_PAGE + dsz)))
        # resulting state
        if fast:
            entries = self._materialize(rs)
        else:
            entries = sorted((e for e in self.live.values() if (<_Entry>e).xid is None), key=lambda e: e.seq)
        for j in range(self.nfiles):
            self.live_bytes[j] = 0
            self.live_count[j] = 0
        self.total_live = 0
        for e in self.live.values():
            self._pin((<_Entry>e).fidx, (<_Entry>e).alen, 1)
        for xid_, t in self.txns.items():
            for d in (<_Txn>t).deq:
                self._pin(d[1], d[3], 1)
        self.in_doubt = {}
        for xid_, t in self.txns.items():
            ops = [("enqueue", r) for r in (<_Txn>t).enq] + [("dequeue", d[0]) for d in (<_Txn>t).deq]
            self.in_doubt[xid_] = ops
        self._rec_entries = entries
        self._rec_data = load_data
        self._recovered = None
        if load_data:
            self._recovered = [self._record(e, True) for e in entries]
            self._rec_entries = None
        self.damage = damage
        self.next_seq = max_seq + SEQ_JUMP if (max_seq or chain) else 1
        self.synced_upto = self.next_seq - 1
        for e in damage:
            log.warning("journal %s: %s at offset %d: %s", self.name, e.file, e.offset, e.reason)
        # the chain after the stop point is not in use
        for j in range(ci + 1, len(chain)):
            self.used.pop()
        for i in self.used:
            self.inuse[i] = 1
        if chain:
            self.w = chain[ci]
            self.woff = min(off, dsz)
        if self.readonly:
            return
        # Make the state on disk match what was recovered, then a fresh checkpoint.
        for i in reset:
            self.fnum[i] = 0
            self._put_header(i)
        for j in range(ci + 1, len(chain)):
            self.fnum[<int>chain[j]] = 0        # dropped (reported above): free from now on
            self.fro[<int>chain[j]] = 0
            self._put_header(chain[j])
        if chain:
            if stop_damage and self.woff < dsz:
                # Repair (as etcd's wal does): clear the rest of the file from the stop point, so
                # that the damage is reported once and the next open ends cleanly here.
                self._put_zeroes(self.w, self.woff, dsz - self.woff)
        else:
            # nothing usable: start a fresh history in file 0 (numbers above any seen)
            if not self.exists[0]:
                self._tables(1)
                self.fd[0] = os.open(file_path(self.directory, 0), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
                self.exists[0] = 1
                self.n_exist += 1
            self.used.clear()
            self.used.append(0)
            self.inuse[0] = 1
            self.w = 0
            self.woff = 0
            self.lstart[0] = 0
            self.fnum[0] = (max(numbers) if numbers else 0) + 1
            self.fro[0] = 0
            self.fseq[0] = self.next_seq
            self._put_header(0)
        if not self.exists[0]:                  # the checkpoint lives in file 0's header page
            self._tables(1)
            self.fd[0] = os.open(file_path(self.directory, 0), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            self.exists[0] = 1
            self.n_exist += 1
            self.fnum[0] = 0
            self._put_header(0)
            fsync_dir(self.directory)
        self.ckpt_head = self.fnum[<int>self.used[0]]
        self.ckpt_gen += 1
        self._put_ckpt()
        # What recovery wrote (headers, cleared tails, the checkpoint) is synced now. The records it
        # accepted may still be only in the page cache (a kill -9 between a write and its sync):
        # the writer's first batch fdatasyncs those files before it acknowledges anything new
        # (``resync``), so the loop need not wait for hundreds of fsyncs of a deep journal.
        touched = set(reset)
        touched.update(chain[ci + 1:] if chain else ())
        touched.add(0)
        if chain and stop_damage:
            touched.add(self.w)
        for i in range(self.nfiles):
            if self.fd[i] >= 0:
                if i in touched:
                    os.fsync(self.fd[i])
                elif self.inuse[i]:
                    self.resync.append(i)
        self.segs.append((self.lstart[self.w], self.w))
        self.lsynced = self.lstart[self.w] + self.woff
        self.buf.reset(self.lsynced)

    cdef list _materialize(self, RecSet* rs):
        """The scan's live records as _Entry objects in self.live, in queue order (original seq);
        returns them as a list. The set is emptied (the scan goes on with the general path)."""
        cdef size_t i, n = 0
        cdef SeqIdx* order
        cdef bint ordered = True
        cdef list entries = []
        cdef dict live = self.live
        cdef _Entry e
        if rs.n == 0:
            return entries
        order = <SeqIdx*>malloc(rs.n * sizeof(SeqIdx))
        if order == NULL:
            raise MemoryError()
        try:
            for i in range(rs.n):
                if not rs.recs[i].dead:
                    order[n].seq = rs.recs[i].seq
                    order[n].idx = i
                    if n and order[n].seq < order[n - 1].seq:
                        ordered = False     # MOVED copies keep their older seq
                    n += 1
            if not ordered:
                qsort(order, n, sizeof(SeqIdx), _by_seq)
            for i in range(n):
                e = _make_entry(&rs.recs[order[i].idx])
                live[e.rid] = e
                entries.append(e)
        finally:
            free(order)
        _free_set(rs)
        return entries

    cdef uint32_t _crc_window(self, int idx, uint64_t pos, uint64_t n, uint32_t crc, uint64_t* took) except? 0xFFFFFFFF:
        """Continue crc over up to n bytes of file idx at pos, as far as the window reaches."""
        cdef uint64_t take
        if idx != self.win_idx or pos < self.win_lo or pos >= self.win_lo + self.win_len:
            self._fill_window(idx, pos)
        take = min(n, self.win_lo + self.win_len - pos)
        took[0] = take
        return crc32c(crc, self.win + (pos - self.win_lo), take)

    def _put_header(self, int i):
        """Write file i's header now (opening only: blocking)."""
        cdef char buf[JRNL_FH_SIZE]
        build_file_header(buf, <uint16_t>i, <uint16_t>self.file_count, <uint32_t>self.file_size,
                          self.cname, self.cname_len, self.fnum[i], self.fseq[i], self.fro[i])
        os.pwrite(self.fd[i], PyBytes_FromStringAndSize(buf, JRNL_FH_SIZE), 0)

    def _put_zeroes(self, int i, uint64_t off, uint64_t n):
        size = os.fstat(self.fd[i]).st_size
        if JRNL_HDR_PAGE + off >= <uint64_t>size:
            return                              # nothing written there
        n = min(n, <uint64_t>size - JRNL_HDR_PAGE - off)
        zero = bytes(min(n, 1 << 20))
        while n:
            k = min(n, len(zero))
            os.pwrite(self.fd[i], zero[:k], JRNL_HDR_PAGE + off)
            off += k
            n -= k

    def _put_ckpt(self):
        cdef char buf[JRNL_CKPT_SIZE]
        build_ckpt(buf, self.ckpt_gen, self.ckpt_head)
        os.pwrite(self.fd[0], PyBytes_FromStringAndSize(buf, JRNL_CKPT_SIZE),
                  JRNL_CKPT_OFF1 if self.ckpt_gen & 1 else JRNL_CKPT_OFF0)

    def _apply(self, char rtype, uint64_t seq, uint64_t rid, uint16_t flags, xid, int idx,
               uint64_t off, uint64_t alen, uint64_t size):
        """Recovery: apply one accepted record to the in-memory state."""
        cdef _Entry e
        cdef _Txn t
        cdef char ext[JRNL_MOVED_EXT]
        cdef uint64_t xl = len(xid) if xid is not None else 0
        if rtype == b'e':
            e = _Entry.__new__(_Entry)
            e.rid = rid
            e.seq = seq
            e.rseq = seq
            e.prev_rseq = 0
            e.fidx = idx
            e.off = off
            e.alen = alen
            e.doff = JRNL_REC_HDR + xl
            e.uflags = user_flags(flags)
            e.dcount = 0
            if flags & JRNL_F_MOVED:
                self._copy_out(idx, off, JRNL_REC_HDR + xl, ext, JRNL_MOVED_EXT)
                e.seq = ld64(ext)
                e.dcount = ld32(ext + 8)
                e.doff += JRNL_MOVED_EXT
            e.dlen = JRNL_REC_HDR + size - e.doff
            e.xid = xid
            e.deq_xid = None
            old = self.live.get(rid)
            if flags & JRNL_F_MOVED:            # a copy: a pending dequeue of it still holds
                if old is not None:
                    e.deq_xid = (<_Entry>old).deq_xid
                else:
                    for x, t in self.txns.items():
                        if any(d[0] == rid for d in (<_Txn>t).deq):
                            e.deq_xid = x
                            break
            self.live[rid] = e
            if xid is not None:
                t = self.txns.get(xid)
                if t is None:
                    t = self.txns[xid] = _Txn()
                if old is None or (<_Entry>old).xid != xid:
                    t.enq.append(rid)
        elif rtype == b'd':
            if xid is None:
                self.live.pop(rid, None)
            else:
                t = self.txns.get(xid)
                if t is None:
                    t = self.txns[xid] = _Txn()
                t.deq = [d for d in t.deq if d[0] != rid]   # a MOVED copy replaces the original
                t.deq.append([rid, idx, off, alen, seq])
                e = self.live.get(rid)
                if e is not None:
                    e.deq_xid = xid
        elif rtype == b'u':
            e = self.live.get(rid)
            if e is not None:
                self._copy_out(idx, off, JRNL_REC_HDR, ext, 8)
                e.dcount = ld32(ext)
        elif rtype == b'c' or rtype == b'a':
            t = self.txns.pop(xid, None)
            if t is not None:
                self._finish_txn(t, xid, rtype == b'c', False)

    def _finish_txn(self, _Txn t, xid, bint commit, bint pinned):
        """Apply (commit) or drop (abort) a transaction's operations in memory."""
        cdef _Entry e
        for rid in t.enq:
            e = self.live.get(rid)
            if e is None or e.xid != xid:
                continue
            if commit:
                e.xid = None
            else:
                del self.live[rid]
                if pinned:
                    self._pin(e.fidx, e.alen, -1)
        for d in t.deq:
            e = self.live.get(d[0])
            if pinned:
                self._pin(d[1], d[3], -1)
            if e is None or e.deq_xid != xid:
                continue
            e.deq_xid = None
            if commit:
                del self.live[d[0]]
                if pinned:
                    self._pin(e.fidx, e.alen, -1)

    def _probe(self, int idx, uint64_t start, uint64_t last_seq):
        """After a normal-looking stop, look in a file from offset ``start`` on for a newer valid
        record (which would mean the stop was damage, not the end). (seq, file offset) or None."""
        cdef uint64_t o = align_up(start)
        cdef uint64_t size, take, pos, rem
        cdef uint32_t crc
        cdef char p[JRNL_REC_HDR]
        while o + JRNL_REC_HDR <= self.dsz:
            self._file_read(idx, o, p, JRNL_REC_HDR)
            if p[0] == b'c' and p[1] == b'J' and <uint8_t>p[3] == JRNL_REC_VERSION and ld64(p + 8) > last_seq:
                size = ld32(p + 24)
                if o + JRNL_REC_HDR + size <= self.dsz:
                    crc = crc32c(0, p, 4)
                    crc = crc32c(crc, p + 8, JRNL_REC_HDR - 8)
                    pos = o + JRNL_REC_HDR
                    rem = size
                    while rem:
                        crc = self._crc_window(idx, pos, rem, crc, &take)
                        pos += take
                        rem -= take
                    if crc == ld32(p + 4):
                        return ld64(p + 8), JRNL_HDR_PAGE + o
            o += JRNL_ALIGN
        return None
