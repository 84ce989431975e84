# cython: language_level=3
"""cypid.pyx.queue: a message queue with qpidd's semantics (the contract other modules cimport).

Composition, as qpid-cpp's QueueFactory does it: a ``Store`` of entries (messages.pxd), an
ordering (``Messages``: FIFO, or ``PriorityMessages`` with fairshare), and on top of them, chosen
from the QueueSettings: the limit policy (reject / ring / ring_strict / flow_to_disk hook /
self-destruct hook), the LVQ key index, message groups (the distributor), producer flow control and
the management counters. See queue.pyx for the behaviour of each piece.
"""
cimport cython
from libc.stdint cimport int64_t

from cypid.pyx.messages cimport Entry, Messages, Store
from cypid.pyx.selector cimport Selector
from cypid.pyx.totals cimport Totals


cdef enum Policy:
    POLICY_REJECT = 0
    POLICY_RING = 1
    POLICY_RING_STRICT = 2
    POLICY_FLOW_TO_DISK = 3
    POLICY_SELF_DESTRUCT = 4


@cython.final
cdef class Group:
    """A message group (qpid.group_header_key): who holds it and how many of its messages."""
    cdef readonly object name
    cdef readonly object owner          # the consumer holding the group, or None
    cdef readonly Py_ssize_t acquired   # its messages acquired and not yet settled
    cdef readonly Py_ssize_t total      # its messages in the queue (waiting or acquired)


cdef class Queue


cdef class Consumer:
    """The consumer interface a queue's dispatch assumes, as C calls (the broker's OutgoingLink is
    one: cypid.pyx.broker_core.ConsumerCore). Any other object with the same Python attributes
    (``browsing``, ``browse_position``, ``selector``, ``can_take()``, ``deliver(msg, queue)``) works
    too, at Python speed; the defaults below call those."""
    cdef public bint browsing               # a browser: sees every message past browse_position
    cdef public int64_t browse_position     # the seq of the last message browsed
    cdef public object selector             # a Selector of this consumer's own, or None
    cdef bint can_take_c(self) except -1    # may a message be delivered now
    cdef int deliver_c(self, object msg, Queue queue) except -1    # deliver an acquired (or browsed) msg


