# cython: language_level=3
"""cypid.pyx.store_core: the message store's per-message path (broker/store.py is the rest).

A durable message's enqueue record, the holds on its producer's settlement (``Pending``), the
copies shown and the producers released when a journal sync comes back, and the dequeue record when
it leaves: all in C, with no Python frame per message. broker/store.py's ``Store`` and
``QueueJournal`` subclass ``StoreCore`` and ``QueueJournalCore``.
"""
from libc.stdint cimport uint64_t


cdef class Pending:
    cdef public int count               # holds not released yet
    cdef public int syncs               # journals still to sync
    cdef public object copies           # [queue, msg, ...] held until every journal synced, or None
    cdef public object delivery         # the producer's delivery, held until the last release
    cdef public object outcome          # what the producer is told (None: accepted)
    cdef public bint flow               # a flow hold is among them (a flow-stopped queue, HA stream flow)
    cdef public object producer         # the ProducerCore whose credit waits for the last release
    cpdef release(self, outcome=*)


cdef class QueueJournalCore:
    cdef public object store            # the Store (a StoreCore)
    cdef public object queue
    cdef public object journal          # cypid.pyx.journal.Journal (or the tests' FaultyJournal)
    cdef public dict rids               # message -> rid of its live record
    cdef public object on_synced        # the writer's callback(seq, err): back to the loop
    cdef public bint flush_wanted       # a sync is asked for at the end of this loop turn
    cdef public bint durable            # records of durable messages survive a restart
    cdef public bint ftd
    cdef public bint removed
    cdef public bint ftd_warned
    cdef public bint failing            # a write or sync failed; no successful sync since
    cdef public double full_logged
    cdef public object loader           # broker/store.py's _Loader while recovered messages go in
    # producers waiting for a sync: wpend[i] waits for seq wseq[i] (i >= whead), in seq order
    cdef list wpend
    cdef uint64_t* wseq
    cdef Py_ssize_t whead, wcap

    cdef int add_wait(self, uint64_t seq, object p) except -1
    cdef list take_synced(self, uint64_t upto)
    cdef void _compact(self)


cdef class StoreCore:
    cdef public object loop
    cdef public dict journals           # queue -> QueueJournal
    cdef public uint64_t _next_rid
    cdef public list _dirty             # QueueJournals to sync at the end of this loop turn
    cdef public object _flush_handle
    cdef public set _lazy               # QueueJournals with only dequeues/updates unsynced
    cdef public object _lazy_handle
    cdef public bint closed
    cdef public object txn              # broker/transactions.py: the commit being applied, or None

    cpdef object enqueue(self, object queue, object msg)
    cpdef lazy_flush(self, QueueJournalCore qj)
    cdef int _want(self, QueueJournalCore qj) except -1
