# cython: language_level=3
"""cypid.pyx.journal: the C-level contract of the durable message journal.

The format is docs/JOURNAL-FORMAT.md; the Python API is the journal section of
docs/INTERFACES.md.  A Cython caller (the queue code, later) cimports ``Journal`` and calls the
``cpdef`` appends directly, without a Python attribute lookup.
"""
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, int64_t


cdef enum:
    JRNL_HDR_PAGE = 4096        # header page at the start of every file
    JRNL_PAGE = 65536           # file_size unit
    JRNL_VERSION = 1            # FORMAT_VERSION
    JRNL_ALIGN = 32             # records start on 32-byte boundaries
    JRNL_REC_HDR = 32           # record header size
    JRNL_MOVED_EXT = 16         # MOVED enqueue extension: orig seq, delivery count, reserved
    JRNL_F_MOVED = 0x0001       # record flag: a live record copied forward by compaction


cdef uint32_t crc32c(uint32_t crc, const void* data, size_t n) noexcept nogil
    # crc32c(0, p, n) is the CRC-32C of n bytes; pass a previous result to continue it.


cdef class _Entry:
    """A live (or transaction-pending) enqueue: where its record is and what recovery knows of it."""
    cdef readonly uint64_t rid
    cdef readonly uint64_t seq          # original seq: the record's place in queue order
    cdef uint32_t fidx                  # file index of the record header
    cdef uint64_t off                   # offset of the record header in that file's data area
    cdef uint64_t alen                  # record length with padding (what it pins)
    cdef uint64_t doff                  # offset of the message bytes from the record start
    cdef uint64_t dlen                  # message length
    cdef readonly uint32_t dcount       # delivery count (latest update)
    cdef readonly uint16_t uflags       # the caller's flags (8 bits)
    cdef object xid                     # bytes of the open transaction that enqueued it, else None
    cdef object deq_xid                 # bytes of the open transaction dequeuing it, else None


cdef class Journal:
    cdef readonly object directory      # str
    cdef readonly object name           # the queue's name (for messages)
    cdef readonly int file_count
    cdef readonly int file_size         # 64 KiB pages per file
    cdef readonly bint readonly
    cdef readonly list recovered        # Records live at open, in queue order
    cdef readonly list damage           # Damage(file, offset, reason) found at open
    cdef readonly object end            # Damage-shaped: where recovery stopped and why
    cdef readonly dict in_doubt         # xid -> [ops] open at recovery (resolve with commit/abort)
    cdef readonly list scanned          # raw records seen at recovery (only with keep_records=True)

    cdef char cname[64]                 # the name as written in file headers (UTF-8, cut at 64)
    cdef int cname_len
    cdef uint64_t dsz                   # data area bytes per file
    cdef char** base                    # per file: mmap of the whole file (header page + data)
    cdef uint64_t* maplen               # per file: bytes mapped (short files in read-only mode)
    cdef uint64_t* fnum                 # per file: file number (0 = never used)
    cdef uint64_t* fro                  # per file: first record offset in the data area
    cdef uint64_t* live_bytes           # per file: padded bytes of pinning records starting there
    cdef uint64_t* live_count           # per file: pinning records starting there
    cdef uint64_t* dirty_lo             # per file: unsynced data range [lo, hi) (lo > hi: clean)
    cdef uint64_t* dirty_hi
    cdef uint8_t* hdr_dirty             # per file: header page written since the last sync
    cdef int head                       # oldest file in use
    cdef int w                          # file being written
    cdef uint64_t woff                  # write offset in w's data area
    cdef uint64_t next_seq
    cdef uint64_t synced_upto           # every record with seq <= this is durable
    cdef int dur_w                      # write position at the last completed sync's snapshot
    cdef uint64_t dur_woff
    cdef uint64_t ckpt_head             # head file number of the last durable checkpoint
    cdef uint64_t ckpt_gen
    cdef uint64_t total_live
    cdef dict live                      # rid -> _Entry
    cdef dict txns                      # xid -> _Txn
    cdef bint compacting
    cdef bint opening                   # in __init__: reads do not give their pages back
    cdef bint closed
    cdef int failed_errno               # a sync failed: the journal refuses further work
    cdef object lock                    # threading.Lock: one sync at a time
    cdef readonly object writer         # JournalWriter or None
    cdef uint64_t n_compactions, n_moved, n_moved_bytes, n_stalls, n_syncs

    cpdef uint64_t append_enqueue(self, uint64_t rid, data, xid=*, int flags=*) except? 0
    cpdef uint64_t append_dequeue(self, uint64_t rid, xid=*) except? 0
    cpdef uint64_t append_update(self, uint64_t rid, uint32_t delivery_count) except? 0
    cpdef uint64_t append_commit(self, xid) except? 0
    cpdef uint64_t append_abort(self, xid) except? 0
    cpdef bytes read(self, uint64_t rid)

    cdef int _check_writable(self) except -1
    cdef uint64_t _avail(self, bint enq) noexcept
    cdef bint _reusable(self, int i) noexcept
    cdef int _make_room(self, uint64_t alen, bint enq) except -1
    cdef int _release_head(self) except -1
    cdef int _enter_next(self, uint64_t remaining, uint64_t first_seq) except -1
    cdef int _put(self, const char* src, uint64_t n, uint64_t* remaining, uint64_t seq) except -1
    cdef uint64_t _write(self, char rtype, uint64_t rid, uint16_t flags, xid,
                         const char* ext, uint32_t elen, const char* data, uint64_t dlen,
                         bint enq, uint32_t* fidx, uint64_t* off) except? 0
    cdef int _copy_out(self, int fidx, uint64_t off, uint64_t skip, char* dest, uint64_t n) except -1
    cdef int _pin(self, int fidx, uint64_t alen, int sign) noexcept
    cdef void _drop_pages(self, int i, uint64_t lo, uint64_t hi) noexcept nogil
    cdef void _write_file_header(self, int i, uint64_t first_seq) noexcept
    cdef uint64_t _end_txn(self, xid, bint commit) except? 0
