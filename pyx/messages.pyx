# cython: language_level=3
"""The message store and the FIFO / priority orderings (see messages.pxd for the design)."""
cimport cython
from cpython.mem cimport PyMem_Free, PyMem_Malloc, PyMem_Realloc
from cpython.ref cimport Py_XDECREF
from libc.stdint cimport int64_t, uint32_t
from libc.string cimport memcpy, memmove, memset

cdef enum:
    STORE_MIN_CAP = 16
    # Compact when at least this many slots are in use and 3 in 4 of them are holes.
    STORE_COMPACT_MIN = 64


# -- the store -----------------------------------------------------------------------------------
cdef int _store_reshape(Store* s, Py_ssize_t newcap, bint drop_deleted) except -1:
    """Move the entries into a new buffer of newcap slots, logical 0 at slot 0, optionally
    leaving the DELETED ones behind."""
    cdef Entry* nb = <Entry*>PyMem_Malloc(newcap * sizeof(Entry))
    cdef Py_ssize_t i, n = 0, first, run
    cdef Entry* e
    if nb == NULL:
        raise MemoryError()
    if drop_deleted:
        for i in range(s.count):
            e = store_at(s, i)
            if e.state != ST_DELETED:
                nb[n] = e[0]
                n += 1
        s.first_avail = 0
    elif s.count:
        first = s.head
        run = s.cap - first
        if run > s.count:
            run = s.count
        memcpy(nb, &s.buf[first], run * sizeof(Entry))
        if run < s.count:
            memcpy(&nb[run], s.buf, (s.count - run) * sizeof(Entry))
        n = s.count
    PyMem_Free(s.buf)
    s.buf = nb
    s.cap = newcap
    s.head = 0
    s.count = n
    return 0


cdef Entry* store_append(Store* s) except NULL:
    """A fresh slot at the tail (the caller fills every field and sets state)."""
    cdef Py_ssize_t newcap
    cdef Entry* e
    if s.count == s.cap:
        newcap = s.cap * 2 if s.cap else STORE_MIN_CAP
        _store_reshape(s, newcap, False)
    e = store_at(s, s.count)
    memset(e, 0, sizeof(Entry))
    s.count += 1
    s.live += 1
    return e


cdef Py_ssize_t store_lower_bound(Store* s, int64_t seq) noexcept:
    """The first logical index whose seq is >= seq (count if none)."""
    cdef Py_ssize_t lo, hi, mid
    cdef int64_t first
    if s.count == 0:
        return 0
    first = store_at(s, 0).seq
    if seq <= first:
        return 0
    mid = <Py_ssize_t>(seq - first)
    if mid < s.count and store_at(s, mid).seq == seq:
        return mid
    lo = 0
    hi = s.count
    while lo < hi:
        mid = (lo + hi) >> 1
        if store_at(s, mid).seq < seq:
            lo = mid + 1
        else:
            hi = mid
    return lo


cdef Py_ssize_t store_find(Store* s, int64_t seq) noexcept:
    """The logical index of the entry with this seq (in any state), or -1."""
    cdef Py_ssize_t i = store_lower_bound(s, seq)
    if i < s.count and store_at(s, i).seq == seq:
        return i
    return -1


cdef Py_ssize_t store_next_available(Store* s, Py_ssize_t i) noexcept:
    while i < s.count:
        if store_at(s, i).state == ST_AVAILABLE:
            return i
        i += 1
    return -1


cdef Py_ssize_t store_first_available(Store* s) noexcept:
    cdef Py_ssize_t i = store_next_available(s, s.first_avail)
    s.first_avail = s.count if i < 0 else i
    return i


cdef Py_ssize_t store_oldest_live(Store* s) noexcept:
    """The oldest entry not deleted (the front is trimmed, so index 0), or -1."""
    return 0 if s.count else -1


cdef void store_made_available(Store* s, Py_ssize_t i) noexcept:
    if i < s.first_avail:
        s.first_avail = i


