# cython: language_level=3
"""cypid.pyx.ha_stream: the HA live stream's per-message path (see ha_stream.pxd).

A loop turn's enqueues on replicated queues travel to the backups as one ``enqb`` stream message
(ha/stream.py): the names of the queues it touches and one binary blob of records, each

    u32 queue index, u64 replication id, u32 length, the message's bytes (header section first)

little-endian, packed here as the messages are queued (no Python object per message) and encoded
once for every backup. Each routed copy held for the ready backups is one ``Hold``: released when
every ready backup the blob went to has acknowledged it, or when the copy leaves the primary's queue
first; the producer's Pending counts one hold per copy.
"""
cimport cython
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from libc.stdint cimport uint32_t, uint64_t
from libc.stdlib cimport free, realloc
from libc.string cimport memcpy

from cypid.pyx.message cimport Message, encoded_header, message_from
from cypid.pyx.store_core cimport Pending

from cypid.pyx.queue import QueueLimitExceeded

#: live enqueues of one loop turn share a stream message up to this many bytes
LIVE_BATCH_BYTES = 256 * 1024
cdef enum:
    RECORD_HEAD = 16
#: a ReplicatedQueue's room with no flow bound
UNBOUNDED = 1 << 62


cdef inline void put32(char* p, uint32_t v) noexcept:
    cdef int k
    for k in range(4):
        p[k] = <char>((v >> (8 * k)) & 0xff)


cdef inline void put64(char* p, uint64_t v) noexcept:
    cdef int k
    for k in range(8):
        p[k] = <char>((v >> (8 * k)) & 0xff)


cdef inline uint32_t get32(const unsigned char* p) noexcept:
    return p[0] | (<uint32_t>p[1] << 8) | (<uint32_t>p[2] << 16) | (<uint32_t>p[3] << 24)


cdef inline uint64_t get64(const unsigned char* p) noexcept:
    return get32(p) | (<uint64_t>get32(p + 4) << 32)


@cython.final
cdef class Hold:
    """One routed message copy's hold for the ready backups (ha/README.md, "At least once")."""

    cdef int finish(self) except -1:
        cdef Pending p
        if self.done:
            return 0
        self.done = True
        guards = self.rq.guards
        if guards.get(self.id) is self:
            del guards[self.id]
        if self.pending is not None:
            p = <Pending>self.pending
            self.pending = None
            p.release()
        return 0

    def __repr__(self):
        return "<Hold %d left=%d%s>" % (self.id, self.left, " done" if self.done else "")


@cython.final
cdef class ReplicatedQueue:
    """The primary's replication ids for an ``all`` queue's messages, and its queue hooks."""

    def __init__(self, PrimaryCore primary, queue):
        self.primary = primary
        self.queue = queue
        self.guards = {}
        self.ids = {}
        self.next_id = 1
        self.room_count = self.room_bytes = UNBOUNDED
        for msg in queue.all_messages():
            self.ids[msg] = self.next_id
            self.next_id += 1
        self.previous_hook = queue.dequeue_hook      # the store's, for a durable queue
        queue.enqueue_hook = self.enqueued
        queue.observe_dequeues = True
        queue.dequeue_hook = self.dequeued

    def unhook(self):
        queue = self.queue
        queue.enqueue_hook = None
        queue.observe_dequeues = False
        if queue.dequeue_hook == self.dequeued:
            queue.dequeue_hook = self.previous_hook

    def enqueued(self, msg):
        cdef uint64_t i = self.next_id
        self.next_id = i + 1
        self.ids[msg] = i
        self.primary.add(self, msg, i)

    def dequeued(self, msg):
        hook = self.previous_hook
        if hook is not None:
            hook(msg)
        i = self.ids.pop(msg, None)
        if i is not None:
            h = self.guards.pop(i, None)
            if h is not None:
                (<Hold>h).finish()
            self.primary.removed(self, i)


