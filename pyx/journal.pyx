# cython: language_level=3
"""cypid.pyx.journal: the durable message journal of one queue.

FORMAT: docs/JOURNAL-FORMAT.md (version 1) defines every byte this module writes and reads.
API: the journal section of docs/INTERFACES.md.

A journal is ``file_count`` files of ``file_size`` 64 KiB pages, mmap-ed read-write. Appends copy
the record into the mapping and return its seq at once; nothing waits for the disk on the
caller's thread. Durability comes from ``sync()`` (blocking) or ``flush_async(callback)``, which
hands the journal to a ``JournalWriter`` thread: it msyncs every range written since the last
sync with the GIL released, so one sync covers any number of appends (group commit), and then
calls ``callback(synced_seq, error)`` from that thread.

Threads: appends, reads and compaction run on the caller's thread (the broker's loop). The
writer thread only snapshots the dirty ranges (holding the GIL, so the snapshot is atomic with
respect to an append's pure-C write section), msyncs them without the GIL, and writes the
checkpoint. ``self.lock`` keeps one sync at a time per journal, so ``synced_upto`` only ever
covers ranges that were really synced.
"""
import errno as _errno
import logging
import os
import threading
import time
from collections import namedtuple

cimport cython
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, int64_t
from libc.stdlib cimport calloc, free
from libc.string cimport memcpy, memset, memcmp
from libc.errno cimport errno
from posix.time cimport clock_gettime, timespec, CLOCK_REALTIME
from posix.mman cimport (mmap, munmap, msync, madvise, PROT_READ, PROT_WRITE, MAP_SHARED, MS_SYNC,
                         MAP_FAILED, MADV_DONTNEED)

log = logging.getLogger("cypid.journal")

FORMAT_VERSION = 1
FILE_MAGIC = b"CYPIDJNL"
CKPT_MAGIC = b"CYPIDCKP"
HEADER_PAGE = JRNL_HDR_PAGE
PAGE = JRNL_PAGE
ALIGN = JRNL_ALIGN
DEFAULT_FILE_COUNT = 8
DEFAULT_FILE_SIZE = 24
MAX_NAME = 64
SEQ_JUMP = 1 << 40          # seq gap after a reopen (JOURNAL-FORMAT.md, Recovery step 5)
FILE_PATTERN = "journal-%04d.cjf"

cdef enum:
    FAULT_AROUND = 65536        # the kernel maps up to this much around a read fault (fault_around_bytes)
    FH_SIZE = 128
    CKPT_OFF0 = 512
    CKPT_OFF1 = 1024
    CKPT_SIZE = 32

# ---------------------------------------------------------------------------------------------
# CRC-32C: SSE4.2 instruction when the CPU has it, else slicing-by-8 tables.

cdef extern from *:
    """
    #include <stdint.h>
    #include <string.h>
    static uint32_t cypid_crc_tab[8][256];
    static int cypid_crc_hw = 0;
    static void cypid_crc_init(void) {
        for (uint32_t i = 0; i < 256; i++) {
            uint32_t c = i;
            for (int j = 0; j < 8; j++) c = (c >> 1) ^ ((c & 1) ? 0x82F63B78u : 0u);
            cypid_crc_tab[0][i] = c;
        }
        for (uint32_t i = 0; i < 256; i++) {
            uint32_t c = cypid_crc_tab[0][i];
            for (int k = 1; k < 8; k++) { c = cypid_crc_tab[0][c & 0xff] ^ (c >> 8); cypid_crc_tab[k][i] = c; }
        }
    #if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
        __builtin_cpu_init();
        cypid_crc_hw = __builtin_cpu_supports("sse4.2");
    #endif
    }
    static uint32_t cypid_crc_sw(uint32_t crc, const unsigned char *p, size_t n) {
        while (n && ((uintptr_t)p & 7)) { crc = cypid_crc_tab[0][(crc ^ *p++) & 0xff] ^ (crc >> 8); n--; }
        while (n >= 8) {
            uint64_t w; memcpy(&w, p, 8);
    #if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
            w = __builtin_bswap64(w);
    #endif
            uint32_t lo = (uint32_t)w ^ crc, hi = (uint32_t)(w >> 32);
            crc = cypid_crc_tab[7][lo & 0xff] ^ cypid_crc_tab[6][(lo >> 8) & 0xff] ^
                  cypid_crc_tab[5][(lo >> 16) & 0xff] ^ cypid_crc_tab[4][lo >> 24] ^
                  cypid_crc_tab[3][hi & 0xff] ^ cypid_crc_tab[2][(hi >> 8) & 0xff] ^
                  cypid_crc_tab[1][(hi >> 16) & 0xff] ^ cypid_crc_tab[0][hi >> 24];
            p += 8; n -= 8;
        }
        while (n--) crc = cypid_crc_tab[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
        return crc;
    }
    #if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    __attribute__((target("sse4.2")))
    static uint32_t cypid_crc_hw_run(uint32_t crc, const unsigned char *p, size_t n) {
        uint64_t c = crc;
        while (n && ((uintptr_t)p & 7)) { c = __builtin_ia32_crc32qi((uint32_t)c, *p++); n--; }
        while (n >= 8) { uint64_t w; memcpy(&w, p, 8); c = __builtin_ia32_crc32di(c, w); p += 8; n -= 8; }
        while (n--) c = __builtin_ia32_crc32qi((uint32_t)c, *p++);
        return (uint32_t)c;
    }
    #endif
    static uint32_t cypid_crc32c(uint32_t crc, const void *data, size_t n) {
        crc = ~crc;
    #if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
        if (cypid_crc_hw) return ~cypid_crc_hw_run(crc, (const unsigned char *)data, n);
    #endif
        return ~cypid_crc_sw(crc, (const unsigned char *)data, n);
    }
    """
    void cypid_crc_init() noexcept nogil
    uint32_t cypid_crc32c(uint32_t crc, const void* data, size_t n) noexcept nogil
    int cypid_crc_hw

cypid_crc_init()


cdef uint32_t crc32c(uint32_t crc, const void* data, size_t n) noexcept nogil:
    return cypid_crc32c(crc, data, n)


def crc32c_bytes(data, uint32_t crc=0):
    """CRC-32C of a bytes-like object (continuing ``crc``); exposed for tests and tools."""
    cdef const unsigned char[::1] view = memoryview(data).cast("B")
    if view.shape[0] == 0:
        return crc
    return cypid_crc32c(crc, &view[0], view.shape[0])


CRC_HARDWARE = bool(cypid_crc_hw)

# ---------------------------------------------------------------------------------------------
# little-endian loads and stores

