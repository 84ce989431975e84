# cython: language_level=3
"""cypid.pyx.totals: the broker-wide sums of its queues' statistics (the QMF broker object's
msgTotalEnqueues, byteDepth, acquires, discards*, ...), kept as the queues count, so that a query of
the broker object reads them in O(1) however many queues there are.

Every queue has a ``totals`` (queue.pxd): its own private one until the management agent attaches
it to the broker's (``Totals.attach``, which adds what the queue counted before); the queue then
bumps the shared object beside its own counters. ``Totals.detach`` (the queue is deleted) takes the
queue's levels (depths) out again; its totals stay, as qpidd's broker object keeps them.
"""
cimport cython
from libc.stdint cimport int64_t


cdef enum:
    T_ENQUEUE = 0
    T_DEQUEUE = 1
    T_TOTAL = 0       # every message
    T_PERSIST = 1     # durable messages
    T_FTD = 2         # messages flowed to disk


@cython.final
cdef class Totals:
    # [T_ENQUEUE | T_DEQUEUE][T_TOTAL | T_PERSIST | T_FTD]: msgTotalEnqueues ... byteFtdDequeues
    cdef int64_t msgs[2][3]
    cdef int64_t bytes[2][3]
    cdef public int64_t msgTxnEnqueues
    cdef public int64_t msgTxnDequeues
    cdef public int64_t byteTxnEnqueues
    cdef public int64_t byteTxnDequeues
    cdef public int64_t releases
    cdef public int64_t acquires
    cdef public int64_t discardsTtl
    cdef public int64_t discardsRing
    cdef public int64_t discardsLvq
    cdef public int64_t discardsOverflow
    cdef public int64_t discardsSubscriber
    cdef public int64_t discardsPurge
    cdef public int64_t reroutes
    # levels: what the attached queues hold now
    cdef public int64_t msgDepth
    cdef public int64_t byteDepth
    cdef public int64_t msgFtdDepth
    cdef public int64_t byteFtdDepth


cdef inline void totals_count(Totals t, int way, int64_t size, bint durable, bint ftd) noexcept:
    """A queue counted an enqueue (``way`` T_ENQUEUE, queue.pyx ``_count_enqueue``) or a dequeue
    (T_DEQUEUE, ``_count_dequeue``) of a message of ``size`` bytes."""
    cdef int64_t n = 1 if way == T_ENQUEUE else -1
    t.msgs[way][T_TOTAL] += 1
    t.bytes[way][T_TOTAL] += size
    t.msgDepth += n
    t.byteDepth += n * size
    if durable:
        t.msgs[way][T_PERSIST] += 1
        t.bytes[way][T_PERSIST] += size
    if ftd:
        t.msgs[way][T_FTD] += 1
        t.bytes[way][T_FTD] += size
        t.msgFtdDepth += n
        t.byteFtdDepth += n * size
