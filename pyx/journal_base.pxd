# cython: language_level=3
"""cypid.pyx.journal_base: the in-memory state of one queue's journal (files, live records,
write position) and reading records back; recovery (journal_recover) and writing (journal) build
on it. Format: docs/JOURNAL-FORMAT.md."""
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, int64_t

from cypid.pyx.journal_io cimport WriteBuffer


cdef class _Entry:
    """A live (or transaction-pending) enqueue: where its record is and what recovery knows of it."""
    cdef readonly uint64_t rid
    cdef readonly uint64_t seq          # original seq: the record's place in queue order
    cdef uint64_t rseq                  # seq of the record that holds it now (a MOVED copy's own)
    cdef uint32_t fidx                  # file index of the record header
    cdef uint64_t off                   # offset of the record header in that file's data area
    cdef uint64_t alen                  # record length with padding (what it pins)
    cdef uint64_t doff                  # offset of the message bytes from the record start
    cdef uint64_t dlen                  # message length
    cdef readonly uint32_t dcount       # delivery count (latest update)
    cdef readonly uint16_t uflags       # the caller's flags (8 bits)
    cdef object xid                     # bytes of the open transaction that enqueued it, else None
    cdef object deq_xid                 # bytes of the open transaction dequeuing it, else None
    # the durable copy a not-yet-synced MOVED copy replaced (prev_rseq 0: none), for a rewind
    cdef uint64_t prev_rseq
    cdef uint32_t prev_fidx
    cdef uint64_t prev_off, prev_doff, prev_alen


cdef class _Txn:
    cdef list enq       # rids enqueued under this xid
    cdef list deq       # [rid, fidx, off, alen, seq] of its dequeue records


cdef class JournalBase:
    cdef readonly object directory      # str
    cdef readonly object name           # the queue's name (for messages)
    cdef readonly int file_count        # initial number of files, and the unit of growth
    cdef readonly int file_size         # 64 KiB pages per file
    cdef readonly int max_files         # most files the journal may have (its size limit)
    cdef readonly uint64_t max_size     # that limit in bytes (0: none but the 65535 files of the format)
    cdef readonly bint readonly
    cdef list _recovered                # Records live at open, in queue order (built when first asked)
    cdef list _rec_entries              # the _Entry of each, in queue order (until taken or built)
    cdef bint _rec_data                 # Records carry their data (load_data)
    cdef readonly list damage           # Damage(file, offset, reason) found at open
    cdef readonly object end            # Damage-shaped: where recovery stopped and why
    cdef readonly dict in_doubt         # xid -> [ops] open at recovery (resolve with commit/abort)
    cdef readonly list scanned          # raw records seen at recovery (only with keep_records=True)

    cdef char cname[64]                 # the name as written in file headers (UTF-8, cut at 64)
    cdef int cname_len
    cdef bytes bdir                     # directory, encoded
    cdef uint64_t dsz                   # data area bytes per file
    # per file index (arrays of fcap entries; index < nfiles)
    cdef int nfiles, fcap
    cdef uint64_t* fnum                 # file number (0 = free, never used)
    cdef uint64_t* fro                  # first record offset in the data area
    cdef uint64_t* fseq                 # first seq (header field)
    cdef uint64_t* lstart               # logical stream offset of data area byte 0 (while in use)
    cdef uint64_t* live_bytes           # padded bytes of pinning records starting there
    cdef uint64_t* live_count           # pinning records starting there
    cdef int* fd                        # open descriptor, -1 = none
    cdef uint8_t* exists                # 1: on disk, or assigned (the writer creates it)
    cdef uint8_t* inuse                 # part of the chain from the head to the writer's file
    cdef uint8_t* ffull                 # the writer made it full size (shorter now: truncated under us)
    cdef readonly int n_exist           # files on disk or assigned (the metrics' journal files)
    cdef object used                    # deque of file indexes in use, by file number
    cdef object segs                    # deque of (lstart, index) of files with unsynced bytes
    cdef int w                          # file being written
    cdef uint64_t woff                  # write offset in w's data area
    cdef WriteBuffer buf                # appended bytes not yet written: [buf.base, buf.end)
    cdef uint64_t next_seq
    cdef uint64_t synced_upto           # every record with seq <= this is durable
    cdef uint64_t lsynced               # logical stream offset up to which everything is durable
    cdef uint64_t ckpt_head             # head file number of the last durable checkpoint
    cdef uint64_t ckpt_gen
    cdef uint64_t total_live
    cdef dict live                      # rid -> _Entry
    cdef dict txns                      # xid -> _Txn
    cdef bint closed
    cdef list resync                    # files recovery read: fdatasynced by the writer's first batch
    cdef bint opening                   # recovery: reads go through the window
    cdef char* win                      # recovery read window (one file's bytes)
    cdef int win_idx
    cdef uint64_t win_lo, win_len

    cdef int _tables(self, int n) except -1
    cdef int _pin(self, int fidx, uint64_t alen, int sign) noexcept
    cdef int _next_file(self, int fidx) except -2
    cdef int _file_read(self, int fidx, uint64_t pos, char* dest, uint64_t n) except -1
    cdef int _copy_out(self, int fidx, uint64_t off, uint64_t skip, char* dest, uint64_t n) except -1
    cpdef bytes read(self, uint64_t rid)
