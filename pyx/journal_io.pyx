# cython: language_level=3
"""cypid.pyx.journal_io: the write buffer and the writer's batches of file operations.

No journal file is ever mapped: the loop copies records into a WriteBuffer (memory only), and the
writer thread runs an IoBatch (pwrite, fdatasync, open/posix_fallocate, unlink) with the GIL
released. A file that cannot be written gives an errno naming the file, never a signal.
"""
from libc.stdint cimport uint8_t, uint32_t, uint64_t, int64_t
from libc.stdlib cimport malloc, calloc, realloc, free
from libc.string cimport memcpy, memset
from libc.errno cimport errno, EINTR, EIO, EOPNOTSUPP, EINVAL
from posix.fcntl cimport open as c_open, O_RDWR, O_CREAT
from posix.unistd cimport close as c_close, unlink, fsync, ftruncate
from posix.stat cimport struct_stat, fstat

from cypid.pyx.journal_format cimport pwrite_full, JRNL_HDR_PAGE

cdef extern from "<fcntl.h>" nogil:
    int posix_fallocate(int fd, long offset, long len)
    int O_RDONLY
    int O_CLOEXEC

cdef extern from "<unistd.h>" nogil:
    int fdatasync(int fd)

cdef char _zeroes[65536]
memset(_zeroes, 0, sizeof(_zeroes))