cdef void store_delete(Store* s, Py_ssize_t i) noexcept:
    """Drop the entry's references and mark it DELETED; trim the front, compact or shrink."""
    cdef Entry* e = store_at(s, i)
    cdef Py_ssize_t newcap
    if e.state == ST_DELETED:
        return
    e.state = ST_DELETED
    Py_XDECREF(e.msg)
    Py_XDECREF(e.key)
    e.msg = NULL
    e.key = NULL
    s.live -= 1
    while s.count and store_at(s, 0).state == ST_DELETED:
        s.head = (s.head + 1) & (s.cap - 1)
        s.count -= 1
        if s.first_avail:
            s.first_avail -= 1
    try:
        if s.count >= STORE_COMPACT_MIN and s.live * 4 <= s.count:
            _store_reshape(s, s.cap, True)
        if s.cap > STORE_MIN_CAP and s.count * 4 < s.cap:
            newcap = s.cap
            while newcap > STORE_MIN_CAP and s.count * 4 < newcap:
                newcap >>= 1
            _store_reshape(s, newcap, False)
    except MemoryError:
        pass    # keeping the bigger buffer is always correct


cdef void store_clear(Store* s) noexcept:
    cdef Py_ssize_t i
    cdef Entry* e
    for i in range(s.count):
        e = store_at(s, i)
        Py_XDECREF(e.msg)
        Py_XDECREF(e.key)
    PyMem_Free(s.buf)
    s.buf = NULL
    s.cap = s.head = s.count = s.live = s.first_avail = 0


# -- a FIFO of sequence numbers ------------------------------------------------------------------
cdef int fifo_reserve(SeqFifo* f) except -1:
    """Room for one more element at the end."""
    cdef Py_ssize_t n = f.end - f.start
    cdef Py_ssize_t newcap
    cdef int64_t* nb
    if f.end < f.cap:
        return 0
    if f.start and f.start >= f.cap // 2:
        memmove(f.buf, &f.buf[f.start], n * sizeof(int64_t))
        f.start = 0
        f.end = n
        return 0
    newcap = f.cap * 2 if f.cap else 16
    nb = <int64_t*>PyMem_Realloc(f.buf, newcap * sizeof(int64_t))
    if nb == NULL:
        raise MemoryError()
    f.buf = nb
    f.cap = newcap
    return 0


cdef inline int fifo_push_back(SeqFifo* f, int64_t seq) except -1:
    if f.end == f.cap:
        fifo_reserve(f)
    f.buf[f.end] = seq
    f.end += 1
    return 0


cdef inline void fifo_pop_front(SeqFifo* f) noexcept:
    f.start += 1
    if f.start == f.end:
        f.start = f.end = 0


cdef int fifo_insert_sorted(SeqFifo* f, int64_t seq) except -1:
    """Insert keeping the order (a released message goes back near the front)."""
    cdef Py_ssize_t lo = f.start, hi = f.end, mid
    while lo < hi:
        mid = (lo + hi) >> 1
        if f.buf[mid] < seq:
            lo = mid + 1
        else:
            hi = mid
    if f.start > 0:             # shift the part before the slot one place towards the front
        memmove(&f.buf[f.start - 1], &f.buf[f.start], (lo - f.start) * sizeof(int64_t))
        f.start -= 1
        f.buf[lo - 1] = seq
        return 0
    fifo_reserve(f)
    memmove(&f.buf[lo + 1], &f.buf[lo], (f.end - lo) * sizeof(int64_t))
    f.buf[lo] = seq
    f.end += 1
    return 0