cdef inline void st16(char* p, uint16_t v) noexcept nogil:
    p[0] = <char>v; p[1] = <char>(v >> 8)

cdef inline void st32(char* p, uint32_t v) noexcept nogil:
    st16(p, <uint16_t>v); st16(p + 2, <uint16_t>(v >> 16))

cdef inline void st64(char* p, uint64_t v) noexcept nogil:
    st32(p, <uint32_t>v); st32(p + 4, <uint32_t>(v >> 32))

cdef inline uint16_t ld16(const char* p) noexcept nogil:
    cdef const uint8_t* q = <const uint8_t*>p
    return q[0] | (<uint16_t>q[1] << 8)

cdef inline uint32_t ld32(const char* p) noexcept nogil:
    return ld16(p) | (<uint32_t>ld16(p + 2) << 16)

cdef inline uint64_t ld64(const char* p) noexcept nogil:
    return ld32(p) | (<uint64_t>ld32(p + 4) << 32)

cdef inline uint64_t align_up(uint64_t n) noexcept nogil:
    return (n + (JRNL_ALIGN - 1)) & ~(<uint64_t>(JRNL_ALIGN - 1))


# ---------------------------------------------------------------------------------------------
# errors and result types

class JournalError(OSError):
    """Any journal failure (an I/O error, a refused record, an unreadable journal)."""


class JournalCorrupt(JournalError):
    """The journal cannot be read at all (bad file header magic or version, mixed geometry)."""


class JournalFull(JournalError):
    """The journal cannot take this record now; nothing accepted before is lost."""


Record = namedtuple("Record", "rid seq data delivery_count flags xid")
Record.__doc__ = ("A live enqueue: rid, original seq (queue order), data (bytes, or None when not "
                  "loaded), delivery_count, the caller's flags, xid (None unless in doubt).")
Damage = namedtuple("Damage", "file offset reason")
Damage.__doc__ = "Where recovery found a problem (or stopped): file path, byte offset in it, reason."
RawRecord = namedtuple("RawRecord", "type seq rid file offset size flags xid")


@cython.final
cdef class _Entry:
    pass


@cython.final
cdef class _Txn:
    cdef list enq       # rids enqueued under this xid
    cdef list deq       # [rid, fidx, off, alen] of its dequeue records

    def __cinit__(self):
        self.enq = []
        self.deq = []


cdef inline bytes _xid_bytes(xid):
    if xid is None:
        return None
    b = bytes(xid)
    if not 0 < len(b) <= 0xFFFF:
        raise ValueError("xid must be 1..65535 bytes")
    return b


def file_path(directory, int index):
    return os.path.join(directory, FILE_PATTERN % index)


def _build_header(int index, int count, int pages, name, uint64_t number, uint64_t first_seq,
                  uint64_t fro):
    """A file header (JOURNAL-FORMAT.md) as FH_SIZE bytes."""
    nb = name.encode("utf-8")[:MAX_NAME] if name else b""
    b = bytearray(FH_SIZE)
    b[0:8] = FILE_MAGIC
    b[8:10] = FORMAT_VERSION.to_bytes(2, "little")
    b[10:12] = index.to_bytes(2, "little")
    b[12:14] = count.to_bytes(2, "little")
    b[16:20] = pages.to_bytes(4, "little")
    b[20:24] = len(nb).to_bytes(4, "little")
    b[24:32] = number.to_bytes(8, "little")
    b[32:40] = first_seq.to_bytes(8, "little")
    b[40:48] = fro.to_bytes(8, "little")
    b[48:56] = time.time_ns().to_bytes(8, "little")
    b[56:56 + len(nb)] = nb
    b[124:128] = crc32c_bytes(bytes(b[:124])).to_bytes(4, "little")
    return bytes(b)


def _parse_header(bytes b):
    """dict of a file header's fields, with 'valid' (crc ok); raises JournalCorrupt on a wrong
    magic or version."""
    if len(b) < FH_SIZE or b[0:8] != FILE_MAGIC:
        raise JournalCorrupt(_errno.EINVAL, "bad file header magic %r" % (b[0:8],))
    version = int.from_bytes(b[8:10], "little")
    if version != FORMAT_VERSION:
        raise JournalCorrupt(_errno.EINVAL, "unsupported journal format version %d (this is %d)"
                             % (version, FORMAT_VERSION))
    nlen = min(int.from_bytes(b[20:24], "little"), MAX_NAME)
    return dict(
        valid=crc32c_bytes(b[:124]) == int.from_bytes(b[124:128], "little"),
        index=int.from_bytes(b[10:12], "little"),
        count=int.from_bytes(b[12:14], "little"),
        pages=int.from_bytes(b[16:20], "little"),
        number=int.from_bytes(b[24:32], "little"),
        first_seq=int.from_bytes(b[32:40], "little"),
        fro=int.from_bytes(b[40:48], "little"),
        entered_ns=int.from_bytes(b[48:56], "little"),
        name=b[56:56 + nlen].decode("utf-8", "replace"),
    )


def _build_ckpt(uint64_t gen, uint64_t head):
    b = bytearray(CKPT_SIZE)
    b[0:8] = CKPT_MAGIC
    b[8:16] = gen.to_bytes(8, "little")
    b[16:24] = head.to_bytes(8, "little")
    b[28:32] = crc32c_bytes(bytes(b[:28])).to_bytes(4, "little")
    return bytes(b)


def _parse_ckpt(bytes b):
    """(generation, head) of a checkpoint slot, or None if it is not valid."""
    if len(b) < CKPT_SIZE or b[0:8] != CKPT_MAGIC:
        return None
    if crc32c_bytes(b[:28]) != int.from_bytes(b[28:32], "little"):
        return None
    return int.from_bytes(b[8:16], "little"), int.from_bytes(b[16:24], "little")


def read_file_header(path):
    """The header fields of one journal file (for tools): a dict with valid (crc ok), index,
    count, pages, number, first_seq, fro, entered_ns, name. JournalCorrupt on a bad magic or
    version, OSError if unreadable."""
    with open(path, "rb") as f:
        raw = f.read(JRNL_HDR_PAGE)
    if len(raw) < FH_SIZE:
        raise JournalCorrupt(_errno.EINVAL, "journal file %s is %d bytes: no header" % (path, len(raw)))
    h = _parse_header(raw)
    if len(raw) >= CKPT_OFF1 + CKPT_SIZE:
        h["checkpoints"] = [c for c in (_parse_ckpt(raw[CKPT_OFF0:CKPT_OFF0 + CKPT_SIZE]),
                                        _parse_ckpt(raw[CKPT_OFF1:CKPT_OFF1 + CKPT_SIZE])) if c]
    return h