cdef class PrimaryCore:
    """Base of ha/primary.py's ``Primary``: the per-message half. The subclass sends what
    ``take_enqueues()`` and ``take_dequeues()`` give (its ``flush()``), arms the holds of a blob with
    the number of ready backups it went to (``arm``), and keeps ``senders``, ``ready`` and
    ``recovering`` up to date (``recount``)."""

    def __cinit__(self, *args, **kwargs):
        self.routed = []
        self.recovering_holds = []
        self.flow_holds = {}
        self.flowed = []
        self.deqs = {}
        self.qnames = []
        self.qindex = {}
        self.holds = []
        self.buf = NULL
        self.length = self.capacity = self.count = 0

    def __dealloc__(self):
        free(self.buf)

    cdef int put(self, const char* data, Py_ssize_t n) except -1:
        cdef Py_ssize_t want = self.length + n
        cdef char* grown
        if want > self.capacity:
            want = max(want, 2 * self.capacity, 64 * 1024)
            grown = <char*>realloc(self.buf, want)
            if grown == NULL:
                raise MemoryError()
            self.buf = grown
            self.capacity = want
        memcpy(self.buf + self.length, data, n)
        self.length += n
        return 0

    cdef int add(self, ReplicatedQueue rq, object msg, uint64_t i) except -1:
        """``msg`` was queued on ``rq`` with id ``i``: a record of this turn's blob, a Hold for the
        ready backups, a recovering hold."""
        cdef char head[RECORD_HEAD]
        cdef Message m
        cdef bytes header = None
        cdef bytes body
        cdef Hold h
        cdef Py_ssize_t size
        if self.senders:
            qi = self.qindex.get(rq)
            if qi is None:
                qi = len(self.qnames)
                self.qnames.append(rq.queue.name)
                self.qindex[rq] = qi
            if type(msg) is Message and (<Message>msg).body is not None:
                m = <Message>msg
                header = encoded_header(m)
                body = m.body
            else:
                body = self.wire(rq, msg)       # flowed to disk: the store reads it back
            size = PyBytes_GET_SIZE(body) + (PyBytes_GET_SIZE(header) if header is not None else 0)
            put32(head, <uint32_t>qi)
            put64(head + 4, i)
            put32(head + 12, <uint32_t>size)
            self.put(head, RECORD_HEAD)
            if header is not None:
                self.put(PyBytes_AS_STRING(header), PyBytes_GET_SIZE(header))
            self.put(PyBytes_AS_STRING(body), PyBytes_GET_SIZE(body))
            self.count += 1
            if self.ready:
                h = Hold.__new__(Hold)
                h.rq = rq
                h.id = i
                self.holds.append(h)
                self.routed.append(h)
                rq.guards[i] = h
            if self.flow_bounded:
                if rq.open_count == 0:
                    self.flowed.append(rq)
                rq.open_count += 1
                rq.open_bytes += size
                if not rq.flow_stopped and (rq.open_count > rq.room_count or rq.open_bytes > rq.room_bytes):
                    self.flow_crossed(rq)
            if self.length >= LIVE_BATCH_BYTES:
                self.flush()
            else:
                self.schedule()
        if self.recovering:
            self.routed.append(None)
            self.schedule()
        if rq.flow_stopped:
            self.routed.append(rq)
            self.schedule()
        return 0

    cdef int removed(self, ReplicatedQueue rq, uint64_t i) except -1:
        if not self.senders:
            return 0
        ids = self.deqs.get(rq)
        if ids is None:
            ids = self.deqs[rq] = []
            self.schedule()
        ids.append(i)
        return 0

    cdef int schedule(self) except -1:
        if not self.scheduled:
            self.scheduled = True
            self.loop.call_soon(self.end_turn)
        return 0

    def end_turn(self):
        """The end of a loop turn: send what it batched; a hold no producer claimed (the broker
        queued the message itself) holds nothing."""
        self.scheduled = False
        self.flush()
        self.routed = []

    def flush(self):
        raise NotImplementedError

    def wire(self, rq, msg):
        raise NotImplementedError

    def flow_crossed(self, rq):
        """``rq``'s live enqueues of this turn may put a backup over a flow bound."""
        raise NotImplementedError

    def take_enqueues(self):
        """(queue names, records blob, [Hold]) of the enqueues batched since the last call, or None."""
        if not self.count:
            return None
        out = (self.qnames, PyBytes_FromStringAndSize(self.buf, self.length), self.holds)
        self.qnames, self.qindex, self.holds = [], {}, []
        self.length = self.count = 0
        return out

    def take_flowed(self):
        """{ReplicatedQueue: (count, bytes)} of the live enqueues batched since the last call (with a
        flow bound)."""
        cdef ReplicatedQueue rq
        out = {}
        for o in self.flowed:
            rq = <ReplicatedQueue>o
            out[rq] = (rq.open_count, rq.open_bytes)
            rq.open_count = rq.open_bytes = 0
        self.flowed = []
        return out

    def take_dequeues(self):
        """{ReplicatedQueue: [ids]} batched since the last call."""
        deqs, self.deqs = self.deqs, {}
        return deqs

    def arm(self, list holds, int backups):
        """``holds`` went to ``backups`` ready backups: each waits for their acknowledgements."""
        cdef Hold h
        for o in holds:
            h = <Hold>o
            h.armed = True
            h.left = backups
            if backups <= 0:
                h.finish()

    cpdef hold(self, outcome):
        """After routing a producer's message: one hold per copy the ready backups must have (and
        one while recovering). Returns the outcome to settle with (a Pending when anything holds it)."""
        cdef Hold h
        cdef Pending p = None
        routed = self.routed
        if not routed:
            return outcome
        self.routed = []
        if outcome is not None:
            if type(outcome) is not Pending:
                return outcome          # refused: nothing to wait for
            p = <Pending>outcome
        for o in routed:
            if o is not None and type(o) is not Hold:       # a flow-stopped queue (ha/flow.py)
                if p is None:
                    p = Pending.__new__(Pending)
                p.count += 1
                held = self.flow_holds.get(o)
                if held is None:
                    self.flow_holds[o] = [p]
                else:
                    held.append(p)
                continue
            if o is not None:
                h = <Hold>o
                if h.done or h.pending is not None:
                    continue            # it left the queue already: nothing to wait for
            if p is None:
                p = Pending.__new__(Pending)
            p.count += 1
            if o is None:
                self.recovering_holds.append(p)
            else:
                h.pending = p
        return p if p is not None else outcome

    cpdef acknowledged(self, list holds):
        """A ready backup acknowledged the blob of ``holds`` (or went away)."""
        cdef Hold h
        for o in holds:
            h = <Hold>o
            if not h.done:
                h.left -= 1
                if h.left <= 0:
                    h.finish()


