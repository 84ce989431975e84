# cython: language_level=3
"""A message queue with qpidd's semantics, in Cython.

A drop-in for broker/queue.py's ``Queue(name, settings, reroute, on_unused=None)``: the same methods
(enqueue, dispatch, add_consumer, remove_consumer, has_message_for, dequeued, release, reject, purge,
drain_all, depth) and attributes, plus limits and policies, LVQ, priorities with fairshare, message
groups, TTL, producer flow control and qpidd's management counters. Behaviour, piece by piece (the
pure-Python model in tests/support/reference_queue.py states the same rules as plainly as it can):

Depth. ``msgDepth``/``byteDepth`` count every message the queue still owns, waiting or acquired and
not yet settled (qpidd: enqueues - dequeues); limits and flow control use them. ``depth`` is the
number of messages waiting (AVAILABLE), as in broker/queue.py.

Limits (qpid.max_count, qpid.max_size; 0 = none). A message "does not fit" when
``msgDepth + 1 > max_count`` or ``byteDepth + size > max_size``. Then, by qpid.policy_type:
  reject        ``QueueLimitExceeded`` is raised (discardsOverflow += 1); nothing queued changes.
  ring          (a message larger than max_size alone is refused as above). The oldest waiting
                message is dropped (rerouted to the alternate exchange if any; discardsRing) until
                the new one fits; on a priority queue the candidate is the oldest message of the
                lowest level that has any, and it is dropped only if its priority <= the new
                message's. When nothing can be dropped the NEW message is dropped (discardsRing,
                not enqueued; enqueue returns False) - qpidd's LossyQueue.
  ring_strict   as ring but the oldest messages, acquired or not, are the ones to drop: if one of
                those that would have to go is acquired, the send is refused and nothing changes.
  flow_to_disk  the message is accepted past the limit and ``ftd_hook(msg)`` is called (the
                journal releases its body); msgFtd* count it. Without a hook: as reject.
  self-destruct the message is dropped (discardsOverflow) and ``on_self_destruct(queue)`` called.

Ordering. FIFO by default. qpid.priorities: levels as qpidd maps them (messages.priority_level),
highest level first, FIFO within a level; qpid.fairshare[-N]: qpidd's turn-taking cursor (see
messages.PriorityMessages). LVQ (qpid.last_value_queue_key): the key is the application property
as text ("" when absent, as qpidd); a new message replaces the queue's message with the same key,
waiting or acquired (discardsLvq; an acquired one replaced is gone: its later accept/release is a
no-op). lvq: the new message goes to the back with a new sequence number, so browsers see it.
lvq_no_browse: a waiting message is replaced in place (same sequence number), so a browser that
already passed that position does not see the update.

Message groups (qpid.group_header_key + qpid.shared_msg_group): a message's group is the property
as text, or qpid.no-group. A group with acquired messages belongs to the consumer that acquired
them; other consumers skip its messages. It is free again when none of its messages is acquired;
a settlement that frees a group with messages waiting runs a dispatch (consumers with credit may
have skipped them).

TTL. A message whose ``expires`` (monotonic seconds) has passed is never delivered nor browsed:
when a consumer or browser reaches it, or ``purge_expired()`` sweeps, it is dequeued (discardsTtl)
and rerouted to the alternate exchange if the queue has one.

Dispatch (the broker's calls): round robin over ``consumers`` from the one after the last served;
a browser gets everything it can take past its ``browse_position``; an acquiring consumer gets one
message per turn; stops when a full round delivers nothing. Re-entrant calls (a consumer settling
inside ``deliver``) are safe: a nested dispatch is folded into the running one.

Flow control (qpid.flow_stop_*/flow_resume_*, as qpidd's QueueFlowLimit): after an enqueue,
``flowStopped`` becomes true when msgDepth > flow_stop_count or byteDepth > flow_stop_size
(flowStoppedCount += 1); after a removal it becomes false when both are below their resume
thresholds, and ``on_flow_resume(queue)`` is called.

``dequeue_hook(msg)`` is called when a durable message leaves a durable queue, for any reason, and when
a message flowed to disk (``ftd_hook``) leaves any queue: the journal drops its record. With
``observe_dequeues`` set (HA replicates the queue) it is called for every message that leaves.
``enqueue_hook(msg)`` (HA) is called for each message queued, before any consumer can see it.
``on_empty(queue)`` is called each time the last message leaves (msgDepth falls to 0).

Held. ``enqueue(msg, hold=True)`` queues a message that nobody may see yet (the store: until its
journal record is synced): it counts in msgDepth/byteDepth at once (limits and flow control refuse
promptly) but no consumer, browser, purge or expiry sweep meets it. Order is kept: while any message
is held, every later message (held or not) is held behind it. ``unhold(msg)`` lets it go: each held
message at the front that is no longer waiting becomes available, in order, and consumers are served.
``drop_held(msg)`` takes a held message out (its sync failed: nobody has seen it), as a dequeue.
A deleted queue's ``drain_all`` includes held messages.

Loading. While ``loading`` is set (the store recovering a deep queue in chunks, so that consumers
are served before the whole queue is in memory), ``loading(queue)`` is called before an enqueue, a
drain's look for a message, a purge, a deletion's drain or a listing: it puts the rest of the
recovered messages in first (and clears ``loading``), so a new message never goes in front of a
recovered one and nothing that must see the whole queue sees part of it.

Callbacks (reroute, hooks, on_flow_resume) run after the queue's state is consistent, in the order
their causes happened; they may call back into the queue.
"""
cimport cython
from cpython.ref cimport Py_DECREF, Py_INCREF, PyObject
from libc.stdint cimport int64_t, uint32_t
from posix.time cimport CLOCK_MONOTONIC, clock_gettime, timespec