def _fsync_dir(directory):
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _make_file(directory, int index, int count, int pages, name, uint64_t number=0,
               uint64_t first_seq=0, ckpt=None):
    """Create one preallocated journal file as <name>.tmp, fsynced; return the tmp path."""
    path = file_path(directory, index) + ".tmp"
    total = JRNL_HDR_PAGE + pages * JRNL_PAGE
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.ftruncate(fd, total)
        try:
            os.posix_fallocate(fd, 0, total)
        except OSError as e:
            if e.errno == _errno.ENOSPC:
                raise JournalFull(_errno.ENOSPC, "no space for journal file %s (%d bytes)"
                                  % (path, total)) from None
            if e.errno not in (_errno.EOPNOTSUPP, _errno.EINVAL):
                raise
        page = bytearray(JRNL_HDR_PAGE)
        page[0:FH_SIZE] = _build_header(index, count, pages, name, number, first_seq, 0)
        if ckpt is not None:
            page[CKPT_OFF0:CKPT_OFF0 + CKPT_SIZE] = _build_ckpt(0, ckpt)
        os.pwrite(fd, bytes(page), 0)
        os.fsync(fd)
    finally:
        os.close(fd)
    return path


# ---------------------------------------------------------------------------------------------

@cython.final
cdef class Journal:
    """The journal of one durable queue (see the module docstring and docs/INTERFACES.md).

    ``Journal(directory, file_count=8, file_size=24, *, name=None, writer=None, load_data=True,
    readonly=False, keep_records=False)`` opens the journal in ``directory``, creating it (all
    files preallocated and fsynced) if it has no journal files. Opening an existing journal
    recovers it: ``recovered``, ``damage``, ``end``, ``in_doubt``. Opening and closing do blocking
    I/O; run them off the event loop if that matters.
    """

    def __cinit__(self):
        self.base = NULL
        self.closed = True
        self.live = {}
        self.txns = {}
        self.recovered = []
        self.damage = []
        self.in_doubt = {}
        self.scanned = None

    def __init__(self, directory, int file_count=DEFAULT_FILE_COUNT, int file_size=DEFAULT_FILE_SIZE,
                 *, name=None, writer=None, bint load_data=True, bint readonly=False,
                 bint keep_records=False):
        if file_count < 3 or file_count > 0xFFFF:
            raise ValueError("file_count must be 3..65535, not %d" % file_count)
        if file_size < 1 or file_size > 0x7FFFFFFF // JRNL_PAGE:
            raise ValueError("file_size must be at least 1 page of 64 KiB, not %d" % file_size)
        self.directory = os.fspath(directory)
        self.name = name
        if name is None:            # an existing journal's own name, else the directory's
            for i, path in sorted(self._existing_files().items()):
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
        self.lock = threading.Lock()
        if keep_records:
            self.scanned = []
        existing = self._existing_files()
        self.opening = True
        try:
            if not existing:
                if readonly:
                    raise JournalError(_errno.ENOENT, "no journal in %s" % self.directory)
                self._create(file_count, file_size)
            else:
                self._open_existing(existing, file_count, file_size, load_data)
        finally:
            self.opening = False
        # Recovery read every page: give the mapped pages back (they stay in the page cache).
        if self.base != NULL:
            for i in range(self.file_count):
                if self.base[i] != NULL:
                    madvise(self.base[i], self.maplen[i], MADV_DONTNEED)

    # -- opening --------------------------------------------------------------------------------

    def _existing_files(self):
        try:
            names = os.listdir(self.directory)
        except FileNotFoundError:
            return {}
        found = {}
        for n in names:
            digits = n[8:len(n) - 4]
            if n.startswith("journal-") and n.endswith(".cjf") and digits.isdigit():
                found[int(digits)] = os.path.join(self.directory, n)
        return found

    def _create(self, int count, int pages):
        os.makedirs(self.directory, exist_ok=True)
        for n in os.listdir(self.directory):
            if n.startswith("journal-") and n.endswith(".cjf.tmp"):
                os.unlink(os.path.join(self.directory, n))
        tmps = []
        for i in range(count):
            if i == 0:
                tmps.append(_make_file(self.directory, 0, count, pages, self.name, 1, 1, ckpt=1))
            else:
                tmps.append(_make_file(self.directory, i, count, pages, self.name))
        for i in range(count - 1, -1, -1):      # file 0 (with the checkpoint) last
            os.rename(tmps[i], file_path(self.directory, i))
        _fsync_dir(self.directory)
        self._alloc(count, pages)
        self._map_all()
        self.fnum[0] = 1
        self.head = 0
        self.w = 0
        self.woff = 0
        self.next_seq = 1
        self.synced_upto = 0
        self.ckpt_head = 1
        self.ckpt_gen = 0
        self.dur_w = 0
        self.dur_woff = 0
        self.end = Damage(file_path(self.directory, 0), JRNL_HDR_PAGE, "new journal")

    def _alloc(self, int count, int pages):
        self.file_count = count
        self.file_size = pages
        self.dsz = <uint64_t>pages * JRNL_PAGE
        self.base = <char**>calloc(count, sizeof(char*))
        self.maplen = <uint64_t*>calloc(count, sizeof(uint64_t))
        self.fnum = <uint64_t*>calloc(count, sizeof(uint64_t))
        self.fro = <uint64_t*>calloc(count, sizeof(uint64_t))
        self.live_bytes = <uint64_t*>calloc(count, sizeof(uint64_t))
        self.live_count = <uint64_t*>calloc(count, sizeof(uint64_t))
        self.dirty_lo = <uint64_t*>calloc(count, sizeof(uint64_t))
        self.dirty_hi = <uint64_t*>calloc(count, sizeof(uint64_t))
        self.hdr_dirty = <uint8_t*>calloc(count, sizeof(uint8_t))
        if (self.base == NULL or self.maplen == NULL or self.fnum == NULL or self.fro == NULL or
                self.live_bytes == NULL or self.live_count == NULL or self.dirty_lo == NULL or
                self.dirty_hi == NULL or self.hdr_dirty == NULL):
            raise MemoryError()
        for i in range(count):
            self.dirty_lo[i] = <uint64_t>-1
        self.closed = False

    def _map_all(self):
        cdef void* p
        cdef uint64_t want = JRNL_HDR_PAGE + self.dsz
        cdef uint64_t size
        cdef int prot = PROT_READ if self.readonly else (PROT_READ | PROT_WRITE)
        for i in range(self.file_count):
            path = file_path(self.directory, i)
            try:
                fd = os.open(path, os.O_RDONLY if self.readonly else os.O_RDWR)
            except FileNotFoundError:
                continue                        # read-only: a missing file stays unmapped
            try:
                size = min(<uint64_t>os.fstat(fd).st_size, want)
                if size == 0:
                    continue
                p = mmap(NULL, size, prot, MAP_SHARED, fd, 0)
                if p == MAP_FAILED:
                    raise JournalError(errno, "mmap %s: %s" % (path, os.strerror(errno)))
                self.base[i] = <char*>p
                self.maplen[i] = size
            finally:
                os.close(fd)

    def _open_existing(self, dict existing, int count, int pages, bint load_data):
        cdef uint64_t want
        # Geometry from the headers (it wins over the one asked for).
        headers = {}
        for i, path in sorted(existing.items()):
            with open(path, "rb") as f:
                raw = f.read(JRNL_HDR_PAGE)
            if len(raw) < FH_SIZE:
                raise JournalCorrupt(_errno.EINVAL, "journal file %s is %d bytes: no header"
                                     % (path, len(raw)))
            try:
                headers[i] = (_parse_header(raw), raw)
            except JournalCorrupt as e:
                raise JournalCorrupt(_errno.EINVAL, "%s in %s (queue %r)"
                                     % (e.strerror, path, self.name)) from None
        geos = {(h["count"], h["pages"]) for h, raw in headers.values() if h["valid"]}
        if len(geos) > 1:
            raise JournalCorrupt(_errno.EINVAL, "journal %s: files disagree on geometry %s"
                                 % (self.directory, sorted(geos)))
        if geos:
            count, pages = geos.pop()
        damage = []
        for i, path in sorted(existing.items()):
            if i >= count:
                damage.append(Damage(path, 0, "file index %d beyond file_count %d: ignored" % (i, count)))
        want = JRNL_HDR_PAGE + <uint64_t>pages * JRNL_PAGE
        if not self.readonly:
            for n in os.listdir(self.directory):
                if n.startswith("journal-") and n.endswith(".cjf.tmp"):
                    os.unlink(os.path.join(self.directory, n))
        for i in range(count):
            path = file_path(self.directory, i)
            if i not in existing:
                damage.append(Damage(path, 0, "file missing" + ("" if self.readonly else ": recreated empty")))
                if not self.readonly:
                    os.rename(_make_file(self.directory, i, count, pages, self.name), path)
                    _fsync_dir(self.directory)
                continue
            size = os.path.getsize(path)
            if size < want:
                damage.append(Damage(path, size, "file truncated: %d bytes, expected %d%s"
                                     % (size, want, "" if self.readonly else "; extended with zeroes")))
                if not self.readonly:
                    fd = os.open(path, os.O_RDWR)
                    try:
                        os.ftruncate(fd, want)
                        try:
                            os.posix_fallocate(fd, 0, want)
                        except OSError:
                            pass
                        os.fsync(fd)
                    finally:
                        os.close(fd)
        self._alloc(count, pages)
        self._map_all()
        self._recover(headers, damage, load_data)

    # -- recovery -------------------------------------------------------------------------------

    def _recover(self, dict headers, list damage, bint load_data):
        cdef int i, idx, ci, nxt
        cdef uint64_t off, seq, last_seq = 0, max_seq = 0, size, alen, rid, reclen
        cdef uint64_t dlen_here, got, take, roff, rem_body
        cdef uint32_t crc, want_crc
        cdef uint16_t flags, xl
        cdef const char* p
        cdef char rtype
        cdef uint64_t dsz = self.dsz
        cdef int count = self.file_count
        cdef bint stop_damage
        reset = []                              # files whose header is to be reset (write mode)
        numbers = {}                            # file number -> index
        for i in range(count):
            if self.base[i] == NULL or self.maplen[i] < FH_SIZE:
                continue
            hdr = headers.get(i)
            if hdr is None:
                continue                        # recreated: free
            h = hdr[0]
            path = file_path(self.directory, i)
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
            self.fro[i] = min(<uint64_t>h["fro"], dsz)
        # The checkpoint: which file number recovery starts from.
        ckpts = []
        if self.base[0] != NULL and self.maplen[0] >= CKPT_OFF1 + CKPT_SIZE:
            for c in (_parse_ckpt(PyBytes_FromStringAndSize(self.base[0] + CKPT_OFF0, CKPT_SIZE)),
                      _parse_ckpt(PyBytes_FromStringAndSize(self.base[0] + CKPT_OFF1, CKPT_SIZE))):
                if c is not None:
                    ckpts.append(c)
        if ckpts:
            self.ckpt_gen, start = max(ckpts)
        else:
            self.ckpt_gen = 0
            start = min(numbers) if numbers else 0
            if numbers:
                damage.append(Damage(file_path(self.directory, 0), CKPT_OFF0,
                                     "no valid checkpoint: starting at the oldest file (number %d)" % start))
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
                if chain and numbers[n] != (chain[len(chain) - 1] + 1) % count:
                    damage.append(Damage(file_path(self.directory, numbers[n]), 0,
                                         "file number %d is not the ring successor of number %d"
                                         % (n, n - 1)))
                    break
                chain.append(numbers[n])
                n += 1
        # Scan the record stream along the chain.
        live = self.live
        txns = self.txns
        scanned = self.scanned
        ci = 0
        off = self.fro[chain[0]] if chain else 0
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
            if JRNL_HDR_PAGE + off + JRNL_REC_HDR > self.maplen[idx]:
                end_reason = "end of a truncated file"
                break
            p = self.base[idx] + JRNL_HDR_PAGE + off
            if p[0] != b'c' or p[1] != b'J':
                end_reason = "no record (end of the written data)"
                break
            if <uint8_t>p[3] != FORMAT_VERSION:
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
                take = min(rem_body, dsz - roff)
                if JRNL_HDR_PAGE + roff + take > self.maplen[chain[nxt]]:
                    break
                crc = crc32c(crc, self.base[chain[nxt]] + JRNL_HDR_PAGE + roff, take)
                rem_body -= take
                roff += take
            if rem_body:
                end_reason = "record seq %d runs past the written files (torn)" % seq
                stop_damage = True
                break
            if crc != want_crc:
                end_reason = "record seq %d checksum mismatch (torn or corrupt)" % seq
                stop_damage = True
                break
            # accepted
            last_seq = seq
            alen = align_up(reclen)
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
                if off != self.fro[chain[ci]]:
                    end_reason = "record seq %d ends at %d but the next file's first-record offset is %d" % (
                        seq, off, self.fro[chain[ci]])
                    stop_damage = True
                    break
        # where it stopped
        if chain:
            idx = chain[ci]
            self.end = Damage(file_path(self.directory, idx), JRNL_HDR_PAGE + min(off, dsz), end_reason)
            if stop_damage:
                damage.append(self.end)
            else:
                probe = self._probe(idx, off, last_seq)
                if probe is not None:
                    stop_damage = True
                    damage.append(Damage(self.end.file, self.end.offset,
                                         "%s, but a valid record (seq %d) follows at offset %d: the records"
                                         " between are lost" % (end_reason, probe[0], probe[1])))
            for j in range(ci + 1, len(chain)):
                damage.append(Damage(file_path(self.directory, chain[j]), 0,
                                     "file (number %d) after the stop point: its records are ignored"
                                     % self.fnum[chain[j]]))
            if last_seq > max_seq:
                max_seq = last_seq
        else:
            self.end = Damage(self.directory, 0, "no file in use")
        # resulting state
        for j in range(count):
            self.live_bytes[j] = 0
            self.live_count[j] = 0
        self.total_live = 0
        for e in live.values():
            self._pin((<_Entry>e).fidx, (<_Entry>e).alen, 1)
        for xid_, t in txns.items():
            for d in (<_Txn>t).deq:
                self._pin(d[1], d[3], 1)
        self.in_doubt = {}
        for xid_, t in txns.items():
            ops = [("enqueue", r) for r in (<_Txn>t).enq] + [("dequeue", d[0]) for d in (<_Txn>t).deq]
            self.in_doubt[xid_] = ops
        entries = sorted((e for e in live.values() if (<_Entry>e).xid is None), key=lambda e: e.seq)
        self.recovered = [self._record(e, load_data) for e in entries]
        self.damage = damage
        self.next_seq = max_seq + SEQ_JUMP if (max_seq or chain) else 1
        self.synced_upto = self.next_seq - 1
        for e in damage:
            log.warning("journal %s: %s at offset %d: %s", self.name, e.file, e.offset, e.reason)
        if self.readonly:
            if chain:
                self.head = chain[0]
                self.w = chain[ci]
                self.woff = min(off, dsz)
            return
        # Make the state on disk match what was recovered, then a fresh checkpoint.
        in_chain = set(chain[:ci + 1])
        for i in reset:
            self.fnum[i] = 0
            self._write_file_header(i, 0)
        for j in range(ci + 1, len(chain)):
            self.fnum[chain[j]] = 0             # dropped (reported above): free from now on
            self.fro[chain[j]] = 0
            self._write_file_header(chain[j], 0)
        if chain:
            self.head = chain[0]
            self.w = chain[ci]
            self.woff = min(off, dsz)
            if stop_damage and self.woff < dsz:
                # Repair (as etcd's wal does): clear the rest of the file from the stop point, so
                # that the damage is reported once and the next open ends cleanly here.
                memset(self.base[self.w] + JRNL_HDR_PAGE + self.woff, 0, dsz - self.woff)
                self.dirty_lo[self.w] = self.woff
                self.dirty_hi[self.w] = dsz
        else:
            # nothing usable: start a fresh lap in file 0 (numbers above any seen)
            self.head = self.w = 0
            self.woff = 0
            self.fnum[0] = (max(numbers) if numbers else 0) + 1
            self.fro[0] = 0
            self._write_file_header(0, self.next_seq)
        self.ckpt_head = self.fnum[self.head]
        self._write_checkpoint(self.fnum[self.head])
        self.sync()

    cdef void _drop_pages(self, int i, uint64_t lo, uint64_t hi) noexcept nogil:
        """Unmap the pages of data range [lo, hi) of file i from this process (MADV_DONTNEED: they
        stay in the page cache, dirty ones stay dirty; the next touch maps them again), so the
        journal's mapped data does not count in the broker's resident memory. A range running into
        the next file is cut at the end of this one. The page holding the write position is never
        dropped (an append may be writing it on another thread). The range is widened to whole
        64 KiB windows: a read fault maps the cached pages around it too (the kernel's fault-around)."""
        cdef uint64_t a, b, wp
        if self.base == NULL or self.base[i] == NULL:
            return
        if hi > self.dsz:
            hi = self.dsz
        a = (JRNL_HDR_PAGE + lo) & ~(<uint64_t>FAULT_AROUND - 1)
        if a < JRNL_HDR_PAGE:
            a = JRNL_HDR_PAGE
        b = (JRNL_HDR_PAGE + hi + FAULT_AROUND - 1) & ~(<uint64_t>FAULT_AROUND - 1)
        if i == self.w:
            wp = (JRNL_HDR_PAGE + self.woff) & ~(<uint64_t>JRNL_HDR_PAGE - 1)
            if b > wp:
                b = wp
        if b > self.maplen[i]:
            b = self.maplen[i]
        if b > a:
            madvise(self.base[i] + a, b - a, MADV_DONTNEED)

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
            e.fidx = idx
            e.off = off
            e.alen = alen
            e.doff = JRNL_REC_HDR + xl
            e.uflags = flags >> 8
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
                t.deq.append([rid, idx, off, alen])
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

    def _probe(self, int idx, uint64_t off, uint64_t last_seq):
        """After a normal-looking stop, look further in the same file for a newer valid record
        (which would mean the stop was damage, not the end). (seq, file offset) or None."""
        cdef uint64_t o = align_up(off + 1)
        cdef uint64_t lim = min(self.maplen[idx], JRNL_HDR_PAGE + self.dsz)
        cdef const char* p
        cdef uint64_t size
        cdef uint32_t crc
        while JRNL_HDR_PAGE + o + JRNL_REC_HDR <= lim:
            p = self.base[idx] + JRNL_HDR_PAGE + o
            if p[0] == b'c' and p[1] == b'J' and <uint8_t>p[3] == FORMAT_VERSION and ld64(p + 8) > last_seq:
                size = ld32(p + 24)
                if JRNL_HDR_PAGE + o + JRNL_REC_HDR + size <= lim:
                    crc = crc32c(0, p, 4)
                    crc = crc32c(crc, p + 8, JRNL_REC_HDR - 8)
                    crc = crc32c(crc, p + JRNL_REC_HDR, size)
                    if crc == ld32(p + 4):
                        return ld64(p + 8), JRNL_HDR_PAGE + o
            o += JRNL_ALIGN
        return None

    def _record(self, _Entry e, bint load_data):
        return Record(e.rid, e.seq, self.read(e.rid) if load_data else None, e.dcount, e.uflags,
                      e.xid)

    # -- reading -------------------------------------------------------------------------------

    cdef int _copy_out(self, int fidx, uint64_t off, uint64_t skip, char* dest, uint64_t n) except -1:
        """Copy n bytes starting ``skip`` bytes into the record at (fidx, off), across files."""
        cdef uint64_t pos = off + skip
        cdef uint64_t take
        cdef int i = fidx
        while pos >= self.dsz:
            pos -= self.dsz
            i = (i + 1) % self.file_count
        while n:
            take = min(n, self.dsz - pos)
            if JRNL_HDR_PAGE + pos + take > self.maplen[i]:
                raise JournalError(_errno.EIO, "journal %s: record data beyond the end of %s"
                                   % (self.name, file_path(self.directory, i)))
            memcpy(dest, self.base[i] + JRNL_HDR_PAGE + pos, take)
            dest += take
            n -= take
            pos = 0
            i = (i + 1) % self.file_count
        return 0

    def _gather(self, int fidx, uint64_t off, uint64_t skip, uint64_t n):
        b = PyBytes_FromStringAndSize(NULL, n)
        self._copy_out(fidx, off, skip, PyBytes_AS_STRING(b), n)
        return b

    cpdef bytes read(self, uint64_t rid):
        """The message bytes of live record ``rid`` (one copy out of the mapping). KeyError if the
        journal holds no such record."""
        cdef _Entry e = self.live.get(rid)
        if e is None:
            raise KeyError(rid)
        if self.closed:
            raise JournalError(_errno.EBADF, "journal %s is closed" % self.name)
        cdef uint64_t pos = e.off + e.doff
        if pos + e.dlen <= self.dsz:            # the common case: one slice
            out = PyBytes_FromStringAndSize(self.base[e.fidx] + JRNL_HDR_PAGE + pos, e.dlen)
        else:
            out = self._gather(e.fidx, e.off, e.doff, e.dlen)
        if not self.opening:                    # flow-to-disk reads: no resident copy stays mapped
            self._drop_pages(e.fidx, pos, pos + e.dlen)
        return out

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

    # -- appending -------------------------------------------------------------------------------

    cdef int _check_writable(self) except -1:
        if self.closed:
            raise JournalError(_errno.EBADF, "journal %s is closed" % self.name)
        if self.readonly:
            raise JournalError(_errno.EROFS, "journal %s is open read-only" % self.name)
        if self.failed_errno:
            raise JournalError(self.failed_errno, "journal %s failed to sync earlier (%s): it takes no"
                               " more records" % (self.name, os.strerror(self.failed_errno)))
        return 0

    cdef uint64_t _avail(self, bint enq) noexcept:
        """Bytes writable now: the rest of the writer's file plus the free files, less the reserve
        file for enqueues."""
        cdef int used = (self.w - self.head + self.file_count) % self.file_count + 1
        cdef int64_t free_files = self.file_count - used - (1 if enq else 0)
        cdef int64_t a = <int64_t>(self.dsz - self.woff) + free_files * <int64_t>self.dsz
        return <uint64_t>a if a > 0 else 0

    cdef bint _reusable(self, int i) noexcept:
        """A free file may be overwritten unless recovery could still need it: its number lies
        between the durable checkpoint's head and the writer's."""
        return not (self.ckpt_head <= self.fnum[i] <= self.fnum[self.w])

    def _capacity_message(self, uint64_t alen):
        return ("Journal full on queue %r: %d files x %d pages of 64 KiB (%d bytes) in %s, %d bytes of"
                " live records; a record of %d bytes does not fit"
                % (self.name, self.file_count, self.file_size, self.file_count * self.dsz,
                   self.directory, self.total_live, alen))

    cdef int _make_room(self, uint64_t alen, bint enq) except -1:
        cdef int rounds = 0
        cdef uint64_t rem, k, j
        if enq and self.total_live + alen > <uint64_t>(self.file_count - 2) * self.dsz:
            raise JournalFull(_errno.ENOSPC, self._capacity_message(alen))
        if alen > self._avail(enq) and not self.compacting:
            while alen > self._avail(enq) and self.head != self.w and rounds < self.file_count:
                if self.live_bytes[self.head] > self._avail(False):
                    break
                self._release_head()
                rounds += 1
        if alen > self._avail(enq):
            raise JournalFull(_errno.ENOSPC, self._capacity_message(alen))
        # Every file this record will enter must be safe to overwrite.
        rem = self.dsz - self.woff
        if alen > rem:
            k = (alen - rem + self.dsz - 1) // self.dsz
            for j in range(1, k + 1):
                if not self._reusable((self.w + j) % self.file_count):
                    self.n_stalls += 1
                    self.sync()
                    break
        return 0

    cdef int _release_head(self) except -1:
        """Copy the head file's pinning records forward (MOVED), then let the file go."""
        cdef int h = self.head
        cdef uint64_t off, size, alen, xl
        cdef const char* p
        cdef _Entry e
        cdef char ext[JRNL_MOVED_EXT]
        cdef uint32_t nfidx
        cdef uint64_t noff, seq
        if self.live_count[h]:
            self.compacting = True
            try:
                off = self.fro[h]
                while off < self.dsz:
                    p = self.base[h] + JRNL_HDR_PAGE + off
                    size = ld32(p + 24)
                    xl = ld16(p + 30)
                    alen = align_up(JRNL_REC_HDR + size)
                    rid = ld64(p + 16)
                    if p[2] == b'e':
                        e = self.live.get(rid)
                        if e is not None and e.fidx == h and e.off == off:
                            data = self._gather(h, off, e.doff, e.dlen)
                            st64(ext, e.seq)
                            st32(ext + 8, e.dcount)
                            st32(ext + 12, 0)
                            seq = self._write(b'e', e.rid, JRNL_F_MOVED | (e.uflags << 8), e.xid, ext,
                                              JRNL_MOVED_EXT, PyBytes_AS_STRING(data), e.dlen, False,
                                              &nfidx, &noff)
                            self._pin(h, e.alen, -1)
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
                                    self._write(b'd', rid, 0, xid, NULL, 0, NULL, 0, False, &nfidx, &noff)
                                    self._pin(h, d[3], -1)
                                    d[1] = nfidx
                                    d[2] = noff
                                    self._pin(nfidx, d[3], 1)
                                    self.n_moved += 1
                                    self.n_moved_bytes += d[3]
                                    break
                    off += alen
            finally:
                self.compacting = False
            self.n_compactions += 1
        self.head = (h + 1) % self.file_count
        if self.writer is not None:
            try:
                self.writer.flush(self, None)  # get the checkpoint durable soon
            except JournalError:
                pass                            # writer shut down: the next sync() writes it
        return 0

    cdef void _write_file_header(self, int i, uint64_t first_seq) noexcept:
        """Rewrite file i's header in place, in pure C (no Python call: atomic with respect to a
        sync snapshot). Built aside then copied, so the magic bytes never change on disk."""
        cdef char buf[FH_SIZE]
        cdef timespec ts
        memset(buf, 0, FH_SIZE)
        memcpy(buf, b"CYPIDJNL", 8)
        st16(buf + 8, JRNL_VERSION)
        st16(buf + 10, <uint16_t>i)
        st16(buf + 12, <uint16_t>self.file_count)
        st32(buf + 16, <uint32_t>self.file_size)
        st32(buf + 20, <uint32_t>self.cname_len)
        st64(buf + 24, self.fnum[i])
        st64(buf + 32, first_seq)
        st64(buf + 40, self.fro[i])
        clock_gettime(CLOCK_REALTIME, &ts)
        st64(buf + 48, <uint64_t>ts.tv_sec * 1000000000 + <uint64_t>ts.tv_nsec)
        memcpy(buf + 56, self.cname, self.cname_len)
        st32(buf + 124, crc32c(0, buf, 124))
        memcpy(self.base[i], buf, FH_SIZE)
        self.hdr_dirty[i] = 1

    def _write_checkpoint(self, uint64_t head):
        self.ckpt_gen += 1
        b = _build_ckpt(self.ckpt_gen, head)
        memcpy(self.base[0] + (CKPT_OFF1 if self.ckpt_gen & 1 else CKPT_OFF0), PyBytes_AS_STRING(b),
               CKPT_SIZE)
        self.hdr_dirty[0] = 1

    cdef int _enter_next(self, uint64_t remaining, uint64_t first_seq) except -1:
        cdef int nxt = (self.w + 1) % self.file_count
        if nxt == self.head:
            raise JournalError(_errno.EIO, "journal %s: internal error, writer ran into the head" % self.name)
        self.fnum[nxt] = self.fnum[self.w] + 1
        self.fro[nxt] = min(remaining, self.dsz)
        self._write_file_header(nxt, first_seq)
        self.w = nxt
        self.woff = 0
        return 0

    cdef int _put(self, const char* src, uint64_t n, uint64_t* remaining, uint64_t seq) except -1:
        """Copy n bytes of the current record (``remaining`` bytes of it, with padding, still to
        write; src NULL = zeroes) to the write position, moving to the next file as needed."""
        cdef uint64_t take
        while n:
            if self.woff == self.dsz:
                self._enter_next(remaining[0], seq + 1)
            take = min(n, self.dsz - self.woff)
            if src != NULL:
                memcpy(self.base[self.w] + JRNL_HDR_PAGE + self.woff, src, take)
                src += take
            else:
                memset(self.base[self.w] + JRNL_HDR_PAGE + self.woff, 0, take)
            if self.woff < self.dirty_lo[self.w]:
                self.dirty_lo[self.w] = self.woff
            self.woff += take
            if self.woff > self.dirty_hi[self.w]:
                self.dirty_hi[self.w] = self.woff
            n -= take
            remaining[0] -= take
        return 0

    cdef uint64_t _write(self, char rtype, uint64_t rid, uint16_t flags, xid,
                         const char* ext, uint32_t elen, const char* data, uint64_t dlen,
                         bint enq, uint32_t* fidx, uint64_t* off) except? 0:
        """Write one record; returns its seq and where its header went."""
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
        # -- from here on pure C: a sync snapshot never sees half of it --
        seq = self.next_seq
        hdr[0] = b'c'
        hdr[1] = b'J'
        hdr[2] = rtype
        hdr[3] = FORMAT_VERSION
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
        return seq

    cpdef uint64_t append_enqueue(self, uint64_t rid, data, xid=None, int flags=0) except? 0:
        """Append an enqueue of ``rid`` with message bytes ``data`` (any buffer); returns its seq.
        ``xid``: part of that open transaction. ``flags``: 8 bits kept with the record. Raises
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
        if flags < 0 or flags > 255:
            raise ValueError("flags must be 0..255")
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
        seq = self._write(b'e', rid, <uint16_t>(flags << 8), bx, NULL, 0, dp, dl, True, &fidx, &off)
        e.rid = rid
        e.seq = seq
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
            t.deq.append([rid, fidx, off, align_up(JRNL_REC_HDR + len(bx))])
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
        self.in_doubt.pop(bx, None)
        return seq

    cpdef uint64_t append_commit(self, xid) except? 0:
        """Commit transaction ``xid``: its enqueues become live, its dequeues take effect."""
        return self._end_txn(xid, True)

    cpdef uint64_t append_abort(self, xid) except? 0:
        """Abort transaction ``xid``: its enqueues are dropped, its dequeues undone."""
        return self._end_txn(xid, False)

    # -- durability -------------------------------------------------------------------------------

    def sync(self):
        """Make every record appended so far durable (msync, GIL released), write the checkpoint if
        the head moved; return the highest durable seq. Blocks: call it off the event loop."""
        cdef int i, k, nr = 0, rc = 0, err = 0
        cdef uint64_t lo, hi, upto, head_num
        cdef uint64_t lens[64]
        cdef uint64_t drop_lens[64]
        cdef char* addrs[64]
        with self.lock:
            if self.closed or self.readonly:
                return self.synced_upto
            if self.failed_errno:
                raise JournalError(self.failed_errno, "journal %s failed to sync earlier" % self.name)
            # Snapshot (GIL held). The head and the seq first: every record up to upto was written,
            # and its dirty range marked, before this point, so the ranges read next cover it.
            head_num = self.fnum[self.head]
            upto = self.next_seq - 1
            snap_w = self.w
            snap_woff = self.woff
            ranges = []
            for i in range(self.file_count):
                if self.hdr_dirty[i]:
                    self.hdr_dirty[i] = 0
                    ranges.append((i, 0, JRNL_HDR_PAGE))
                lo = self.dirty_lo[i]
                hi = self.dirty_hi[i]
                if hi > lo:
                    self.dirty_lo[i] = <uint64_t>-1
                    self.dirty_hi[i] = 0
                    lo = JRNL_HDR_PAGE + (lo & ~(<uint64_t>JRNL_HDR_PAGE - 1))
                    ranges.append((i, lo, JRNL_HDR_PAGE + hi - lo))
            self.n_syncs += 1
            k = 0
            while k < len(ranges):
                nr = 0
                while k < len(ranges) and nr < 64:
                    i, lo, hi = ranges[k]
                    addrs[nr] = self.base[i] + lo
                    lens[nr] = hi
                    drop_lens[nr] = 0
                    if lo >= JRNL_HDR_PAGE:                 # a data range (not a header page)
                        end = lo + hi
                        if i == snap_w:
                            end = min(end, (JRNL_HDR_PAGE + snap_woff) & ~(<uint64_t>JRNL_HDR_PAGE - 1))
                        if end > lo:
                            drop_lens[nr] = end - lo
                    nr += 1
                    k += 1
                with nogil:
                    for i in range(nr):
                        rc = msync(addrs[i], lens[i], MS_SYNC)
                        if rc != 0:
                            err = errno
                            break
                    if not err:
                        # Give the synced pages back (they stay in the page cache): the journal's
                        # data must not count in the broker's resident memory. Never the page of
                        # the write position at the snapshot, which an append may be writing now.
                        for i in range(nr):
                            if drop_lens[i]:
                                madvise(addrs[i], drop_lens[i], MADV_DONTNEED)
                if err:
                    self.failed_errno = err
                    raise JournalError(err, "journal %s: msync failed: %s" % (self.name, os.strerror(err)))
            if upto > self.synced_upto:
                self.synced_upto = upto
            self.dur_w = snap_w
            self.dur_woff = snap_woff
            if head_num > self.ckpt_head:
                self._write_checkpoint(head_num)
                self.hdr_dirty[0] = 0
                addrs[0] = self.base[0]
                with nogil:
                    rc = msync(addrs[0], JRNL_HDR_PAGE, MS_SYNC)
                    if rc != 0:
                        err = errno
                if err:
                    self.failed_errno = err
                    raise JournalError(err, "journal %s: msync failed: %s" % (self.name, os.strerror(err)))
                self.ckpt_head = head_num
            return self.synced_upto

    def flush_async(self, callback=None):
        """Ask the journal's writer thread to sync; it then calls ``callback(synced_seq, error)``
        from that thread (error None or the JournalError). Many calls share one sync."""
        if self.writer is None:
            raise JournalError(_errno.EINVAL, "journal %s has no writer" % self.name)
        self.writer.flush(self, callback)

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
        """The write position when the last completed sync took its snapshot: every byte before
        it (in ring order from the head) is durable."""
        return self.dur_w, self.dur_woff

    @property
    def capacity(self):
        """Data bytes of all files."""
        return self.file_count * self.dsz

    def stats(self):
        """Counters for management and the tool."""
        return dict(
            file_count=self.file_count, file_size=self.file_size, capacity=self.file_count * self.dsz,
            live_records=len(self), live_bytes=self.total_live,
            head=self.head, writer=self.w, write_offset=self.woff,
            files_in_use=(self.w - self.head + self.file_count) % self.file_count + 1,
            next_seq=self.next_seq, synced_seq=self.synced_upto,
            open_transactions=len(self.txns),
            compactions=self.n_compactions, moved_records=self.n_moved, moved_bytes=self.n_moved_bytes,
            stalls=self.n_stalls, syncs=self.n_syncs,
        )

    def file_info(self):
        """Per file: index, path, number, fro, live record count and bytes, in-use flag."""
        out = []
        used = {(self.head + k) % self.file_count
                for k in range((self.w - self.head + self.file_count) % self.file_count + 1)}
        for i in range(self.file_count):
            out.append(dict(index=i, path=file_path(self.directory, i), number=self.fnum[i],
                            fro=self.fro[i], live_records=self.live_count[i],
                            live_bytes=self.live_bytes[i], in_use=i in used,
                            mapped=self.maplen[i]))
        return out

    # -- closing ------------------------------------------------------------------------------

    def close(self, bint sync=True):
        """Sync (unless sync=False) and unmap. Idempotent."""
        if self.closed:
            return
        if sync and not self.readonly and not self.failed_errno:
            self.sync()
        with self.lock:
            self._unmap()

    def _unmap(self):
        if self.closed:
            return
        self.closed = True
        if self.base != NULL:
            for i in range(self.file_count):
                if self.base[i] != NULL:
                    munmap(self.base[i], self.maplen[i])
                    self.base[i] = NULL

    def remove(self):
        """Close without syncing and delete the journal's files (the queue is being deleted)."""
        self.close(sync=False)
        for i in range(self.file_count):
            try:
                os.unlink(file_path(self.directory, i))
            except FileNotFoundError:
                pass
        try:
            os.rmdir(self.directory)
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __dealloc__(self):
        if self.base != NULL:
            for i in range(self.file_count):
                if self.base[i] != NULL:
                    munmap(self.base[i], self.maplen[i])
            free(self.base)
        free(self.maplen)
        free(self.fnum)
        free(self.fro)
        free(self.live_bytes)
        free(self.live_count)
        free(self.dirty_lo)
        free(self.dirty_hi)
        free(self.hdr_dirty)

    def __repr__(self):
        return "<Journal %r %dx%d in %s>" % (self.name, self.file_count, self.file_size, self.directory)


