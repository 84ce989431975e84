# cython: language_level=3
"""cypid.pyx.store_recovery: a durable queue's recovered messages back into its queue, in C.

broker/store.py recovers a queue by handing the journal's live entries (``Journal.take_recovered``,
in queue order) to ``fill_queue``. A record whose flags hold everything the queue needs (the common
durable message: no TTL, priority 0..15) becomes a message *without reading its data*: its body
stays in the journal, as a flowed-to-disk message's does, and is read back when a consumer gets
it (``Store.encoded``, which calls ``complete`` to learn the rest of its fields from the bytes).
Only records with a header section or an expiry (``slow``: the store reads and parses them) and
transient records cost a read at start. So a queue of a million messages is ready after one pass
over small C structs, with no message body in memory.

The user flags of an enqueue record are broker/store.py's (docs/JOURNAL-FORMAT.md, "The broker's
record data"): ``0x80`` transient, ``0x40`` header section kept, ``0x20`` durable, ``0x10`` expiry,
``0x0f`` priority, bits 8..14 the bytes the message had on arrival beyond its recorded data.
"""
from cpython.dict cimport PyDict_SetItem
from cpython.list cimport PyList_GET_ITEM, PyList_GET_SIZE
from libc.stdint cimport int64_t, uint64_t

from cypid.pyx.codec cimport MessageInfo, scan_message
from cypid.pyx.journal_base cimport _Entry
from cypid.pyx.message cimport Message
from cypid.pyx.queue cimport Queue

cdef enum:
    F_TRANSIENT = 0x80
    F_HEADER = 0x40
    F_DURABLE = 0x20
    F_EXPIRY = 0x10
    F_PRIORITY = 0x0F
    EXTRA_SHIFT = 8
    EXTRA_MASK = 0x7F
    AP_UNKNOWN = -2         # Message._ap_offset of a message whose bytes were never scanned


def fill_queue(Queue queue, list entries, Py_ssize_t start, Py_ssize_t stop, dict rids, slow, drop,
               bint read_all=False):
    """Enqueue the messages of ``entries[start:stop]`` (journal _Entry objects, in queue order) on
    ``queue`` (its ``loading`` hook is not called meanwhile; each entry is let go of after), noting
    each one's rid in ``rids`` (message -> rid). ``slow(entry)`` makes the message of a record that
    needs its data read (header section, expiry, transient), or returns None (the record is gone:
    transient, or expired while the broker was down); with ``read_all`` (an LVQ or a message-group
    queue, which key messages by their application-properties) every record goes that way.
    ``drop(rid)`` removes the record of a message the queue's policy dropped. Every message is left
    with its body on disk. Returns (queued, refused, last refusal or None)."""
    cdef Py_ssize_t i, n = min(stop, PyList_GET_SIZE(entries))
    cdef _Entry e
    cdef Message m
    cdef int uf
    cdef int64_t queued = 0, refused = 0
    why = None
    loading = queue.loading
    queue.loading = None
    try:
        for i in range(start, n):
            e = <_Entry>PyList_GET_ITEM(entries, i)
            entries[i] = None
            uf = e.uflags
            if read_all or uf & (F_TRANSIENT | F_HEADER | F_EXPIRY):
                msg = slow(e)
                if msg is None:
                    continue
                m = <Message>msg
            else:
                m = Message.__new__(Message)
                m.durable = (uf & F_DURABLE) != 0
                m.priority = uf & F_PRIORITY
                m.size = <Py_ssize_t>e.dlen + ((uf >> EXTRA_SHIFT) & EXTRA_MASK)
                m._ap_offset = AP_UNKNOWN
                if e.dcount:
                    m.delivery_count = e.dcount
                    m.acquired_before = True
            PyDict_SetItem(rids, m, e.rid)
            try:
                ok = queue.enqueue(m, False)
            except Exception as ex:     # its limit is lower than when the message came
                del rids[m]
                refused += 1
                why = ex
                continue
            if ok is False:             # a ring queue dropped it
                del rids[m]
                drop(e.rid)
                continue
            m.body = None               # on disk until a consumer gets it
            queued += 1
    finally:
        queue.loading = loading
    return queued, refused, why


def max_rid(list entries):
    """The highest rid among ``entries``."""
    cdef uint64_t top = 0
    cdef Py_ssize_t i
    cdef _Entry e
    for i in range(PyList_GET_SIZE(entries)):
        e = <_Entry>PyList_GET_ITEM(entries, i)
        if e.rid > top:
            top = e.rid
    return top


def complete(Message m, bytes body):
    """``m``'s body read back from the journal: it is held again, and a message made by
    ``fill_queue`` without reading it learns the fields its bytes carry (to, subject,
    application-properties)."""
    cdef MessageInfo info
    m.body = body
    if m._ap_offset == AP_UNKNOWN:
        info = scan_message(body)
        m.to = info.to
        m.subject = info.subject
        m._ap_offset = info._ap_value - info.bare_offset if info._ap_value >= 0 else -1
    return m


def lazy(Message m):
    """Whether ``m`` was made without reading its bytes (and they were never read since)."""
    return m._ap_offset == AP_UNKNOWN
