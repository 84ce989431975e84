# cython: language_level=3
"""cypid.pyx.journal_format: what docs/JOURNAL-FORMAT.md defines, as code.

CRC-32C, the file header and the checkpoint (built in C for the writer, parsed in Python for
recovery and the tool), the errors and result types of the journal API, and pread/pwrite helpers.
No journal module maps a file: a file truncated or refused under the broker gives an error (a short
read, EPERM, EIO), never a SIGBUS (JOURNAL-FORMAT.md, "Write path").
"""
import errno as _errno
import os
from collections import namedtuple

from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t
from libc.string cimport memcpy, memset
from libc.errno cimport errno, EINTR, EIO
from posix.time cimport clock_gettime, timespec, CLOCK_REALTIME
from posix.unistd cimport pread, pwrite

FORMAT_VERSION = JRNL_VERSION
READABLE_VERSIONS = (1, 2)
FILE_MAGIC = b"CYPIDJNL"
CKPT_MAGIC = b"CYPIDCKP"
HEADER_PAGE = JRNL_HDR_PAGE
PAGE = JRNL_PAGE
ALIGN = JRNL_ALIGN
FH_SIZE = JRNL_FH_SIZE
CKPT_OFF0 = JRNL_CKPT_OFF0
CKPT_OFF1 = JRNL_CKPT_OFF1
CKPT_SIZE = JRNL_CKPT_SIZE
MAX_NAME = JRNL_MAX_NAME
MAX_FILES = JRNL_MAX_FILES
FILE_COUNT_RANGE = (JRNL_MIN_FILE_COUNT, JRNL_MAX_FILE_COUNT)
FILE_SIZE_RANGE = (1, JRNL_MAX_FILE_SIZE)
FILE_PATTERN = "journal-%04d.cjf"

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
# plain syscalls

cdef int pread_full(int fd, char* buf, uint64_t n, uint64_t off) noexcept nogil:
    cdef ssize_t r
    while n:
        r = pread(fd, buf, n, off)
        if r < 0:
            if errno == EINTR:
                continue
            return errno
        if r == 0:
            memset(buf, 0, n)
            return -1
        buf += r
        n -= r
        off += r
    return 0


cdef int pwrite_full(int fd, const char* buf, uint64_t n, uint64_t off) noexcept nogil:
    cdef ssize_t r
    while n:
        r = pwrite(fd, buf, n, off)
        if r < 0:
            if errno == EINTR:
                continue
            return errno
        if r == 0:
            return EIO
        buf += r
        n -= r
        off += r
    return 0


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


def file_path(directory, int index):
    return os.path.join(directory, FILE_PATTERN % index)


def check_geometry(int file_count, int file_size):
    """ValueError naming the argument and its range unless the geometry is within bounds."""
    if not JRNL_MIN_FILE_COUNT <= file_count <= JRNL_MAX_FILE_COUNT:
        raise ValueError("qpid.file_count must be %d..%d, not %d"
                         % (JRNL_MIN_FILE_COUNT, JRNL_MAX_FILE_COUNT, file_count))
    if not 1 <= file_size <= JRNL_MAX_FILE_SIZE:
        raise ValueError("qpid.file_size must be 1..%d pages of 64 KiB, not %d"
                         % (JRNL_MAX_FILE_SIZE, file_size))


# ---------------------------------------------------------------------------------------------
# file header and checkpoint

cdef void build_file_header(char* buf, uint16_t index, uint16_t count, uint32_t pages,
                            const char* name, uint32_t name_len, uint64_t number,
                            uint64_t first_seq, uint64_t fro) noexcept nogil:
    """A file header (JOURNAL-FORMAT.md) into buf[0:FH_SIZE]."""
    cdef timespec ts
    memset(buf, 0, JRNL_FH_SIZE)
    memcpy(buf, b"CYPIDJNL", 8)
    st16(buf + 8, JRNL_VERSION)
    st16(buf + 10, index)
    st16(buf + 12, count)
    st32(buf + 16, pages)
    st32(buf + 20, name_len)
    st64(buf + 24, number)
    st64(buf + 32, first_seq)
    st64(buf + 40, fro)
    clock_gettime(CLOCK_REALTIME, &ts)
    st64(buf + 48, <uint64_t>ts.tv_sec * 1000000000 + <uint64_t>ts.tv_nsec)
    memcpy(buf + 56, name, name_len)
    st32(buf + 124, crc32c(0, buf, 124))


cdef void build_ckpt(char* buf, uint64_t gen, uint64_t head) noexcept nogil:
    memset(buf, 0, JRNL_CKPT_SIZE)
    memcpy(buf, b"CYPIDCKP", 8)
    st64(buf + 8, gen)
    st64(buf + 16, head)
    st32(buf + 28, crc32c(0, buf, 28))


def parse_header(bytes b):
    """dict of a file header's fields, with 'valid' (crc ok); raises JournalCorrupt on a wrong
    magic or version."""
    if len(b) < JRNL_FH_SIZE or b[0:8] != FILE_MAGIC:
        raise JournalCorrupt(_errno.EINVAL, "bad file header magic %r" % (b[0:8],))
    version = int.from_bytes(b[8:10], "little")
    if version not in READABLE_VERSIONS:
        raise JournalCorrupt(_errno.EINVAL, "unsupported journal format version %d (this is %d)"
                             % (version, JRNL_VERSION))
    nlen = min(int.from_bytes(b[20:24], "little"), JRNL_MAX_NAME)
    return dict(
        valid=crc32c_bytes(b[:124]) == int.from_bytes(b[124:128], "little"),
        version=version,
        index=int.from_bytes(b[10:12], "little"),
        count=int.from_bytes(b[12:14], "little"),
        pages=int.from_bytes(b[16:20], "little"),
        number=int.from_bytes(b[24:32], "little"),
        first_seq=int.from_bytes(b[32:40], "little"),
        fro=int.from_bytes(b[40:48], "little"),
        entered_ns=int.from_bytes(b[48:56], "little"),
        name=b[56:56 + nlen].decode("utf-8", "replace"),
    )


def parse_ckpt(bytes b):
    """(generation, head) of a checkpoint slot, or None if it is not valid."""
    if len(b) < JRNL_CKPT_SIZE or b[0:8] != CKPT_MAGIC:
        return None
    if crc32c_bytes(b[:28]) != int.from_bytes(b[28:32], "little"):
        return None
    return int.from_bytes(b[8:16], "little"), int.from_bytes(b[16:24], "little")


def read_file_header(path):
    """The header fields of one journal file (for tools): a dict with valid (crc ok), index,
    count, pages, number, first_seq, fro, entered_ns, name and checkpoints (file 0). JournalCorrupt
    on a bad magic or version, OSError if unreadable."""
    with open(path, "rb") as f:
        raw = f.read(JRNL_HDR_PAGE)
    if len(raw) < JRNL_FH_SIZE:
        raise JournalCorrupt(_errno.EINVAL, "journal file %s is %d bytes: no header" % (path, len(raw)))
    h = parse_header(raw)
    if len(raw) >= JRNL_CKPT_OFF1 + JRNL_CKPT_SIZE:
        h["checkpoints"] = [c for c in (parse_ckpt(raw[JRNL_CKPT_OFF0:JRNL_CKPT_OFF0 + JRNL_CKPT_SIZE]),
                                        parse_ckpt(raw[JRNL_CKPT_OFF1:JRNL_CKPT_OFF1 + JRNL_CKPT_SIZE]))
                           if c]
    return h


def fsync_dir(directory):
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