@cython.final
cdef class Queue:
    # -- identity and node state (the broker reads and sets these) --------------------------------
    cdef readonly object name
    cdef readonly object settings
    cdef public bint durable
    cdef public bint auto_delete
    cdef public object alternate_exchange   # exchange name for rejected/expired/orphaned messages
    cdef public object exclusive_owner      # the session that owns an exclusive queue
    cdef public bint deleted
    cdef public bint had_consumers
    cdef public list consumers              # links, in round-robin order
    # -- hooks (None = unused) ----------------------------------------------------------------------
    cdef public object on_flow_resume       # on_flow_resume(queue): producer flow control lifted
    cdef public object dequeue_hook         # dequeue_hook(msg): a durable message left a durable queue,
                                            # or a flowed-to-disk one left any queue (its record goes)
    cdef public object ftd_hook             # ftd_hook(msg): flow_to_disk: msg is past the limit
    cdef public object on_self_destruct     # on_self_destruct(queue): self-destruct policy hit its limit
    cdef public object on_empty             # on_empty(queue): its last message left (lifetime policies)
    cdef public object enqueue_hook         # enqueue_hook(msg): msg was queued (HA), before any dispatch
    cdef public bint observe_dequeues       # dequeue_hook is called for every message leaving (HA)
    cdef public object clock                # clock() -> monotonic seconds (tests); None = the C clock
    cdef public bint track_latency          # sample enqueue->accept latency (messageLatency*)
    cdef public object loading              # loading(queue): messages still to be put in front of
                                            # anything new (the store's recovery); called, while set,
                                            # before an enqueue or a look at the whole queue
    cdef public object enqueue_filter       # a Selector (qpid.filter): the router enqueues only matches

    cdef object _reroute                    # reroute(msg, exchange_name)
    cdef object _on_unused                  # on_unused(queue): last consumer of an auto-delete queue left
    cdef Store store
    cdef Messages messages
    cdef int64_t next_seq
    cdef Py_ssize_t available               # entries AVAILABLE
    cdef Py_ssize_t rr                      # round-robin position in consumers
    cdef object _events                     # deque: callbacks to run once the state is consistent
    cdef bint _dispatching
    cdef readonly Py_ssize_t held           # entries ST_HELD (queued, not yet visible)
    cdef int64_t held_seq                   # no held entry has a lower seq
    cdef bint _redispatch
    cdef int64_t avail_epoch                # += 1 whenever a message becomes available behind others

    # -- settings, as C values ----------------------------------------------------------------------
    cdef Policy policy
    cdef int64_t max_count
    cdef int64_t max_size
    cdef int64_t flow_stop_count
    cdef int64_t flow_resume_count
    cdef int64_t flow_stop_size
    cdef int64_t flow_resume_size
    cdef int levels                         # priority levels, 0 = FIFO
    cdef bint lvq
    cdef bint lvq_no_browse
    cdef bint groups
    cdef object lvq_key                     # application property naming the LVQ key
    cdef object group_key                   # application property naming the group
    cdef object default_group
    cdef dict lvq_index                     # LVQ key -> seq of the newest message with it
    cdef dict group_map                     # group name -> Group

    # -- statistics (qpid-tool's `schema queue` names; plain C integers) -----------------------------
    cdef readonly int64_t msgTotalEnqueues
    cdef readonly int64_t msgTotalDequeues
    cdef readonly int64_t msgTxnEnqueues
    cdef readonly int64_t msgTxnDequeues
    cdef readonly int64_t msgPersistEnqueues
    cdef readonly int64_t msgPersistDequeues
    cdef readonly int64_t msgDepth          # enqueued - dequeued: waiting AND acquired-unsettled (qpidd)
    cdef readonly int64_t msgDepthHigh
    cdef readonly int64_t msgDepthLow
    cdef readonly int64_t byteTotalEnqueues
    cdef readonly int64_t byteTotalDequeues
    cdef readonly int64_t byteTxnEnqueues
    cdef readonly int64_t byteTxnDequeues
    cdef readonly int64_t bytePersistEnqueues
    cdef readonly int64_t bytePersistDequeues
    cdef readonly int64_t byteDepth
    cdef readonly int64_t byteDepthHigh
    cdef readonly int64_t byteDepthLow
    cdef readonly int64_t msgFtdEnqueues
    cdef readonly int64_t msgFtdDequeues
    cdef readonly int64_t byteFtdEnqueues
    cdef readonly int64_t byteFtdDequeues
    cdef readonly int64_t msgFtdDepth
    cdef readonly int64_t byteFtdDepth
    cdef readonly int64_t enqueueTxnStarts
    cdef readonly int64_t enqueueTxnCommits
    cdef readonly int64_t enqueueTxnRejects
    cdef readonly int64_t enqueueTxnCount
    cdef readonly int64_t enqueueTxnCountHigh
    cdef readonly int64_t enqueueTxnCountLow
    cdef readonly int64_t dequeueTxnStarts
    cdef readonly int64_t dequeueTxnCommits
    cdef readonly int64_t dequeueTxnRejects
    cdef readonly int64_t dequeueTxnCount
    cdef readonly int64_t dequeueTxnCountHigh
    cdef readonly int64_t dequeueTxnCountLow
    cdef readonly int64_t releases
    cdef readonly int64_t acquires
    cdef readonly int64_t discardsTtl
    cdef readonly int64_t discardsRing
    cdef readonly int64_t discardsLvq
    cdef readonly int64_t discardsOverflow
    cdef readonly int64_t discardsSubscriber
    cdef readonly int64_t discardsPurge
    cdef readonly int64_t reroutes
    cdef readonly int64_t consumerCount
    cdef readonly int64_t consumerCountHigh
    cdef readonly int64_t consumerCountLow
    cdef public int64_t bindingCount        # kept by whoever binds (the exchanges)
    cdef public int64_t bindingCountHigh
    cdef public int64_t bindingCountLow
    cdef readonly int64_t unackedMessages
    cdef readonly int64_t unackedMessagesHigh
    cdef readonly int64_t unackedMessagesLow
    cdef readonly int64_t messageLatencySamples  # ns
    cdef readonly int64_t messageLatencyMin
    cdef readonly int64_t messageLatencyMax
    cdef readonly int64_t messageLatencyTotal
    cdef readonly bint flowStopped
    cdef readonly int64_t flowStoppedCount
    cdef public Totals totals               # the broker's sums this queue also counts into (totals.pxd)

    # -- the hot entry points (Python callers see them as methods) -----------------------------------
    cpdef object enqueue(self, object msg, bint hold=*)
    cpdef unhold(self, object msg)
    cpdef drop_held(self, object msg)
    cpdef remove(self, object msg)
    cpdef dispatch(self)
    cpdef dequeued(self, object msg)
    cpdef release(self, object msg, bint count_failure=*)
    cpdef reject(self, object msg)

    # -- internals --------------------------------------------------------------------------------
    cdef double _now(self) except? -1.0
    cdef bint _over(self, int64_t size) noexcept
    cdef void _depth_add(self, int64_t n, int64_t size) noexcept
    cdef void _unacked_add(self, int64_t n) noexcept
    cdef void _count_enqueue(self, Entry* e) noexcept
    cdef void _count_dequeue(self, Entry* e) noexcept
    cdef object _limit_error(self, str why)
    cdef int _check_limits(self, object msg, int64_t size, int priority) except -1
    cdef int _unacquire(self, Entry* e) except -1
    cdef object _drop(self, Py_ssize_t i)
    cdef int _expire(self, Py_ssize_t i) except -1
    cdef int _flow_check_resume(self) except -1
    cdef int _lvq_replace(self, object msg, object key, int64_t size, bint durable, double expires,
                          bint ftd, bint in_place) except -1
    cdef bint _release_held(self) except -1
    cdef object _acquire(self, Py_ssize_t i, object link)
    cdef Py_ssize_t _next_for(self, object link) except -2
    cdef Py_ssize_t _next_selected(self, object link, Selector sel, bint peek) except -2
    cdef int _browse(self, object link) except -1
    cdef int _dispatch(self) except -1
    cdef int _run_dispatch(self) except -1
    cdef Py_ssize_t _find_acquired(self, object msg) except -2
    cdef int _flush(self) except -1