def pack_records(list ids, list datas):
    """The records blob of messages of one queue (index 0): ``ids[k]`` and the bytes ``datas[k]``
    (a snapshot's messages)."""
    cdef char head[RECORD_HEAD]
    cdef Py_ssize_t k, size = 0
    cdef bytes data
    for data in datas:
        size += RECORD_HEAD + PyBytes_GET_SIZE(data)
    out = PyBytes_FromStringAndSize(NULL, size)
    cdef char* p = PyBytes_AS_STRING(out)
    for k in range(len(datas)):
        data = <bytes>datas[k]
        put32(p, 0)
        put64(p + 4, <uint64_t>ids[k])
        put32(p + 12, <uint32_t>PyBytes_GET_SIZE(data))
        memcpy(p + RECORD_HEAD, PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data))
        p += RECORD_HEAD + PyBytes_GET_SIZE(data)
    return out


@cython.final
cdef class AllOf:
    """The journal syncs a stream message's acceptance waits for, on a backup: each Pending holds
    it as it would a producer's delivery (``Pending.attach``: ``hold()``, then ``release()``).
    ``start(done)`` runs ``done(None)`` once every one is released, or ``done(outcome)`` with a
    failed sync's outcome."""

    def hold(self):
        self.left += 1
        return self

    def release(self, outcome=None):
        if outcome is not None and self.outcome is None:
            self.outcome = outcome
        self.left -= 1
        self.check()

    def start(self, done):
        self.done = done
        self.started = True
        self.check()

    cdef int check(self) except -1:
        if self.started and self.left <= 0 and self.done is not None:
            done, self.done = self.done, None
            done(self.outcome)
        return 0


def apply_records(list targets, bytes recs, store, refused):
    """A backup applies an ``enqb`` blob: each record's message into its queue (``targets[index]``:
    (queue, {id: message}), or None to skip it), through the store when durable. Returns an AllOf
    of the journal syncs to wait for (not started), or None. ``refused(queue, error)`` is told of a
    queue limit; a store that refuses a message raises ValueError (the backup must not accept it)."""
    cdef const unsigned char* p = <const unsigned char*>PyBytes_AS_STRING(recs)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(recs)
    cdef Py_ssize_t off = 0, size, ntargets = len(targets)
    cdef uint32_t qi
    cdef uint64_t i
    cdef Message m
    cdef AllOf waits = None
    while off < n:
        if off + RECORD_HEAD > n:
            raise ValueError("HA: truncated stream record")
        qi = get32(p + off)
        i = get64(p + off + 4)
        size = get32(p + off + 12)
        off += RECORD_HEAD
        if off + size > n:
            raise ValueError("HA: truncated stream record")
        target = targets[qi] if qi < ntargets else None
        if target is not None:
            queue, ids = target
            m = message_from(<const char*>(p + off), size)
            try:
                if m.durable and store is not None:
                    outcome = store.enqueue(queue, m)
                else:
                    queue.enqueue(m)
                    outcome = None
            except QueueLimitExceeded as e:
                refused(queue, e)
            else:
                ids[i] = m
                if outcome is not None:
                    if type(outcome) is not Pending:
                        raise ValueError("HA: queue %r: the store refused a replicated message (%s)"
                                         % (queue.name, getattr(outcome, "description", outcome)))
                    if waits is None:
                        waits = AllOf.__new__(AllOf)
                    (<Pending>outcome).attach(waits)
        off += size
    return waits
