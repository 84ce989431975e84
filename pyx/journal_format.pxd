# cython: language_level=3
"""cypid.pyx.journal_format: the bytes of docs/JOURNAL-FORMAT.md (constants, CRC-32C, little-endian
loads and stores, file headers and checkpoints) and the plain-syscall helpers every journal module
shares (pread/pwrite that loop over short transfers, never a mapping)."""
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, int64_t


cdef enum:
    JRNL_HDR_PAGE = 4096        # header page at the start of every file
    JRNL_PAGE = 65536           # file_size unit
    JRNL_VERSION = 2            # file header format version written (1 is still read)
    JRNL_REC_VERSION = 1        # record format version (unchanged since version 1)
    JRNL_ALIGN = 32             # records start on 32-byte boundaries
    JRNL_REC_HDR = 32           # record header size
    JRNL_MOVED_EXT = 16         # MOVED enqueue extension: orig seq, delivery count, reserved
    JRNL_F_MOVED = 0x0001       # record flag: a live record copied forward by compaction
    JRNL_FH_SIZE = 128          # file header bytes
    JRNL_CKPT_OFF0 = 512        # checkpoint slots (file 0's header page)
    JRNL_CKPT_OFF1 = 1024
    JRNL_CKPT_SIZE = 32
    JRNL_MAX_NAME = 64
    JRNL_MAX_FILES = 65535      # file index is 16 bits
    JRNL_MAX_FILE_COUNT = 64    # qpid.file_count / --num-jfiles range (legacystore's upper bound)
    JRNL_MIN_FILE_COUNT = 3
    JRNL_MAX_FILE_SIZE = 32767  # qpid.file_size / --jfile-size-pgs range, 64 KiB pages (legacystore's)


cdef uint32_t crc32c(uint32_t crc, const void* data, size_t n) noexcept nogil
    # crc32c(0, p, n) is the CRC-32C of n bytes; pass a previous result to continue it.

cdef int pread_full(int fd, char* buf, uint64_t n, uint64_t off) noexcept nogil
    # 0, or the errno; a read that ends early (end of file) fills the rest with zeroes and returns -1.
cdef int pwrite_full(int fd, const char* buf, uint64_t n, uint64_t off) noexcept nogil
    # 0 or the errno

cdef void build_file_header(char* buf, uint16_t index, uint16_t count, uint32_t pages,
                            const char* name, uint32_t name_len, uint64_t number,
                            uint64_t first_seq, uint64_t fro) noexcept nogil
cdef void build_ckpt(char* buf, uint64_t gen, uint64_t head) noexcept nogil


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

# The caller's 15 bits of user flags in a record header's flags field (docs/JOURNAL-FORMAT.md,
# Records): bits 0..7 at bits 8..15, bits 8..14 at bits 1..7 (bit 0 is MOVED).
cdef enum:
    JRNL_USER_FLAGS_MAX = 0x7FFF

cdef inline uint16_t record_flags(uint32_t user) noexcept nogil:
    return <uint16_t>(((user & 0xFF) << 8) | (((user >> 8) & 0x7F) << 1))

cdef inline uint16_t user_flags(uint16_t rflags) noexcept nogil:
    return <uint16_t>((rflags >> 8) | (((rflags >> 1) & 0x7F) << 8))
