# cython: language_level=3
"""cypid.pyx.ha_stream: the HA live stream's per-message path (see ha_stream.pxd).

A loop turn's enqueues on replicated queues travel to the backups as one ``enqb`` stream message
(ha/stream.py): the names of the queues it touches and one binary blob of records, each

    u32 queue index, u64 replication id, u32 length, the message's bytes (header section first)

little-endian, packed here as the messages are queued (no Python object per message) and encoded
once for every backup. The copies a blob carries are held for the ready backups together, by one
``Blob`` (no object per copy: a slot in its queue's ``Segment``): released when every ready backup
the blob went to has acknowledged it, or one by one as copies leave the primary's queue first (the
segment of id ``i`` is found among the queue's unreleased ones, in id order); the producer's Pending
counts one hold per copy.
"""
cimport cython
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from libc.stdint cimport uint32_t, uint64_t
from libc.stdlib cimport free, realloc
from libc.string cimport memcpy

from cypid.pyx.message cimport Message, encoded_header, message_from
from cypid.pyx.store_core cimport Pending

from cypid.pyx.codec import encode
from cypid.pyx.queue import QueueLimitExceeded

#: live enqueues of one loop turn share a stream message up to this many bytes
LIVE_BATCH_BYTES = 256 * 1024
cdef enum:
    RECORD_HEAD = 16
    ENQB_FIELDS = 6             # the enqb map's keys and values: op, qs, recs
#: the enqb stream message's map entries before the queue names, and the key before the records
cdef bytes ENQB_OP = encode("op") + encode("enqb") + encode("qs")
cdef bytes ENQB_RECS = encode("recs")
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


cdef inline void put32be(char* p, uint32_t v) noexcept:
    cdef int k
    for k in range(4):
        p[k] = <char>((v >> (8 * (3 - k))) & 0xff)


cdef inline uint32_t get32(const unsigned char* p) noexcept:
    return p[0] | (<uint32_t>p[1] << 8) | (<uint32_t>p[2] << 16) | (<uint32_t>p[3] << 24)


cdef inline uint64_t get64(const unsigned char* p) noexcept:
    return get32(p) | (<uint64_t>get32(p + 4) << 32)


@cython.final
cdef class Blob:
    """The holds of one blob's copies for the ready backups (ha/README.md, "At least once"): released
    together when every ready backup the blob went to has acknowledged it; a copy that leaves the
    primary's queue first is released alone (``Segment.release``)."""

    def __cinit__(self):
        self.segs = []

    cdef int finish(self) except -1:
        cdef Segment seg
        cdef list segs
        if self.done:
            return 0
        self.done = True
        for o in self.segs:
            seg = <Segment>o
            segs = seg.rq.segs
            if segs and segs[0] is seg:
                del segs[0]
            else:
                try:
                    segs.remove(seg)
                except ValueError:
                    pass
            for p in seg.slots:
                if p is not None and p is not False:
                    (<Pending>p).release()
            seg.slots = []
        return 0

    def __repr__(self):
        return "<Blob left=%d%s>" % (self.left, " done" if self.done else "")


@cython.final
cdef class Segment:
    """One queue's copies in a blob: consecutive replication ids from ``first``, one slot each."""

    def __cinit__(self):
        self.slots = []

    cdef int release(self, Py_ssize_t k) except -1:
        """Slot ``k``'s copy left the primary's queue: it holds its producer no longer."""
        p = self.slots[k]
        self.slots[k] = False
        if p is not None and p is not False:
            (<Pending>p).release()
        return 0


