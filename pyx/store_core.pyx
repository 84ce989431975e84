# cython: language_level=3
"""cypid.pyx.store_core: the message store's per-message path in C (see store_core.pxd).

Per durable message routed to one durable queue: ``StoreCore.enqueue`` appends its record (a direct
C call into the Journal), queues it held and returns a ``Pending`` the producer's link hands its
delivery to. Per sync that comes back: ``StoreCore._synced`` takes the producers it covers off the
journal's wait list in one slice, shows their held copies and releases their holds. Per message
leaving the queue: ``QueueJournalCore.dequeued`` appends its dequeue record (synced lazily). What is
rare (a full or failed journal, several queues, recovery, flow to disk) stays in broker/store.py.
"""
import time

cimport cython
from libc.stdint cimport uint64_t
from libc.stdlib cimport realloc, free
from libc.string cimport memmove

from cypid.pyx.endpoints cimport Delivery
from cypid.pyx.journal cimport Journal
from cypid.pyx.message cimport Message
from cypid.pyx.queue cimport Queue

from cypid.pyx.codec import encode_header
from cypid.pyx.journal_format import JournalError, JournalFull

# User flags of an enqueue record (docs/JOURNAL-FORMAT.md, "The broker's record data").
F_TRANSIENT = 0x80      # written only to flow a message to disk: not recovered
F_HEADER = 0x40         # data = header section + body
F_DURABLE = 0x20        # (no F_HEADER) the message's header said durable
F_SIZE = 0x20           # (with F_HEADER) the message's size as received follows the expiry (u32)
F_EXPIRY = 0x10         # data starts with the absolute expiry: u64 ms since the epoch (wall clock)
F_PRIORITY = 0x0F       # (no F_HEADER) its priority
EXTRA_SHIFT = 8         # bits 8..14: bytes the message had on arrival beyond its recorded data
EXTRA_MAX = 0x7F
EXPIRY_SIZE = 8
SIZE_SIZE = 4
# Dequeue and update records are synced at most this long after they are written when no
# enqueue asks for a sync sooner (qpidd's journal-flush-timeout is 500 ms).
LAZY_FLUSH_DELAY = 0.1

cdef enum:
    C_F_DURABLE = 0x20
    C_F_PRIORITY = 0x0F
    C_EXTRA_SHIFT = 8
    C_EXTRA_MAX = 0x7F

cdef uint64_t _ALL = 0xFFFFFFFFFFFFFFFF


def record_data(msg):
    """(data, flags) of msg's enqueue record. A message with a TTL keeps its absolute expiry in
    front of the header section (F_EXPIRY, docs/JOURNAL-FORMAT.md "Expiry"); others cost nothing.
    The bytes the message had on arrival beyond those recorded go in the flags (EXTRA_SHIFT), or,
    when more than they hold, its whole size goes in the data (F_SIZE)."""
    priority = msg.priority
    body = msg.body
    extra = msg.size - len(body)
    if not msg.ttl and 0 <= priority <= F_PRIORITY and 0 <= extra <= EXTRA_MAX:
        return body, (F_DURABLE if msg.durable else 0) | priority | extra << EXTRA_SHIFT
    header = encode_header(msg.durable, priority, msg.ttl, False, 0)
    parts = []
    flags = F_HEADER
    if msg.expires:
        at = int((time.time() + (msg.expires - time.monotonic())) * 1000)
        parts.append(max(at, 1).to_bytes(EXPIRY_SIZE, "little"))
        flags |= F_EXPIRY
    extra = msg.size - len(header) - len(body)
    if 0 <= extra <= EXTRA_MAX:
        flags |= extra << EXTRA_SHIFT
    else:
        parts.append(msg.size.to_bytes(SIZE_SIZE, "little"))
        flags |= F_SIZE
    parts.append(header)
    parts.append(body)
    return b"".join(parts), flags


def split_record(data, flags):
    """(absolute expiry in ms since the epoch or 0, size as received or None, the message's bytes)
    of a record's data."""
    at = size = None
    off = 0
    if flags & F_EXPIRY:
        at = int.from_bytes(data[:EXPIRY_SIZE], "little")
        off = EXPIRY_SIZE
    if flags & F_HEADER and flags & F_SIZE:
        size = int.from_bytes(data[off:off + SIZE_SIZE], "little")
        off += SIZE_SIZE
    return at or 0, size, data[off:] if off else data