cdef class WriteBuffer:

    def __cinit__(self, uint64_t limit):
        self.limit = limit
        self.nslots = <int>(limit // WB_CHUNK) + 2
        self.slots = <char**>calloc(self.nslots, sizeof(char*))
        if self.slots == NULL:
            raise MemoryError()
        self.base = 0
        self.end = 0

    def __dealloc__(self):
        if self.slots != NULL:
            for i in range(self.nslots):
                free(self.slots[i])
            free(self.slots)

    cdef int put(self, const char* src, uint64_t n) except -1:
        cdef uint64_t take, o
        cdef int s
        while n:
            s = <int>((self.end // WB_CHUNK) % self.nslots)
            o = self.end % WB_CHUNK
            if self.slots[s] == NULL:
                self.slots[s] = <char*>malloc(WB_CHUNK)
                if self.slots[s] == NULL:
                    raise MemoryError()
            take = min(n, WB_CHUNK - o)
            if src != NULL:
                memcpy(self.slots[s] + o, src, take)
                src += take
            else:
                memset(self.slots[s] + o, 0, take)
            self.end += take
            n -= take
        return 0

    cdef int copy(self, uint64_t pos, char* dest, uint64_t n) noexcept:
        cdef uint64_t take, avail
        cdef const char* p
        while n:
            p = self.at(pos, &avail)
            take = min(n, avail)
            memcpy(dest, p, take)
            dest += take
            pos += take
            n -= take
        return 0

    cdef const char* at(self, uint64_t pos, uint64_t* avail) noexcept:
        cdef int s = <int>((pos // WB_CHUNK) % self.nslots)
        cdef uint64_t o = pos % WB_CHUNK
        avail[0] = WB_CHUNK - o
        return self.slots[s] + o

    cdef void release(self, uint64_t upto) noexcept:
        cdef uint64_t k
        cdef int s
        if upto > self.end:
            upto = self.end
        # free every chunk that lies wholly before upto (and is not the one the loop writes in)
        k = self.base // WB_CHUNK
        while (k + 1) * WB_CHUNK <= upto:
            s = <int>(k % self.nslots)
            free(self.slots[s])
            self.slots[s] = NULL
            k += 1
        self.base = upto

    cdef void reset(self, uint64_t pos) noexcept:
        for i in range(self.nslots):
            free(self.slots[i])
            self.slots[i] = NULL
        self.base = pos
        self.end = pos

    @property
    def pending(self):
        """Bytes appended but not yet written to a file."""
        return self.end - self.base


cdef class IoBatch:

    def __cinit__(self, bytes directory):
        self.keep = [directory]
        self.dir_path = directory
        self.slot_cap = 0
        self.op_cap = 0
        self.ckpt_slot = -1
        self.err_slot = -1

    def __dealloc__(self):
        free(self.s_idx); free(self.s_fd); free(self.s_created); free(self.s_written)
        free(self.s_size); free(self.s_path); free(self.s_must)
        free(self.o_kind); free(self.o_slot); free(self.o_off); free(self.o_ptr); free(self.o_len)
        free(self.d_fd); free(self.d_path)

    cdef int slot(self, int idx, int fd, bytes path, uint64_t size, bint must) except -1:
        """The batch's slot for file ``idx`` (fd -1: open it, creating it if need be); the file is
        made ``size`` bytes long (preallocated) if it is shorter."""
        cdef int i
        for i in range(self.nslot):
            if self.s_idx[i] == idx:
                return i
        if self.nslot == self.slot_cap:
            self.slot_cap = self.slot_cap * 2 + 4
            self.s_idx = <int*>realloc(self.s_idx, self.slot_cap * sizeof(int))
            self.s_fd = <int*>realloc(self.s_fd, self.slot_cap * sizeof(int))
            self.s_created = <uint8_t*>realloc(self.s_created, self.slot_cap)
            self.s_written = <uint8_t*>realloc(self.s_written, self.slot_cap)
            self.s_size = <uint64_t*>realloc(self.s_size, self.slot_cap * sizeof(uint64_t))
            self.s_must = <uint8_t*>realloc(self.s_must, self.slot_cap)
            self.s_path = <const char**>realloc(self.s_path, self.slot_cap * sizeof(char*))
            if (self.s_idx == NULL or self.s_fd == NULL or self.s_created == NULL or
                    self.s_written == NULL or self.s_size == NULL or self.s_path == NULL or self.s_must == NULL):
                raise MemoryError()
        i = self.nslot
        self.s_idx[i] = idx
        self.s_fd[i] = fd
        self.s_created[i] = 0
        self.s_written[i] = 0
        self.s_size[i] = size
        self.s_must[i] = must
        self.keep.append(path)
        self.s_path[i] = path
        self.nslot += 1
        return i

    cdef int op(self, int kind, int slot, uint64_t off, const char* ptr, uint64_t n) except -1:
        if self.nop == self.op_cap:
            self.op_cap = self.op_cap * 2 + 16
            self.o_kind = <uint8_t*>realloc(self.o_kind, self.op_cap)
            self.o_slot = <int*>realloc(self.o_slot, self.op_cap * sizeof(int))
            self.o_off = <uint64_t*>realloc(self.o_off, self.op_cap * sizeof(uint64_t))
            self.o_ptr = <const char**>realloc(self.o_ptr, self.op_cap * sizeof(char*))
            self.o_len = <uint64_t*>realloc(self.o_len, self.op_cap * sizeof(uint64_t))
            if (self.o_kind == NULL or self.o_slot == NULL or self.o_off == NULL or
                    self.o_ptr == NULL or self.o_len == NULL):
                raise MemoryError()
        self.o_kind[self.nop] = kind
        self.o_slot[self.nop] = slot
        self.o_off[self.nop] = off
        self.o_ptr[self.nop] = ptr
        self.o_len[self.nop] = n
        self.s_written[slot] = 1
        self.nop += 1
        return 0

    cdef int delete(self, int fd, bytes path) except -1:
        self.d_fd = <int*>realloc(self.d_fd, (self.ndel + 1) * sizeof(int))
        self.d_path = <const char**>realloc(self.d_path, (self.ndel + 1) * sizeof(char*))
        if self.d_fd == NULL or self.d_path == NULL:
            raise MemoryError()
        self.keep.append(path)
        self.d_fd[self.ndel] = fd
        self.d_path[self.ndel] = path
        self.ndel += 1
        return 0

    def set_checkpoint(self, int slot, uint64_t off, bytes data):
        memcpy(self.ckpt, <const char*>data, 32)
        self.ckpt_slot = slot
        self.ckpt_off = off

    def fd_of(self, int slot):
        return self.s_fd[slot], self.s_idx[slot], bool(self.s_created[slot])

    def slots(self):
        """[(file index, fd, created, full size)] after run(): the journal keeps the fds."""
        return [(self.s_idx[i], self.s_fd[i], bool(self.s_created[i]), self.s_size[i] > 0)
                for i in range(self.nslot)]

    def failed_path(self):
        return self.s_path[self.err_slot].decode() if self.err_slot >= 0 else self.dir_path.decode()

    cdef int _fail(self, int err, int slot, int what) noexcept nogil:
        self.err = err if err > 0 else EIO
        self.err_slot = slot
        self.err_what = what
        return -1

    cdef int run(self) noexcept nogil:
        cdef int i, fd, rc, k
        cdef uint64_t n, take, off
        cdef bint created = False
        cdef struct_stat st
        for i in range(self.ndel):
            if self.d_fd[i] >= 0:
                c_close(self.d_fd[i])
            unlink(self.d_path[i])
        for i in range(self.nslot):
            fd = self.s_fd[i]
            if fd < 0:
                fd = c_open(self.s_path[i], O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
                if fd < 0:
                    return self._fail(errno, i, 1)
                self.s_fd[i] = fd
                self.s_created[i] = 1
            if fstat(fd, &st) != 0:
                return self._fail(errno, i, 1)
            if <uint64_t>st.st_size < self.s_size[i]:
                if self.s_must[i]:
                    self.err_size = st.st_size
                    return self._fail(EIO, i, 3)
                rc = posix_fallocate(fd, 0, <long>self.s_size[i])
                if rc != 0 and rc != EOPNOTSUPP and rc != EINVAL:
                    return self._fail(rc, i, 1)
                if rc != 0 and ftruncate(fd, <long>self.s_size[i]) != 0:
                    return self._fail(errno, i, 1)
                created = True
        for k in range(self.nop):
            i = self.o_slot[k]
            if self.o_kind[k] == OP_WRITE:
                rc = pwrite_full(self.s_fd[i], self.o_ptr[k], self.o_len[k], self.o_off[k])
                if rc:
                    return self._fail(rc, i, 0)
            else:
                n = self.o_len[k]
                off = self.o_off[k]
                while n:
                    take = min(n, sizeof(_zeroes))
                    rc = pwrite_full(self.s_fd[i], _zeroes, take, off)
                    if rc:
                        return self._fail(rc, i, 0)
                    n -= take
                    off += take
        for i in range(self.nslot):
            if self.s_written[i] or self.s_created[i]:
                if fdatasync(self.s_fd[i]) != 0:
                    return self._fail(errno, i, 2)
                if fstat(self.s_fd[i], &st) != 0:
                    return self._fail(errno, i, 2)
                if <uint64_t>st.st_size < self.s_size[i]:
                    self.err_size = st.st_size
                    return self._fail(EIO, i, 3)
        if created:
            fd = c_open(self.dir_path, O_RDONLY | O_CLOEXEC)
            if fd >= 0:
                rc = fsync(fd)
                c_close(fd)
        if self.ckpt_slot >= 0:
            rc = pwrite_full(self.s_fd[self.ckpt_slot], self.ckpt, 32, self.ckpt_off)
            if rc:
                return self._fail(rc, self.ckpt_slot, 4)
            if fdatasync(self.s_fd[self.ckpt_slot]) != 0:
                return self._fail(errno, self.ckpt_slot, 4)
        return 0