from cypid.pyx.messages cimport (
    ST_ACQUIRED, ST_AVAILABLE, ST_BEHIND, ST_DELETED, ST_HELD, Entry, Messages, PriorityMessages, store_append, store_at,
    store_clear, store_delete, store_find, store_first_available, store_lower_bound,
    priority_level, store_made_available, store_next_available,
)
from cypid.pyx.message cimport Message
from cypid.pyx.selector cimport Selector
from cypid.pyx.totals cimport T_DEQUEUE, T_ENQUEUE, Totals, totals_count

from collections import deque

cdef enum Event:
    EV_REROUTE = 0      # (EV_REROUTE, msg, exchange)
    EV_DEQUEUE = 1      # (EV_DEQUEUE, msg): dequeue_hook
    EV_RESUME = 2       # (EV_RESUME,): on_flow_resume
    EV_FTD = 3          # (EV_FTD, msg): ftd_hook
    EV_DESTRUCT = 4     # (EV_DESTRUCT,): on_self_destruct
    EV_EMPTY = 5        # (EV_EMPTY,): on_empty

RESOURCE_LIMIT_EXCEEDED = "amqp:resource-limit-exceeded"
DEFAULT_GROUP = "qpid.no-group"

_POLICIES = {
    "reject": POLICY_REJECT,
    "ring": POLICY_RING,
    "ring_strict": POLICY_RING_STRICT,
    "flow_to_disk": POLICY_FLOW_TO_DISK,
    "self-destruct": POLICY_SELF_DESTRUCT,
}


class QueueLimitExceeded(Exception):
    """A message refused by a queue's limit policy. The broker answers the transfer with
    ``released`` (qpidd's AMQP 1.0 mapping) or ``rejected`` carrying ``condition`` and
    ``description``; the producer's link stays up. Attributes: ``queue`` (name), ``policy``,
    ``condition`` (``amqp:resource-limit-exceeded``), ``description`` (qpidd's wording)."""

    condition = RESOURCE_LIMIT_EXCEEDED

    def __init__(self, queue, policy, description):
        super().__init__(description)
        self.queue = queue
        self.policy = policy
        self.description = description


cdef inline double _mono_s() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return <double>ts.tv_sec + <double>ts.tv_nsec * 1e-9


cdef inline int64_t _mono_ns() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return <int64_t>ts.tv_sec * 1000000000 + ts.tv_nsec


# Message fields: read at C level from a cypid.pyx.message.Message, else as Python attributes (any
# object with broker/message.py's attributes works).
cdef inline int64_t _get_seq(object msg) except? -1:
    if type(msg) is Message:
        return (<Message>msg).seq
    return msg.seq


cdef inline int _set_seq(object msg, int64_t seq) except -1:
    if type(msg) is Message:
        (<Message>msg).seq = seq
    else:
        msg.seq = seq
    return 0


cdef object _as_text(object value):
    """A property value as qpidd's getPropertyAsString gives it."""
    if value is None:
        return ""
    if type(value) is str:
        return value
    if isinstance(value, str):
        return str(value)
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", "replace")
    return str(value)


cdef class Consumer:
    cdef bint can_take_c(self) except -1:
        return bool(self.can_take())

    cdef int deliver_c(self, object msg, Queue queue) except -1:
        self.deliver(msg, queue)
        return 0


cdef inline bint _can_take(object link) except -1:
    if isinstance(link, Consumer):
        return (<Consumer>link).can_take_c()
    return bool(link.can_take())


cdef inline int _deliver(object link, object msg, Queue queue) except -1:
    if isinstance(link, Consumer):
        return (<Consumer>link).deliver_c(msg, queue)
    link.deliver(msg, queue)
    return 0


cdef inline object _selector(object link):
    if isinstance(link, Consumer):
        return (<Consumer>link).selector
    return getattr(link, "selector", None)


cdef inline bint _browsing(object link) except -1:
    if isinstance(link, Consumer):
        return (<Consumer>link).browsing
    return bool(link.browsing)


@cython.final
cdef class Group:
    def __repr__(self):
        return "<Group %r owner=%r acquired=%d total=%d>" % (self.name, self.owner, self.acquired, self.total)