@cython.final
cdef class Pending:
    """The holds on one routed message's settlement (docs/ENGINE.md, "Holds"): ``count`` holds not
    released yet (journal syncs, flow-stopped queues; each kind adds one with ``count += 1`` and
    calls ``release()`` when done); ``syncs``: journals still to sync; ``copies``: (queue, msg) or
    [queue, msg, ...] the message's copies, held in their queues until every journal has synced (then shown) or one
    failed (then taken out); ``delivery``: the producer's engine Delivery, held until the last
    release (None for a pre-settled send, or a message the broker itself routed); ``flow``: one of the
    holds is a flow hold (a flow-stopped queue's, HA stream flow's), which can last, so ``producer``
    (the broker/links.py IncomingLink that routed it) counts the message against its credit until
    the last release (``ProducerCore.flow_released``; broker_core.pyx, "Credit follows holds")."""

    def attach(self, delivery):
        """Hold the producer's ``delivery`` (cypid.pyx.engine.Delivery) until every hold is released."""
        if self.count <= 0:
            if self.outcome is not None:
                delivery.outcome = self.outcome
            return
        self.delivery = delivery.hold()

    cpdef release(self, outcome=None):
        """One hold is done (``outcome``, if given, is what the producer is told); the last one
        settles the delivery."""
        if outcome is not None:
            self.outcome = outcome
        self.count -= 1
        if self.count == 0 and self.delivery is not None:
            delivery = self.delivery
            self.delivery = None
            if type(delivery) is Delivery:
                (<Delivery>delivery).release(self.outcome)
            else:                           # broker/federation.py's settler
                delivery.release(self.outcome)
        if self.count == 0 and self.producer is not None:
            producer = self.producer
            self.producer = None
            producer.flow_released()

    def __repr__(self):
        return "<Pending count=%d syncs=%d>" % (self.count, self.syncs)


cdef class QueueJournalCore:
    """One queue's journal and the store's bookkeeping for it (broker/store.py's QueueJournal)."""

    def __cinit__(self):
        self.rids = {}
        self.wpend = []
        self.wseq = NULL
        self.whead = 0
        self.wcap = 0

    def __dealloc__(self):
        free(self.wseq)

    cdef int add_wait(self, uint64_t seq, object p) except -1:
        """``p`` (a Pending, or anything with its ``syncs``, ``copies`` and ``release``: a
        transaction's step) waits for this journal's sync of ``seq`` (seqs come in increasing order)."""
        cdef Py_ssize_t n = len(self.wpend)
        cdef uint64_t* grown
        if n == self.wcap:
            if self.whead:                      # reuse the room the head left
                self._compact()
                n = len(self.wpend)
            if n == self.wcap:
                grown = <uint64_t*>realloc(self.wseq, (self.wcap * 2 + 64) * sizeof(uint64_t))
                if grown == NULL:
                    raise MemoryError()
                self.wseq = grown
                self.wcap = self.wcap * 2 + 64
        self.wseq[n] = seq
        self.wpend.append(p)
        return 0

    def wait(self, uint64_t seq, p):
        """add_wait for Python (routing to several queues, transactions' steps)."""
        self.add_wait(seq, p)

    cdef void _compact(self):
        cdef Py_ssize_t h = self.whead
        cdef Py_ssize_t n = len(self.wpend)
        if h == 0:
            return
        del self.wpend[:h]
        memmove(self.wseq, self.wseq + h, (n - h) * sizeof(uint64_t))
        self.whead = 0

    cdef list take_synced(self, uint64_t upto):
        """The Pendings waiting for seqs up to ``upto``, in order, taken off the list."""
        cdef Py_ssize_t h = self.whead
        cdef Py_ssize_t n = len(self.wpend)
        cdef Py_ssize_t i = h
        cdef list out
        while i < n and self.wseq[i] <= upto:
            i += 1
        if i == h:
            return None
        if h == 0 and i == n:
            out = self.wpend
            self.wpend = []
            return out
        out = self.wpend[h:i]
        self.whead = i
        if i == n:
            del self.wpend[:]
            self.whead = 0
        elif i > 1024 and i * 2 > n:
            self._compact()
        return out

    def take_waits(self):
        """Every Pending still waiting for a sync of this journal, taken off the list."""
        out = self.take_synced(_ALL)
        return out if out is not None else []

    @property
    def waiting(self):
        """Producers waiting for a sync of this journal."""
        return len(self.wpend) - self.whead

    def dequeued(self, msg):
        """queue.dequeue_hook: a durable message left the (durable) queue, or a message that
        flowed to disk did (its transient record goes, unless reading it back removed it already)."""
        rid = self.rids.pop(msg, None)
        if rid is None or self.removed:
            return
        if ((<Message>msg).body if type(msg) is Message else msg.body) is None:
            # Its bytes are only on disk: read them back before the record goes, since the message
            # may go on (an alternate exchange, a reroute) with them.
            try:
                self.store.read_back(self, msg, rid)
            except (KeyError, JournalError):
                pass
        journal = self.journal
        txn = (<StoreCore>self.store).txn
        xid = None if txn is None else txn.joined(self)         # broker/transactions.py
        try:
            if type(journal) is Journal:
                (<Journal>journal).append_dequeue(rid, xid)
            else:
                journal.append_dequeue(rid, xid)
        except KeyError:
            return
        except JournalError as e:
            self.store.journal_error(self, e)
            return
        (<StoreCore>self.store).lazy_flush(self)


