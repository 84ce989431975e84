# cython: language_level=3
"""cypid.pyx.journal_io: the journal's write buffer and the batches of file operations its writer
thread runs without the GIL (docs/JOURNAL-FORMAT.md, "Write path")."""
from libc.stdint cimport uint8_t, uint32_t, uint64_t


cdef enum:
    WB_CHUNK = 262144           # write buffer chunk (bytes of the logical stream)


cdef class WriteBuffer:
    """Bytes of the journal's logical stream not yet written to a file: [base, end). The loop
    appends at ``end``; the writer reads [base, snapshot end) without the GIL while the loop appends
    beyond it, then calls release() holding the GIL. Chunks are malloc'd as needed and freed once
    written, so an idle journal holds no buffer."""
    cdef char** slots
    cdef int nslots
    cdef readonly uint64_t base
    cdef readonly uint64_t end
    cdef readonly uint64_t limit        # most bytes [base, end) may hold
    cdef int put(self, const char* src, uint64_t n) except -1     # at end; src NULL: zeroes
    cdef int copy(self, uint64_t pos, char* dest, uint64_t n) noexcept   # base <= pos, pos + n <= end
    cdef const char* at(self, uint64_t pos, uint64_t* avail) noexcept   # contiguous bytes from pos
    cdef void release(self, uint64_t upto) noexcept                     # bytes before upto are written
    cdef void reset(self, uint64_t pos) noexcept                        # drop everything: base = end = pos


cdef enum:
    OP_WRITE = 1                # pwrite len bytes at off
    OP_ZERO = 2                 # write len zero bytes at off


cdef class IoBatch:
    """One writer pass over one journal: the files it touches (``slot``: open, or create and size
    them), writes in order, then fdatasync of every file written, a size check (a file truncated
    under the broker is an error), and an optional checkpoint write + sync. ``run()`` needs no GIL;
    on failure ``err`` is the errno and ``err_slot`` the file at fault (``err_what`` says how)."""
    cdef int nslot, slot_cap
    cdef int* s_idx
    cdef int* s_fd
    cdef uint8_t* s_created
    cdef uint8_t* s_written
    cdef uint64_t* s_size           # the size the file must have (header page + data area)
    cdef uint8_t* s_must            # it had that size already: shorter means truncated under us
    cdef const char** s_path
    cdef readonly int nop
    cdef int op_cap
    cdef uint8_t* o_kind
    cdef int* o_slot
    cdef uint64_t* o_off
    cdef const char** o_ptr
    cdef uint64_t* o_len
    cdef list keep                  # Python objects whose buffers the batch points into
    cdef readonly int ndel
    cdef int* d_fd
    cdef const char** d_path
    cdef const char* dir_path
    cdef int ckpt_slot
    cdef char ckpt[32]
    cdef uint64_t ckpt_off
    cdef readonly int err
    cdef readonly int err_slot
    cdef readonly int err_what      # 0 write, 1 create, 2 sync, 3 truncated, 4 checkpoint
    cdef readonly uint64_t err_size

    cdef int slot(self, int idx, int fd, bytes path, uint64_t size, bint must) except -1
    cdef int op(self, int kind, int slot, uint64_t off, const char* ptr, uint64_t n) except -1
    cdef int delete(self, int fd, bytes path) except -1
    cdef int _fail(self, int err, int slot, int what) noexcept nogil
    cdef int run(self) noexcept nogil