@cython.final
cdef class Queue:
    def __cinit__(self):
        self.messages = None
        self.totals = Totals()      # its own, until the agent attaches it to the broker's

    def __init__(self, name, settings, reroute, on_unused=None):
        self.name = name
        self.settings = settings
        self.durable = bool(getattr(settings, "durable", False))
        self.auto_delete = bool(getattr(settings, "auto_delete", False))
        self.alternate_exchange = getattr(settings, "alternate_exchange", None)
        self.exclusive_owner = None
        self.deleted = False
        self.had_consumers = False
        self.consumers = []
        self._reroute = reroute
        self._on_unused = on_unused
        self.on_flow_resume = None
        self.dequeue_hook = None
        self.ftd_hook = None
        self.on_self_destruct = None
        self.enqueue_hook = None
        self.observe_dequeues = False
        self.clock = None
        self.track_latency = False
        self.loading = None
        self._events = deque()
        self.next_seq = 1
        self.held = 0
        self.held_seq = 0

        policy = getattr(settings, "policy_type", "reject") or "reject"
        if policy not in _POLICIES:
            raise ValueError("qpid.policy_type: unknown policy %r" % (policy,))
        self.policy = _POLICIES[policy]
        self.max_count = getattr(settings, "max_count", 0) or 0
        self.max_size = getattr(settings, "max_size", 0) or 0
        self.flow_stop_count = getattr(settings, "flow_stop_count", 0) or 0
        self.flow_resume_count = getattr(settings, "flow_resume_count", 0) or 0
        self.flow_stop_size = getattr(settings, "flow_stop_size", 0) or 0
        self.flow_resume_size = getattr(settings, "flow_resume_size", 0) or 0

        self.lvq_key = getattr(settings, "lvq_key", None)
        self.lvq = self.lvq_key is not None
        self.lvq_no_browse = self.lvq and bool(getattr(settings, "lvq_no_browse", False))
        self.lvq_index = {}
        self.group_key = getattr(settings, "group_header_key", None)
        self.groups = self.group_key is not None
        self.default_group = getattr(settings, "default_group", None) or DEFAULT_GROUP
        self.group_map = {}
        levels = getattr(settings, "priorities", 0) or 0
        self.levels = min(int(levels), 10)
        if self.levels:
            default_share = getattr(settings, "fairshare", 0) or 0
            per_level = getattr(settings, "fairshare_levels", None) or {}
            limits = [per_level.get(i, default_share) for i in range(self.levels)]
            self.messages = PriorityMessages(self.levels, limits)
        else:
            self.messages = Messages()
        self.messages.store = &self.store

    def __dealloc__(self):
        store_clear(&self.store)

    def __repr__(self):
        return "<cypid Queue %r depth=%d msgDepth=%d>" % (self.name, self.available, self.msgDepth)

    # -- small helpers ------------------------------------------------------------------------------
    cdef double _now(self) except? -1.0:
        if self.clock is None:
            return _mono_s()
        return float(self.clock())

    cdef bint _over(self, int64_t size) noexcept:
        return (self.max_count != 0 and self.msgDepth + 1 > self.max_count) or \
            (self.max_size != 0 and self.byteDepth + size > self.max_size)

    cdef object _limit_error(self, str why):
        cdef list cur = ["count: %d" % self.msgDepth]
        cdef list mx = []
        if self.max_size:
            cur.append("size: %d" % self.byteDepth)
        if self.max_count:
            mx.append("count: %d" % self.max_count)
        if self.max_size:
            mx.append("size: %d" % self.max_size)
        policy = getattr(self.settings, "policy_type", "reject")
        text = "Maximum depth exceeded on %s: current=[%s], max=[%s]" % (
            self.name, ", ".join(cur), ", ".join(mx))
        if why:
            text += " (%s)" % why
        return QueueLimitExceeded(self.name, policy, text)

    cdef void _depth_add(self, int64_t n, int64_t size) noexcept:
        self.msgDepth += n
        self.byteDepth += size
        if self.msgDepth > self.msgDepthHigh:
            self.msgDepthHigh = self.msgDepth
        if self.msgDepth < self.msgDepthLow:
            self.msgDepthLow = self.msgDepth
        if self.byteDepth > self.byteDepthHigh:
            self.byteDepthHigh = self.byteDepth
        if self.byteDepth < self.byteDepthLow:
            self.byteDepthLow = self.byteDepth

    cdef void _unacked_add(self, int64_t n) noexcept:
        self.unackedMessages += n
        if self.unackedMessages > self.unackedMessagesHigh:
            self.unackedMessagesHigh = self.unackedMessages
        if self.unackedMessages < self.unackedMessagesLow:
            self.unackedMessagesLow = self.unackedMessages

    cdef void _count_enqueue(self, Entry* e) noexcept:
        self.msgTotalEnqueues += 1
        self.byteTotalEnqueues += e.size
        if e.durable:
            self.msgPersistEnqueues += 1
            self.bytePersistEnqueues += e.size
        if e.ftd:
            self.msgFtdEnqueues += 1
            self.byteFtdEnqueues += e.size
            self.msgFtdDepth += 1
            self.byteFtdDepth += e.size
        self._depth_add(1, e.size)
        totals_count(self.totals, T_ENQUEUE, e.size, e.durable, e.ftd)

    cdef void _count_dequeue(self, Entry* e) noexcept:
        self.msgTotalDequeues += 1
        self.byteTotalDequeues += e.size
        if e.durable:
            self.msgPersistDequeues += 1
            self.bytePersistDequeues += e.size
        if e.ftd:
            self.msgFtdDequeues += 1
            self.byteFtdDequeues += e.size
            self.msgFtdDepth -= 1
            self.byteFtdDepth -= e.size
        self._depth_add(-1, -<int64_t>e.size)
        totals_count(self.totals, T_DEQUEUE, e.size, e.durable, e.ftd)

    cdef int _unacquire(self, Entry* e) except -1:
        """Bookkeeping for an ACQUIRED entry that stops being acquired (settled or released)."""
        cdef Group g
        self._unacked_add(-1)
        if self.groups and e.key != NULL:
            g = <Group>e.key
            g.acquired -= 1
            if g.acquired == 0:
                g.owner = None
        return 0

    cdef object _drop(self, Py_ssize_t i):
        """Entry i leaves the queue for good (accepted, rejected, expired, dropped, replaced, purged):
        dequeue counters and bookkeeping. Returns the message. Runs no Python callbacks."""
        cdef Entry* e = store_at(&self.store, i)
        cdef object msg = <object>e.msg
        cdef Group g
        self._count_dequeue(e)
        if e.state == ST_AVAILABLE:
            self.available -= 1
            self.messages.removed(i)
        elif e.state == ST_ACQUIRED:
            self._unacquire(e)
        elif e.state == ST_HELD or e.state == ST_BEHIND:
            self.held -= 1
        if e.key != NULL:
            if self.lvq:
                key = <object>e.key
                if self.lvq_index.get(key) == e.seq:
                    del self.lvq_index[key]
            elif self.groups:
                g = <Group>e.key
                g.total -= 1
                if g.total == 0 and g.acquired == 0:
                    self.group_map.pop(g.name, None)
        if ((e.durable and self.durable) or e.ftd or self.observe_dequeues) and self.dequeue_hook is not None:
            self._events.append((EV_DEQUEUE, msg))
        store_delete(&self.store, i)
        if self.flowStopped:
            self._flow_check_resume()
        if self.msgDepth == 0 and self.on_empty is not None:
            self._events.append((EV_EMPTY,))
        return msg

    cdef int _flow_check_resume(self) except -1:
        if (self.flow_resume_size == 0 or self.byteDepth < self.flow_resume_size) and \
                (self.flow_resume_count == 0 or self.msgDepth < self.flow_resume_count):
            self.flowStopped = False
            self._events.append((EV_RESUME,))
        return 0

    cdef int _expire(self, Py_ssize_t i) except -1:
        msg = self._drop(i)
        self.discardsTtl += 1
        self.totals.discardsTtl += 1
        if self.alternate_exchange:
            self._events.append((EV_REROUTE, msg, self.alternate_exchange))
        return 0

    cdef int _flush(self) except -1:
        """Run the callbacks the last changes queued, oldest first (they may re-enter the queue)."""
        events = self._events
        cdef tuple ev
        while events:
            ev = events.popleft()
            kind = ev[0]
            if kind == EV_REROUTE:
                self._reroute(ev[1], ev[2])
            elif kind == EV_DEQUEUE:
                if self.dequeue_hook is not None:
                    self.dequeue_hook(ev[1])
            elif kind == EV_RESUME:
                if self.on_flow_resume is not None:
                    self.on_flow_resume(self)
            elif kind == EV_FTD:
                if self.ftd_hook is not None:
                    self.ftd_hook(ev[1])
            elif kind == EV_DESTRUCT:
                if self.on_self_destruct is not None:
                    self.on_self_destruct(self)
            elif kind == EV_EMPTY:
                if self.on_empty is not None:
                    self.on_empty(self)
        return 0

    # -- producers ----------------------------------------------------------------------------------
    cpdef object enqueue(self, object msg, bint hold=False):
        """Queue a message. Returns True if it was queued, False if the policy dropped it (ring with
        nothing droppable, self-destruct); raises QueueLimitExceeded if the policy refuses it.
        ``hold``: it stays invisible until ``unhold(msg)`` (see "Held")."""
        cdef int64_t size
        cdef bint durable
        cdef double expires
        cdef int priority = 0
        cdef int level = 0
        cdef bint ftd = False
        cdef int64_t seq
        cdef Entry* e
        cdef Group g = None
        cdef int verdict
        cdef Message m
        if self.loading is not None:
            self.loading(self)          # the messages loading go in front of this one
        if type(msg) is Message:
            m = <Message>msg
            size = m.size
            durable = m.durable
            expires = m.expires
            if self.levels:
                priority = m.priority
        else:
            size = msg.size
            durable = msg.durable
            expires = msg.expires or 0.0
            if self.levels:
                priority = msg.priority
        key = None
        if self.levels:
            level = priority_level(priority, self.levels)
        if self.lvq:
            key = _as_text(msg.application_properties().get(self.lvq_key))
        elif self.groups:
            value = msg.application_properties().get(self.group_key)
            key = self.default_group if value is None else _as_text(value)
        if self._over(size):
            verdict = self._check_limits(msg, size, priority)
            if verdict == 0:            # dropped by the policy
                self._flush()
                return False
            ftd = verdict == 2
        if self.lvq and self._lvq_replace(msg, key, size, durable, expires, ftd,
                                          not hold and self.held == 0):
            if self.enqueue_hook is not None:
                self.enqueue_hook(msg)
            self._flush()
            if self.consumers:
                self._run_dispatch()
            return True
        if self.groups:
            g = self.group_map.get(key)
            if g is None:
                g = Group.__new__(Group)
                g.name = key
                self.group_map[key] = g
            g.total += 1
        seq = self.next_seq
        self.next_seq += 1
        _set_seq(msg, seq)
        e = store_append(&self.store)
        e.msg = <PyObject*>msg
        Py_INCREF(msg)
        if g is not None:
            e.key = <PyObject*>g
            Py_INCREF(g)
        elif key is not None:
            e.key = <PyObject*>key
            Py_INCREF(key)
        e.seq = seq
        e.expires = expires
        e.size = <uint32_t>size
        e.level = level
        e.durable = durable
        e.ftd = ftd
        if self.track_latency:
            e.enq_ns = _mono_ns()
        self._count_enqueue(e)
        if hold or self.held:
            e.state = ST_HELD if hold else ST_BEHIND
            if self.held == 0:
                self.held_seq = seq
            self.held += 1
        else:
            e.state = ST_AVAILABLE
            self.messages.pushed(self.store.count - 1)
            self.available += 1
        if self.lvq:
            self.lvq_index[key] = seq
        if not self.flowStopped and (
                (self.flow_stop_count != 0 and self.msgDepth > self.flow_stop_count) or
                (self.flow_stop_size != 0 and self.byteDepth > self.flow_stop_size)):
            self.flowStopped = True
            self.flowStoppedCount += 1
        if ftd:
            self._events.append((EV_FTD, msg))
        if self.enqueue_hook is not None:
            self.enqueue_hook(msg)
        if self._events:
            self._flush()
        if self.held:
            self._release_held()       # a policy may have dropped the held messages in front
        if self.consumers:
            self._run_dispatch()
        return True

    # -- held messages (see "Held") -----------------------------------------------------------------
    cdef bint _release_held(self) except -1:
        """Make the held messages at the front that no longer wait available, in order. Returns
        whether any became available."""
        cdef Py_ssize_t i, n
        cdef Entry* e
        cdef bint released = False
        i = store_lower_bound(&self.store, self.held_seq)
        n = self.store.count
        while i < n and self.held:
            e = store_at(&self.store, i)
            if e.state == ST_HELD:
                self.held_seq = e.seq
                return released
            if e.state == ST_BEHIND:
                e.state = ST_AVAILABLE
                self.held -= 1
                self.available += 1
                self.messages.pushed(i)
                store_made_available(&self.store, i)
                released = True
            i += 1
        return released

    cpdef unhold(self, object msg):
        """``msg`` (queued with hold=True) may be seen: it and the held messages behind it that do
        not wait become available once nothing held is in front of them."""
        cdef Py_ssize_t i = store_find(&self.store, _get_seq(msg))
        cdef Entry* e
        if i < 0:
            return
        e = store_at(&self.store, i)
        if e.state != ST_HELD or e.msg != <PyObject*>msg:
            return
        e.state = ST_BEHIND
        if self._release_held() and self.consumers:
            self._run_dispatch()

    cpdef drop_held(self, object msg):
        """Take out ``msg``, still held (its record was lost: nobody has seen it). Returns whether
        it was there."""
        cdef Py_ssize_t i = store_find(&self.store, _get_seq(msg))
        cdef Entry* e
        if i < 0:
            return False
        e = store_at(&self.store, i)
        if (e.state != ST_HELD and e.state != ST_BEHIND) or e.msg != <PyObject*>msg:
            return False
        self._drop(i)
        if self._events:
            self._flush()
        if self.held and self._release_held() and self.consumers:
            self._run_dispatch()
        return True

    cpdef remove(self, object msg):
        """Take ``msg`` out wherever it waits (available or held; not acquired), as a dequeue: an HA
        backup applying the primary's dequeue. Returns whether it was there."""
        cdef Py_ssize_t i = store_find(&self.store, _get_seq(msg))
        cdef Entry* e
        if i < 0:
            return False
        e = store_at(&self.store, i)
        if e.msg != <PyObject*>msg or e.state == ST_ACQUIRED or e.state == ST_DELETED:
            return False
        self._drop(i)
        self.acquires += 1
        self.totals.acquires += 1
        if self._events:
            self._flush()
        if self.held and self._release_held() and self.consumers:
            self._run_dispatch()
        return True

    cdef int _check_limits(self, object msg, int64_t size, int priority) except -1:
        """The message does not fit: apply the policy. 1 = go ahead, 2 = go ahead flowed to disk,
        0 = the message is dropped; raises QueueLimitExceeded to refuse it."""
        cdef Policy policy = self.policy
        cdef Py_ssize_t i, n
        cdef int64_t count, bytes_
        cdef Entry* e
        if policy == POLICY_FLOW_TO_DISK and self.ftd_hook is not None:
            return 2
        if policy == POLICY_REJECT or policy == POLICY_FLOW_TO_DISK:
            self.discardsOverflow += 1
            self.totals.discardsOverflow += 1
            raise self._limit_error("")
        if policy == POLICY_SELF_DESTRUCT:
            self.discardsOverflow += 1
            self.totals.discardsOverflow += 1
            self._events.append((EV_DESTRUCT,))
            return 0
        if self.max_size and size > self.max_size:
            self.discardsOverflow += 1
            self.totals.discardsOverflow += 1
            raise QueueLimitExceeded(
                self.name, getattr(self.settings, "policy_type", "ring"),
                "Message larger than configured maximum depth on %s: size=%d, max-size=%d"
                % (self.name, size, self.max_size))
        if policy == POLICY_RING_STRICT:
            # Find how many of the oldest messages must go; refuse if one of them is acquired.
            count = self.msgDepth
            bytes_ = self.byteDepth
            n = 0
            i = 0
            while (self.max_count and count + 1 > self.max_count) or \
                    (self.max_size and bytes_ + size > self.max_size):
                while store_at(&self.store, i).state == ST_DELETED:
                    i += 1
                e = store_at(&self.store, i)
                if e.state == ST_ACQUIRED:
                    self.discardsOverflow += 1
                    self.totals.discardsOverflow += 1
                    raise self._limit_error("the oldest message is acquired")
                count -= 1
                bytes_ -= e.size
                n += 1
                i += 1
            while n:
                victim = self._drop(0)      # the front is never a DELETED slot
                self.discardsRing += 1
                self.totals.discardsRing += 1
                if self.alternate_exchange:
                    self._events.append((EV_REROUTE, victim, self.alternate_exchange))
                n -= 1
            return 1
        # ring
        while self._over(size):
            i = self.messages.ring_victim()
            if i >= 0 and self.levels and (<object>store_at(&self.store, i).msg).priority > priority:
                i = -1
            if i < 0:
                self.discardsRing += 1
                self.totals.discardsRing += 1
                return 0
            victim = self._drop(i)
            self.discardsRing += 1
            self.totals.discardsRing += 1
            if self.alternate_exchange:
                self._events.append((EV_REROUTE, victim, self.alternate_exchange))
        return 1

    cdef int _lvq_replace(self, object msg, object key, int64_t size, bint durable, double expires,
                          bint ftd, bint in_place) except -1:
        """Remove the message msg replaces. Returns 1 if msg took its place (lvq_no_browse), 0 if
        msg is still to be appended."""
        cdef Py_ssize_t i
        cdef Entry* e
        old = self.lvq_index.get(key)
        if old is None:
            return 0
        i = store_find(&self.store, old)
        if i < 0 or store_at(&self.store, i).state == ST_DELETED:
            return 0
        self.discardsLvq += 1
        self.totals.discardsLvq += 1
        if not (in_place and self.lvq_no_browse and store_at(&self.store, i).state == ST_AVAILABLE):
            self._drop(i)
            return 0
        # In place: the old message is dequeued, the new one enqueued at the same position.
        self.avail_epoch += 1
        _set_seq(msg, old)
        e = store_at(&self.store, i)
        self._count_dequeue(e)
        if ((e.durable and self.durable) or e.ftd or self.observe_dequeues) and self.dequeue_hook is not None:
            self._events.append((EV_DEQUEUE, <object>e.msg))
        Py_INCREF(msg)
        old_msg = <object>e.msg
        e.msg = <PyObject*>msg
        e.size = <uint32_t>size
        e.expires = expires
        e.durable = durable
        e.ftd = ftd
        e.enq_ns = _mono_ns() if self.track_latency else 0
        self._count_enqueue(e)
        Py_DECREF(old_msg)           # the store's reference; ours lives until return
        if self.flowStopped:
            self._flow_check_resume()
        elif (self.flow_stop_count != 0 and self.msgDepth > self.flow_stop_count) or \
                (self.flow_stop_size != 0 and self.byteDepth > self.flow_stop_size):
            self.flowStopped = True
            self.flowStoppedCount += 1
        if ftd:
            self._events.append((EV_FTD, msg))
        return 1

    @property
    def depth(self):
        """Messages waiting for a consumer (acquired ones not included)."""
        return self.available

    @property
    def flow_stopped(self):
        return self.flowStopped

    @property
    def unacked(self):
        return self.unackedMessages

    @property
    def messageLatencyAverage(self):
        return self.messageLatencyTotal // self.messageLatencySamples if self.messageLatencySamples else 0

    # -- consumers ----------------------------------------------------------------------------------
    def add_consumer(self, link):
        self.consumers.append(link)
        self.had_consumers = True
        self.consumerCount = len(self.consumers)
        if self.consumerCount > self.consumerCountHigh:
            self.consumerCountHigh = self.consumerCount

    def remove_consumer(self, link):
        try:
            self.consumers.remove(link)
        except ValueError:
            return
        self.consumerCount = len(self.consumers)
        if self.consumerCount < self.consumerCountLow:
            self.consumerCountLow = self.consumerCount
        if not self.consumers and self.auto_delete and self._on_unused is not None:
            self._on_unused(self)

    cpdef dispatch(self):
        """Hand waiting messages to the consumers that can take them, round robin."""
        self._run_dispatch()

    cdef int _run_dispatch(self) except -1:
        if self._dispatching:
            self._redispatch = True     # the running dispatch goes round once more
            return 0
        self._dispatching = True
        try:
            while True:
                self._redispatch = False
                self._dispatch()
                if not self._redispatch:
                    break
        finally:
            self._dispatching = False
        return 0

    cdef int _dispatch(self) except -1:
        cdef Py_ssize_t n, idle = 0, i
        cdef list consumers = self.consumers
        while True:
            n = len(consumers)
            if n == 0 or idle >= n or self.available == 0:
                break
            self.rr = (self.rr + 1) % n
            link = consumers[self.rr]
            if _browsing(link):
                self._browse(link)
                idle += 1
                continue
            if not _can_take(link):
                idle += 1
                continue
            i = self._next_for(link)
            if i < 0:
                idle += 1
                continue
            msg = self._acquire(i, link)
            _deliver(link, msg, self)
            idle = 0
        if self._events:
            self._flush()
        return 0

    cdef Py_ssize_t _next_for(self, object link) except -2:
        """The store index of the message this consumer would acquire next (expired messages met on
        the way are removed), or -1."""
        cdef Py_ssize_t i
        cdef Entry* e
        cdef double now = -1.0
        cdef Group g
        sel = _selector(link)
        if sel is not None:
            return self._next_selected(link, <Selector?>sel, False)
        if self.groups:
            i = store_first_available(&self.store)
            while i >= 0:
                e = store_at(&self.store, i)
                if e.expires != 0.0:
                    if now < 0.0:
                        now = self._now()
                        e = store_at(&self.store, i)
                    if now >= e.expires:
                        self._expire(i)
                        i = store_first_available(&self.store)
                        continue
                g = <Group>e.key
                if g.owner is None or g.owner is link:
                    return i
                i = store_next_available(&self.store, i + 1)
            return -1
        while True:
            i = self.messages.next()
            if i < 0:
                return -1
            e = store_at(&self.store, i)
            if e.expires != 0.0:
                if now < 0.0:
                    now = self._now()
                    e = store_at(&self.store, i)
                if now >= e.expires:
                    self._expire(i)
                    continue
            return i

    cdef Py_ssize_t _next_selected(self, object link, Selector sel, bint peek) except -2:
        """The store index of the message ``sel`` selects for ``link`` next (highest priority level
        first, oldest first within it), or -1. Messages it does not select stay where they are for
        other consumers; ``sel`` remembers how far the run of them at the front reaches
        (``scan_mark``), so the next scan starts after it until something becomes available behind
        the mark again (``avail_epoch``). ``peek``: change nothing (expired messages are passed)."""
        cdef Py_ssize_t i, best = -1
        cdef Entry* e
        cdef double now = -1.0
        cdef int64_t seq, mark = 0
        cdef int level, best_level = -1
        cdef int top = self.levels - 1 if self.levels else 0
        cdef bint prefix = True     # every message so far was looked at and not selected
        cdef Group g
        if sel.scan_epoch == self.avail_epoch:
            mark = sel.scan_mark
            i = store_next_available(&self.store, store_lower_bound(&self.store, mark + 1))
        else:
            i = store_first_available(&self.store)
        while i >= 0:
            e = store_at(&self.store, i)
            seq = e.seq
            if e.expires != 0.0:
                if now < 0.0:
                    now = self._now()
                    e = store_at(&self.store, i)
                if now >= e.expires:
                    if not peek:
                        self._expire(i)
                        i = store_next_available(&self.store, store_lower_bound(&self.store, seq + 1))
                        continue
                    i = store_next_available(&self.store, i + 1)
                    continue
            if self.groups:
                g = <Group>e.key
                if g.owner is not None and g.owner is not link:
                    prefix = False
                    i = store_next_available(&self.store, i + 1)
                    continue
            level = e.level
            if best < 0 or level > best_level:
                if sel.matches(<object>e.msg):
                    best = i
                    best_level = level
                    prefix = False
                    if level >= top:
                        break
                elif prefix:
                    mark = seq
            i = store_next_available(&self.store, i + 1)
        if not peek:
            sel.scan_mark = mark
            sel.scan_epoch = self.avail_epoch
        return best

    cdef object _acquire(self, Py_ssize_t i, object link):
        cdef Entry* e = store_at(&self.store, i)
        cdef Group g
        e.state = ST_ACQUIRED
        self.available -= 1
        self.messages.acquired(i)
        self.acquires += 1
        self.totals.acquires += 1
        self._unacked_add(1)
        if self.groups:
            g = <Group>e.key
            g.owner = link
            g.acquired += 1
        return <object>e.msg

    cdef int _browse(self, object link) except -1:
        cdef Py_ssize_t i
        cdef Entry* e
        cdef int64_t seq
        sel = _selector(link)
        if sel is not None and type(sel) is not Selector:
            raise TypeError("a consumer's selector must be a Selector")
        while _can_take(link):
            i = store_next_available(&self.store, store_lower_bound(&self.store, link.browse_position + 1))
            if i < 0:
                return 0
            e = store_at(&self.store, i)
            if e.expires != 0.0 and self._now() >= store_at(&self.store, i).expires:
                self._expire(i)
                continue
            msg = <object>e.msg
            seq = e.seq
            link.browse_position = seq
            if sel is not None and not (<Selector>sel).matches(msg):
                continue
            _deliver(link, msg, self)
        return 0

    def has_message_for(self, link):
        """Whether ``link`` could get a message now (expired ones do not count). Changes nothing."""
        cdef Py_ssize_t i
        cdef Entry* e
        cdef double now = -1.0
        if self.loading is not None:
            self.loading(self)
        sel = getattr(link, "selector", None)
        if sel is not None and not link.browsing:
            return self._next_selected(link, <Selector?>sel, True) >= 0
        if link.browsing:
            i = store_next_available(&self.store, store_lower_bound(&self.store, link.browse_position + 1))
        else:
            i = store_first_available(&self.store)
        while i >= 0:
            e = store_at(&self.store, i)
            if e.expires != 0.0:
                if now < 0.0:
                    now = self._now()
                    e = store_at(&self.store, i)
                if now >= e.expires:
                    i = store_next_available(&self.store, i + 1)
                    continue
            if sel is not None and not (<Selector?>sel).matches(<object>e.msg):
                i = store_next_available(&self.store, i + 1)
                continue
            if link.browsing or not self.groups:
                return True
            if (<Group>e.key).owner is None or (<Group>e.key).owner is link:
                return True
            i = store_next_available(&self.store, i + 1)
        return False

    # -- settlement of acquired messages --------------------------------------------------------------
    cdef Py_ssize_t _find_acquired(self, object msg) except -2:
        cdef Py_ssize_t i = store_find(&self.store, _get_seq(msg))
        cdef Entry* e
        if i < 0:
            return -1
        e = store_at(&self.store, i)
        if e.state != ST_ACQUIRED or e.msg != <PyObject*>msg:
            return -1
        return i

    cpdef dequeued(self, object msg):
        """An acquired message was accepted (or sent pre-settled). A message the queue no longer
        holds (an LVQ replaced it) is ignored."""
        cdef Py_ssize_t i = self._find_acquired(msg)
        cdef Entry* e
        cdef int64_t lat
        cdef Group g = None
        if i < 0:
            return
        e = store_at(&self.store, i)
        if e.enq_ns:
            lat = _mono_ns() - e.enq_ns
            if self.messageLatencySamples == 0 or lat < self.messageLatencyMin:
                self.messageLatencyMin = lat
            if lat > self.messageLatencyMax:
                self.messageLatencyMax = lat
            self.messageLatencySamples += 1
            self.messageLatencyTotal += lat
        if self.groups and e.key != NULL:
            g = <Group>e.key
        self._drop(i)
        if self._events:
            self._flush()
        if g is not None and g.owner is None and g.total > 0 and self.consumers:
            self._run_dispatch()    # the group is free: consumers skipped its messages while it was held

    cpdef release(self, object msg, bint count_failure=False):
        """Put an acquired message back in its place (released or modified). On a deleted queue the
        message is orphaned instead: rerouted to the alternate exchange, if any."""
        cdef Py_ssize_t i = self._find_acquired(msg)
        cdef Entry* e
        if i < 0:
            return
        self.releases += 1
        self.totals.releases += 1
        if type(msg) is Message:
            (<Message>msg).acquired_before = True
            if count_failure:
                (<Message>msg).delivery_count += 1
        else:
            msg.acquired_before = True
            if count_failure:
                msg.delivery_count += 1
        if self.deleted:
            self._drop(i)
            if self.alternate_exchange:
                self._events.append((EV_REROUTE, msg, self.alternate_exchange))
            self._flush()
            return
        e = store_at(&self.store, i)
        self._unacquire(e)
        e.state = ST_AVAILABLE
        self.available += 1
        self.avail_epoch += 1
        self.messages.released(i)
        store_made_available(&self.store, i)
        if self._events:
            self._flush()
        if self.consumers:
            self._run_dispatch()

    cpdef reject(self, object msg):
        """An acquired message was rejected: dequeued, and rerouted to the alternate exchange (with
        its delivery count reset, as qpidd) if the queue has one."""
        cdef Py_ssize_t i = self._find_acquired(msg)
        cdef Group g = None
        if i < 0:
            return
        self.discardsSubscriber += 1
        self.totals.discardsSubscriber += 1
        if self.groups and store_at(&self.store, i).key != NULL:
            g = <Group>store_at(&self.store, i).key
        self._drop(i)
        if self.alternate_exchange:
            msg.delivery_count = 0
            self._events.append((EV_REROUTE, msg, self.alternate_exchange))
        self._flush()
        if g is not None and g.owner is None and g.total > 0 and self.consumers:
            self._run_dispatch()

    # -- management -----------------------------------------------------------------------------------
    def purge(self, request=0, exchange=None):
        """Remove up to ``request`` waiting messages (0: all), oldest first; rerouted through the
        exchange named ``exchange`` if given (counted as reroutes), else discarded (discardsPurge).
        Returns how many. (QMF purge/reroute.)"""
        cdef Py_ssize_t n = 0, limit = request or 0, i
        if self.loading is not None:
            self.loading(self)
        while limit == 0 or n < limit:
            i = store_first_available(&self.store)
            if i < 0:
                break
            msg = self._drop(i)
            n += 1
            if exchange:
                self._events.append((EV_REROUTE, msg, exchange))
        self.acquires += n
        self.totals.acquires += n
        if exchange:
            self.reroutes += n
            self.totals.reroutes += n
        else:
            self.discardsPurge += n
            self.totals.discardsPurge += n
        self._flush()
        return n

    def purge_expired(self):
        """Remove every waiting message whose TTL has passed (the broker's periodic sweep). Returns
        how many."""
        cdef Py_ssize_t n = 0, i
        cdef double now = self._now()
        if self.loading is not None:
            self.loading(self)
        i = store_first_available(&self.store)
        while i >= 0:
            e = store_at(&self.store, i)
            if e.expires != 0.0 and now >= e.expires:
                seq = e.seq
                self._expire(i)
                n += 1
                i = store_next_available(&self.store, store_lower_bound(&self.store, seq + 1))
            else:
                i = store_next_available(&self.store, i + 1)
        self._flush()
        return n

    def drain_all(self):
        """Remove and return every waiting message (the queue is being deleted)."""
        cdef list out = []
        cdef Py_ssize_t i
        if self.loading is not None:
            self.loading(self)
        if self.held:
            for i in range(self.store.count):
                if store_at(&self.store, i).state == ST_HELD:
                    store_at(&self.store, i).state = ST_BEHIND
            self._release_held()
        while True:
            i = store_first_available(&self.store)
            if i < 0:
                break
            out.append(self._drop(i))
        self._flush()
        return out

    def reset_watermarks(self):
        """Start new High/Low periods at the current values (management does this each publish)."""
        self.msgDepthHigh = self.msgDepthLow = self.msgDepth
        self.byteDepthHigh = self.byteDepthLow = self.byteDepth
        self.consumerCountHigh = self.consumerCountLow = self.consumerCount
        self.bindingCountHigh = self.bindingCountLow = self.bindingCount
        self.unackedMessagesHigh = self.unackedMessagesLow = self.unackedMessages
        self.enqueueTxnCountHigh = self.enqueueTxnCountLow = self.enqueueTxnCount
        self.dequeueTxnCountHigh = self.dequeueTxnCountLow = self.dequeueTxnCount

    def group_owner(self, name):
        """The consumer holding message group ``name``, or None."""
        g = self.group_map.get(name)
        return None if g is None else g.owner

    def all_messages(self):
        """Every message in the queue -- waiting, held or acquired -- in sequence order (an HA
        snapshot; not a hot path)."""
        cdef list out = []
        cdef Py_ssize_t i
        cdef Entry* e
        if self.loading is not None:
            self.loading(self)
        for i in range(self.store.count):
            e = store_at(&self.store, i)
            if e.state != ST_DELETED and e.msg != NULL:
                out.append(<object>e.msg)
        return out

    def messages_waiting(self):
        """The waiting messages in sequence order (for management and tests; not a hot path)."""
        cdef list out = []
        cdef Py_ssize_t i
        if self.loading is not None:
            self.loading(self)
        i = store_first_available(&self.store)
        while i >= 0:
            out.append(<object>store_at(&self.store, i).msg)
            i = store_next_available(&self.store, i + 1)
        return out