cdef class StoreCore:
    """The per-message half of broker/store.py's ``Store``."""

    def __cinit__(self, *args, **kwargs):
        self.journals = {}
        self._next_rid = 1
        self._dirty = []
        self._lazy = set()
        self.closed = False

    def new_rid(self):
        rid = self._next_rid
        self._next_rid = rid + 1
        return rid

    # -- producers ------------------------------------------------------------------------------
    cpdef object enqueue(self, object queue, object msg):
        """Queue a durable ``msg`` on ``queue``. Returns None (nothing to wait for), a Pending, or
        a rejected outcome (the journal is full: nothing was queued)."""
        cdef QueueJournalCore qj
        cdef Message m
        cdef Pending pending
        cdef uint64_t rid, seq
        cdef Py_ssize_t extra
        cdef int flags
        o = self.journals.get(queue)
        if o is None or not (<QueueJournalCore>o).durable:
            queue.enqueue(msg)
            return None
        qj = <QueueJournalCore>o
        rid = self._next_rid
        self._next_rid = rid + 1
        if type(msg) is Message:
            m = <Message>msg
            data = m.body
            extra = m.size - len(data)
            if m.ttl == 0 and 0 <= m.priority <= C_F_PRIORITY and 0 <= extra <= C_EXTRA_MAX:
                flags = C_F_DURABLE | m.priority | <int>(extra << C_EXTRA_SHIFT)
            else:
                data, flags = record_data(msg)
        else:
            data, flags = record_data(msg)
        journal = qj.journal
        xid = None if self.txn is None else self.txn.joined(qj)     # broker/transactions.py
        try:
            if type(journal) is Journal:
                seq = (<Journal>journal).append_enqueue(rid, data, xid, flags)
            else:
                seq = journal.append_enqueue(rid, data, xid, flags)
        except JournalFull as e:
            return self._full(qj, e)
        except JournalError as e:
            return self._failed(qj, e)
        qj.rids[msg] = rid
        pending = Pending.__new__(Pending)
        pending.count = 1
        pending.syncs = 1
        qj.add_wait(seq, pending)
        if not qj.flush_wanted:
            self._want(qj)
        try:
            if type(queue) is Queue:        # held: nobody sees it before its record is synced
                queued = (<Queue>queue).enqueue(msg, True)
            else:
                queued = queue.enqueue(msg, True)
        except BaseException:
            self._undo(qj, msg)
            raise
        if queued is False:        # the queue's policy dropped it: nothing to keep
            self._undo(qj, msg)
        else:
            pending.copies = (queue, msg)      # a tuple: no separate item array
        return pending

    # -- syncing --------------------------------------------------------------------------------
    cdef int _want(self, QueueJournalCore qj) except -1:
        qj.flush_wanted = True
        self._dirty.append(qj)
        if self._flush_handle is None:
            self._flush_handle = self.loop.call_soon(self._flush)
        return 0

    def _want_flush(self, QueueJournalCore qj):
        self._want(qj)

    cpdef lazy_flush(self, QueueJournalCore qj):
        """Sync ``qj`` soon (dequeues, updates: nobody waits for them)."""
        if qj.flush_wanted:
            return
        self._lazy.add(qj)
        if self._lazy_handle is None:
            self._lazy_handle = self.loop.call_later(LAZY_FLUSH_DELAY, self._flush_lazy)

    def _flush(self):
        """End of a loop turn: one sync request per journal appended to."""
        cdef QueueJournalCore qj
        self._flush_handle = None
        dirty = self._dirty
        self._dirty = []
        for o in dirty:
            qj = <QueueJournalCore>o
            qj.flush_wanted = False
            self._lazy.discard(qj)
            if qj.removed:
                self._synced(qj, 0, None)
                continue
            try:
                qj.journal.flush_async(qj.on_synced)
            except JournalError as e:
                self._synced(qj, 0, e)

    def _synced(self, QueueJournalCore qj, seq, err):
        """On the loop: journal ``qj`` is synced up to ``seq`` (or failed with ``err``): the
        producers it covers are released, their held copies shown, in order."""
        cdef uint64_t upto
        cdef Pending pending
        cdef list done
        if err is not None:
            self.journal_failed(qj, err)
            return
        upto = _ALL if qj.removed or seq >= _ALL else <uint64_t>seq
        done = qj.take_synced(upto)
        if done is None:
            return
        if qj.failing and not qj.removed:
            qj.failing = False
            self.log.log(25, "Queue %r: journal works again", qj.queue.name)
        for o in done:
            if type(o) is Pending:
                pending = <Pending>o
                pending.syncs -= 1
                if pending.syncs == 0 and pending.copies is not None:
                    _show(pending)
                pending.release(None)
            else:                           # broker/transactions.py's steps
                o.syncs -= 1
                o.release()


cdef int _show(Pending pending) except -1:
    """Every record of the message is synced: its held copies become visible."""
    cdef Py_ssize_t i
    copies = pending.copies             # (queue, msg), or a list of such pairs run together
    pending.copies = None
    for i in range(0, len(copies), 2):
        queue = copies[i]
        if type(queue) is Queue:
            if not (<Queue>queue).deleted:
                (<Queue>queue).unhold(copies[i + 1])
        elif not queue.deleted:
            queue.unhold(copies[i + 1])
    return 0