# -- orderings -----------------------------------------------------------------------------------
cpdef int priority_level(int priority, int levels) noexcept:
    """A message priority (0-9, AMQP) mapped onto one of ``levels`` levels as qpidd does it (the AMQP
    0-10 priority-level-implementation rule): levels are centred on priority 5."""
    cdef int first
    if levels <= 1:
        return 0
    first = 5 - min(5, (levels + 1) // 2)
    if priority <= first:
        return 0
    return min(priority - first, levels - 1)


cdef class Messages:
    """FIFO: the next message is the oldest AVAILABLE one in the store."""

    cdef Py_ssize_t next(self) except -2:
        """The store index of the message a consumer would get next, or -1. No side effects that
        callers can see (a cursor may skip stale bookkeeping)."""
        return store_first_available(self.store)

    cdef int pushed(self, Py_ssize_t i) except -1:
        """Entry i was appended AVAILABLE."""
        return 0

    cdef int released(self, Py_ssize_t i) except -1:
        """Entry i went from ACQUIRED back to AVAILABLE."""
        return 0

    cdef void acquired(self, Py_ssize_t i) noexcept:
        """Entry i, just returned by next(), was acquired."""
        pass

    cdef void removed(self, Py_ssize_t i) noexcept:
        """Entry i, AVAILABLE, is leaving the queue (expired, dropped, replaced, purged)."""
        pass

    cdef Py_ssize_t ring_victim(self) except -2:
        """The entry a ring policy drops first: the oldest AVAILABLE one."""
        return store_first_available(self.store)

    cdef void clear(self) noexcept:
        """Every AVAILABLE entry is leaving (purge)."""
        pass


@cython.final
cdef class PriorityMessages(Messages):
    """Highest level first; within a level, oldest first. With fairshare limits, qpidd's cursor:
    the level whose turn it is gives at most its limit of messages in a row, then the turn passes to
    the next lower level that has messages (after level 0, back to the top)."""

    def __cinit__(self, int levels, limits=None):
        cdef int i
        self.levels = levels
        self.fifos = <SeqFifo*>PyMem_Malloc(levels * sizeof(SeqFifo))
        self.counts = <Py_ssize_t*>PyMem_Malloc(levels * sizeof(Py_ssize_t))
        self.limits = <uint32_t*>PyMem_Malloc(levels * sizeof(uint32_t))
        if self.fifos == NULL or self.counts == NULL or self.limits == NULL:
            raise MemoryError()
        memset(self.fifos, 0, levels * sizeof(SeqFifo))
        memset(self.counts, 0, levels * sizeof(Py_ssize_t))
        self.fair = False
        for i in range(levels):
            self.limits[i] = limits[i] if limits is not None else 0
            if self.limits[i]:
                self.fair = True
        self.cursor = levels - 1
        self.taken = 0
        self.pending_level = levels - 1
        self.pending_taken = 0

    def __dealloc__(self):
        cdef int i
        if self.fifos != NULL:
            for i in range(self.levels):
                PyMem_Free(self.fifos[i].buf)
        PyMem_Free(self.fifos)
        PyMem_Free(self.counts)
        PyMem_Free(self.limits)

    cdef Py_ssize_t _front(self, int level) noexcept:
        """The store index of the level's oldest AVAILABLE entry, dropping stale seqs on the way."""
        cdef SeqFifo* f = &self.fifos[level]
        cdef Py_ssize_t j
        cdef int64_t seq
        while f.start < f.end:
            seq = f.buf[f.start]
            j = store_find(self.store, seq)
            if j >= 0 and store_at(self.store, j).state == ST_AVAILABLE:
                return j
            fifo_pop_front(f)
        return -1

    cdef Py_ssize_t next(self) except -2:
        cdef int p, start
        cdef uint32_t c
        if not self.fair:
            for p in range(self.levels - 1, -1, -1):
                if self.counts[p]:
                    return self._front(p)
            return -1
        p = self.cursor
        c = self.taken
        if self.limits[p] and c >= self.limits[p]:
            p = p - 1 if p else self.levels - 1
            c = 0
        start = p
        while True:
            if self.counts[p]:
                self.pending_level = p
                self.pending_taken = c
                return self._front(p)
            p = p - 1 if p else self.levels - 1
            c = 0
            if p == start:
                return -1

    cdef int pushed(self, Py_ssize_t i) except -1:
        cdef Entry* e = store_at(self.store, i)
        fifo_push_back(&self.fifos[e.level], e.seq)
        self.counts[e.level] += 1
        return 0

    cdef int released(self, Py_ssize_t i) except -1:
        cdef Entry* e = store_at(self.store, i)
        fifo_insert_sorted(&self.fifos[e.level], e.seq)
        self.counts[e.level] += 1
        return 0

    cdef void acquired(self, Py_ssize_t i) noexcept:
        cdef Entry* e = store_at(self.store, i)
        cdef SeqFifo* f = &self.fifos[e.level]
        if f.start < f.end and f.buf[f.start] == e.seq:
            fifo_pop_front(f)
        self.counts[e.level] -= 1
        if self.fair:
            self.cursor = self.pending_level
            self.taken = self.pending_taken + 1

    cdef void removed(self, Py_ssize_t i) noexcept:
        cdef Entry* e = store_at(self.store, i)
        cdef SeqFifo* f = &self.fifos[e.level]
        if f.start < f.end and f.buf[f.start] == e.seq:
            fifo_pop_front(f)
        self.counts[e.level] -= 1

    cdef Py_ssize_t ring_victim(self) except -2:
        """The oldest message of the lowest level that has any (the queue compares priorities)."""
        cdef int p
        for p in range(self.levels):
            if self.counts[p]:
                return self._front(p)
        return -1

    cdef void clear(self) noexcept:
        cdef int p
        for p in range(self.levels):
            self.fifos[p].start = self.fifos[p].end = 0
            self.counts[p] = 0
