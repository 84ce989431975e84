# cython: language_level=3
"""cypid.pyx.messages: where a queue keeps its messages, and the orders it hands them out in.

Two layers, as qpid-cpp's ``MessageDeque`` / ``PriorityQueue`` behind ``Messages``:

``Store`` (a C struct and functions) holds every message the queue still owns - waiting
(AVAILABLE) or delivered and not yet settled (ACQUIRED) - in one ring of ``Entry`` records in
sequence order. Entries are only ever appended at the tail; an entry that leaves the queue is
marked DELETED and the front is trimmed, with a compaction when holes outnumber live entries.
A message is found again by its sequence number: ``seq - first seq`` is the index while there
are no holes, a binary search otherwise.

``Messages`` (a cdef class with virtual methods) decides which AVAILABLE entry goes next:
``Messages`` itself is FIFO (the store's own order); ``PriorityMessages`` keeps one FIFO of
sequence numbers per priority level, with qpidd's fairshare cursor. The queue tells the ordering
about every change of an entry's availability; the ordering never removes entries itself.

Rules for callers: an ``Entry*`` or an index is only valid until the next call that may append,
remove or compact (and so until the next call into Python, which may re-enter the queue).
"""
from cpython.ref cimport PyObject
from libc.stdint cimport int64_t, uint8_t, uint32_t


cdef enum EntryState:
    ST_AVAILABLE = 0    # waiting for a consumer
    ST_ACQUIRED = 1     # delivered to a consumer, not yet accepted/released/rejected
    ST_DELETED = 2      # gone; the slot waits to be trimmed or compacted away
    ST_HELD = 3         # queued (counted in the depth), not visible until its owner unholds it
    ST_BEHIND = 4       # queued, not visible until no held entry is in front (queue.pyx "Held")


cdef struct Entry:
    PyObject* msg       # owned reference to the message, NULL once deleted
    PyObject* key       # owned: the LVQ key (str) or the message Group; NULL if neither
    int64_t seq         # the queue's sequence number for the message (msg.seq)
    double expires      # monotonic seconds (msg.expires); 0 = never
    int64_t enq_ns      # monotonic ns at enqueue when latency is tracked, else 0
    uint32_t size       # msg.size, cached for byte accounting
    uint8_t state       # EntryState
    uint8_t level       # priority level (0 for FIFO queues)
    uint8_t durable     # msg.durable, cached for the persistent counters
    uint8_t ftd         # flowed to disk (the flow_to_disk hook took its body)


cdef struct Store:
    Entry* buf          # cap slots; logical index i lives at buf[(head + i) & (cap - 1)]
    Py_ssize_t cap      # a power of two (0 before the first append)
    Py_ssize_t head     # physical slot of logical index 0
    Py_ssize_t count    # entries in the ring, DELETED ones included
    Py_ssize_t live     # entries not DELETED
    Py_ssize_t first_avail  # no AVAILABLE entry has a logical index below this


cdef inline Entry* store_at(Store* s, Py_ssize_t i) noexcept nogil:
    return &s.buf[(s.head + i) & (s.cap - 1)]


cdef Entry* store_append(Store* s) except NULL
cdef Py_ssize_t store_find(Store* s, int64_t seq) noexcept
cdef Py_ssize_t store_lower_bound(Store* s, int64_t seq) noexcept
cdef Py_ssize_t store_next_available(Store* s, Py_ssize_t i) noexcept
cdef Py_ssize_t store_first_available(Store* s) noexcept
cdef Py_ssize_t store_oldest_live(Store* s) noexcept
cdef void store_made_available(Store* s, Py_ssize_t i) noexcept
cdef void store_delete(Store* s, Py_ssize_t i) noexcept
cdef void store_clear(Store* s) noexcept


# A FIFO of sequence numbers with room at both ends (one priority level's waiting messages).
cdef struct SeqFifo:
    int64_t* buf
    Py_ssize_t start    # first element
    Py_ssize_t end      # one past the last element
    Py_ssize_t cap


cdef class Messages:
    """FIFO ordering over the store (qpid-cpp's MessageDeque); the base of every ordering."""
    cdef Store* store
    cdef Py_ssize_t next(self) except -2
    cdef int pushed(self, Py_ssize_t i) except -1
    cdef int released(self, Py_ssize_t i) except -1
    cdef void acquired(self, Py_ssize_t i) noexcept
    cdef void removed(self, Py_ssize_t i) noexcept
    cdef Py_ssize_t ring_victim(self) except -2
    cdef void clear(self) noexcept


cdef class PriorityMessages(Messages):
    """Priority levels (qpid-cpp's PriorityQueue and Fairshare)."""
    cdef int levels
    cdef SeqFifo* fifos         # one per level: seqs of AVAILABLE entries (plus stale ones)
    cdef Py_ssize_t* counts     # AVAILABLE entries per level (exact)
    cdef uint32_t* limits       # fairshare limit per level, 0 = none
    cdef bint fair              # any limit set
    cdef int cursor             # fairshare: the level whose turn it is
    cdef uint32_t taken         # fairshare: messages taken from it in this turn
    cdef int pending_level      # what next() chose, committed by acquired()
    cdef uint32_t pending_taken
    cdef Py_ssize_t _front(self, int level) noexcept


cpdef int priority_level(int priority, int levels) noexcept
