# cython: language_level=3
"""cypid.pyx.journal: the C-level contract of the durable message journal.

The format is docs/JOURNAL-FORMAT.md; the Python API is the journal section of
docs/INTERFACES.md. The journal is split by concern: journal_format (bytes, CRC, errors),
journal_io (write buffer, the writer's file operations), journal_base (state, reads),
journal_recover (create, recover), this module (appends, space and growth, syncs, failure and
resume) and journal_writer (the writer thread). A Cython caller cimports ``Journal`` and calls the
``cpdef`` appends directly, without a Python attribute lookup.
"""
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, int64_t

from cypid.pyx.journal_format cimport crc32c
from cypid.pyx.journal_recover cimport JournalRecovery


cdef class Journal(JournalRecovery):
    cdef list hdr_pending               # file indexes whose header changed since the last snapshot
    cdef list to_delete                 # (fd, path) of surplus free files the writer removes
    cdef bint compacting
    cdef uint64_t lrec                  # buffer end after the last whole record (what a sync takes)
    cdef readonly int failed            # 0, or the errno of the write/sync that failed
    cdef object fail_error              # that JournalError
    cdef list stale                     # (index, offset, length) written but never synced, to clear
    cdef list stale_files               # indexes entered after the durable point, to reset
    cdef readonly object lock           # threading.Lock: held by a sync (the writer's batch)
    cdef readonly object writer         # JournalWriter or None
    cdef dict paths                     # file index -> its path, encoded
    cdef bint removing                  # remove() moved the directory away under a batch
    cdef uint64_t n_compactions, n_moved, n_moved_bytes, n_syncs, n_grown, n_shrunk, n_failures, n_stalls

    cpdef uint64_t append_enqueue(self, uint64_t rid, data, xid=*, int flags=*) except? 0
    cpdef uint64_t append_dequeue(self, uint64_t rid, xid=*) except? 0
    cpdef uint64_t append_update(self, uint64_t rid, uint32_t delivery_count) except? 0
    cpdef uint64_t append_commit(self, xid) except? 0
    cpdef uint64_t append_abort(self, xid) except? 0

    cdef int _check_writable(self) except -1
    cdef int _reusable(self, int i) noexcept
    cdef int _free_files(self) noexcept
    cdef int _make_room(self, uint64_t alen, bint enq) except -1
    cdef int _release_head(self) except -1
    cdef int _take_file(self) except -1
    cdef int _enter_next(self, uint64_t remaining, uint64_t first_seq) except -1
    cdef int _put(self, const char* src, uint64_t n, uint64_t* remaining, uint64_t seq) except -1
    cdef uint64_t _write(self, char rtype, uint64_t rid, uint16_t flags, xid,
                         const char* ext, uint32_t elen, const char* data, uint64_t dlen,
                         bint enq, uint32_t* fidx, uint64_t* off) except? 0
    cdef uint64_t _end_txn(self, xid, bint commit) except? 0