@cython.final
cdef class ReplicatedQueue:
    """The primary's replication ids for an ``all`` queue's messages, and its queue hooks."""

    def __init__(self, PrimaryCore primary, queue):
        self.primary = primary
        self.queue = queue
        self.segs = []
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
            if self.segs:
                self.held_left(i)
            self.primary.removed(self, i)

    cdef int held_left(self, uint64_t i) except -1:
        """The copy of id ``i`` left the queue: its hold, if any, is released (the blob's others wait)."""
        cdef Segment seg
        for o in self.segs:
            seg = <Segment>o
            if i < seg.first:
                return 0
            if i - seg.first < <uint64_t>len(seg.slots):
                seg.release(<Py_ssize_t>(i - seg.first))
                return 0
        return 0


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
        self.blob = None
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
        """``msg`` was queued on ``rq`` with id ``i``: a record of this turn's blob, a slot in its
        Blob's holds for the ready backups, a recovering hold."""
        cdef char head[RECORD_HEAD]
        cdef Message m
        cdef bytes header = None
        cdef bytes body
        cdef Segment seg
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
            seg = rq.open_seg
            if seg is not None and seg.first + <uint64_t>len(seg.slots) != i:
                seg = None              # ids are consecutive within a segment
            if self.ready:
                if seg is None:
                    seg = self.new_segment(rq, i)
                seg.slots.append(None)  # claimed by the producer's hold()
                self.routed.append(seg)
            elif seg is not None:
                seg.slots.append(False)
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

    cdef Segment new_segment(self, ReplicatedQueue rq, uint64_t i):
        cdef Segment seg = Segment.__new__(Segment)
        if self.blob is None:
            self.blob = Blob.__new__(Blob)
        seg.rq = rq
        seg.blob = self.blob
        seg.first = i
        self.blob.segs.append(seg)
        rq.segs.append(seg)
        rq.open_seg = seg
        return seg

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
        """(queue names, the ``enqb`` stream message, Blob of their holds or None) of the enqueues
        batched since the last call, or None. The stream message's bytes are ha/stream.py's
        ``encode_op("enqb", qs=names, recs=records)`` (a map32 and a vbin32, the records copied once)."""
        cdef ReplicatedQueue rq
        cdef bytes entries, data
        cdef char* p
        cdef Py_ssize_t n, size
        if not self.count:
            return None
        entries = ENQB_OP + encode(self.qnames) + ENQB_RECS
        n = PyBytes_GET_SIZE(entries)
        size = 4 + n + 5 + self.length      # the map32's size: its count and entries
        data = PyBytes_FromStringAndSize(NULL, 8 + size)
        p = PyBytes_AS_STRING(data)
        p[0] = 0x00                         # described: ulong 0x77 (amqp-value), a map32
        p[1] = 0x53
        p[2] = 0x77
        p[3] = <char>0xd1
        put32be(p + 4, <uint32_t>size)
        put32be(p + 8, ENQB_FIELDS)
        memcpy(p + 12, PyBytes_AS_STRING(entries), n)
        p += 12 + n
        p[0] = <char>0xb0                   # vbin32
        put32be(p + 1, <uint32_t>self.length)
        memcpy(p + 5, self.buf, self.length)
        out = (self.qnames, data, self.blob)
        for o in self.qindex:
            rq = <ReplicatedQueue>o
            rq.open_seg = None
        self.qnames, self.qindex, self.blob = [], {}, None
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

    def arm(self, Blob blob, int backups):
        """``blob`` went to ``backups`` ready backups: its holds wait for their acknowledgements."""
        if blob is None:
            return
        blob.left = backups
        if backups <= 0:
            blob.finish()

    cpdef hold(self, outcome):
        """After routing a producer's message: one hold per copy the ready backups must have (and
        one while recovering). Returns the outcome to settle with (a Pending when anything holds it)."""
        cdef Segment seg
        cdef Py_ssize_t k, n
        cdef list slots
        cdef Pending p = None
        routed = self.routed
        if not routed:
            return outcome
        self.routed = []
        if outcome is not None:
            if type(outcome) is not Pending:
                for o in routed:        # refused: nothing to wait for
                    if type(o) is Segment:
                        (<Segment>o).claimed = len((<Segment>o).slots)
                return outcome
            p = <Pending>outcome
        for o in routed:
            if type(o) is Segment:
                seg = <Segment>o
                slots = seg.slots
                n = len(slots)
                for k in range(seg.claimed, n):
                    if slots[k] is None:    # else it left the queue already: nothing to wait for
                        if seg.blob.done:
                            slots[k] = False
                            continue
                        if p is None:
                            p = Pending.__new__(Pending)
                        p.count += 1
                        slots[k] = p
                seg.claimed = n
                continue
            if o is not None:       # a flow-stopped queue (ha/flow.py)
                if p is None:
                    p = Pending.__new__(Pending)
                p.count += 1
                p.flow = True       # its producer's credit follows it (broker_core.pyx)
                held = self.flow_holds.get(o)
                if held is None:
                    self.flow_holds[o] = [p]
                else:
                    held.append(p)
                continue
            if p is None:           # None: recovering
                p = Pending.__new__(Pending)
            p.count += 1
            self.recovering_holds.append(p)
        return p if p is not None else outcome

    cpdef acknowledged(self, Blob blob):
        """A ready backup acknowledged ``blob`` (or went away)."""
        if not blob.done:
            blob.left -= 1
            if blob.left <= 0:
                blob.finish()


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
    cdef Pending p_
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
                    p_ = <Pending>outcome
                    # Pending.attach(waits), without a Python call per message
                    if p_.count > 0:
                        if waits is None:
                            waits = AllOf.__new__(AllOf)
                        waits.left += 1
                        p_.delivery = waits
                    elif p_.outcome is not None:
                        if waits is None:
                            waits = AllOf.__new__(AllOf)
                        if waits.outcome is None:
                            waits.outcome = p_.outcome
        off += size
    return waits