# ---------------------------------------------------------------------------------------------

class JournalWriter:
    """One thread that syncs the journals of a broker: ``flush(journal, callback)`` queues a
    request (thread-safe, never blocks on the disk); the thread syncs every journal with
    requests pending (each once, however many requests), then calls each ``callback(seq, error)``
    with that journal's synced seq, from the writer thread. Use loop.call_soon_threadsafe in
    the callback to get back to an event loop."""

    def __init__(self, name="journal-writer"):
        self._cond = threading.Condition()
        self._pending = {}                      # journal -> [callbacks]
        self._closing = False
        self._busy = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def flush(self, journal, callback=None):
        with self._cond:
            if self._closing:
                raise JournalError(_errno.ESHUTDOWN, "journal writer is closed")
            cbs = self._pending.get(journal)
            if cbs is None:
                cbs = self._pending[journal] = []
            if callback is not None:
                cbs.append(callback)
            self._cond.notify()

    def _run(self):
        while True:
            with self._cond:
                while not self._pending and not self._closing:
                    self._cond.wait()
                if not self._pending and self._closing:
                    return
                batch = self._pending
                self._pending = {}
                self._busy = True
            for journal, cbs in batch.items():
                err = None
                seq = 0
                try:
                    seq = journal.sync()
                except Exception as e:  # handed to every waiter, who decides what to do
                    err = e
                    log.error("journal %s: sync failed: %s", getattr(journal, "name", journal), e)
                for cb in cbs:
                    try:
                        cb(seq, err)
                    except Exception:
                        log.exception("journal sync callback failed")
            with self._cond:
                self._busy = False
                self._cond.notify_all()

    def drain(self, timeout=None):
        """Wait until every request made so far has been served (for tests and shutdown)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._pending or self._busy:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._cond.wait(remaining)
        return True

    def close(self, timeout=None):
        """Serve what is pending, then stop the thread."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._thread.join(timeout)
