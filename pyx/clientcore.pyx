# cython: language_level=3
"""The client's per-message path in C: batches of outgoing transfers, and incoming transfers
consumed a read burst at a time (see clientcore.pxd for the design)."""
cimport cython
from cpython.bytes cimport (PyBytes_AS_STRING, PyBytes_CheckExact, PyBytes_FromStringAndSize,
                            PyBytes_GET_SIZE)
from cpython.list cimport PyList_GET_ITEM, PyList_GET_SIZE
from libc.stdint cimport int64_t, uint8_t, uint32_t, uint64_t
from libc.string cimport memcpy

from cypid.pyx.codec cimport (FrameReader, FrameView, WriteBuffer, encode_transfer_frames, skip_value,
                              wb_write)
from cypid.pyx.frb cimport FRBuffer, frb_init, frb_take, load_u16, load_u32, load_u64, store_u32, store_u64

from cypid.pyx.codec import DecodeError

cdef object _DecodeError = DecodeError

cdef enum:
    TRANSFER = 0x14
    FRAME_AMQP = 0


# -- sessions ----------------------------------------------------------------------------------

@cython.final
cdef class SessionCore:
    """Transfer-id and delivery-id counters of one session, and its accepts to send."""

    def __cinit__(self, int channel=0):
        self.channel = channel
        self.next_outgoing_id = 0
        self.next_delivery_id = 0
        self.remote_incoming_window = 0
        self.next_incoming_id = 0
        self.pending_accepts = 0
        self._ranges = []
        self._run_open = False

    cdef int add_accept(self, uint32_t delivery_id) except -1:
        if self._run_open:
            if delivery_id == <uint32_t>(self._run_last + 1):
                self._run_last = delivery_id
                self.pending_accepts += 1
                return 0
            self._ranges.append((self._run_first, self._run_last))
        self._run_open = True
        self._run_first = self._run_last = delivery_id
        self.pending_accepts += 1
        return 0

    def accept(self, uint32_t delivery_id):
        """Add one delivery-id to the accepts to send (for manually accepted messages)."""
        self.add_accept(delivery_id)

    cpdef list take_accepts(self):
        """The runs of delivery-ids to accept, as [(first, last), ...]; the list starts afresh."""
        cdef list out = self._ranges
        if self._run_open:
            out.append((self._run_first, self._run_last))
            self._run_open = False
        self._ranges = []
        self.pending_accepts = 0
        return out


# -- sending -------------------------------------------------------------------------------------

@cython.final
cdef class SenderCore:
    """A sending link's counters; encodes batches of deliveries."""

    def __cinit__(self, uint32_t handle=0, bint settled=False):
        self.handle = handle
        self.settled = settled
        self.delivery_count = 0
        self.credit = 0
        self.sent = 0

    cpdef bytes encode(self, SessionCore session, object message, Py_ssize_t count,
                       uint64_t max_frame_size, Py_ssize_t seq_offset=-1, uint64_t seq=0):
        """All frames of ``count`` deliveries of ``message`` (an encoded message, bytes-like), with
        consecutive delivery-ids from the session's and each delivery-id as its 4-byte tag.  With
        ``seq_offset >= 0`` the 8 bytes at that offset of each message are replaced by a big-endian
        counter starting at ``seq``.  The session's counters (delivery-id, transfer-id, remote incoming
        window) and the link's (delivery-count, credit, sent) advance by what was encoded."""
        cdef Py_ssize_t i, n, off, total = 0, frames = 0, L
        cdef uint32_t did = session.next_delivery_id
        cdef char tagbuf[4]
        cdef list parts
        cdef bytes f, msg, src, result
        cdef const char* p
        cdef char* w
        if count <= 0:
            return b""
        src = message if PyBytes_CheckExact(message) else bytes(message)
        msg = src
        L = PyBytes_GET_SIZE(src)
        if seq_offset >= 0 and seq_offset + 8 > L:
            raise ValueError("sequence offset %d does not fit a message of %d bytes" % (seq_offset, L))
        parts = [None] * count
        for i in range(count):
            store_u32(tagbuf, did)
            if seq_offset >= 0:
                # A fresh copy nobody else holds yet: stamping it in place is safe.
                msg = PyBytes_FromStringAndSize(PyBytes_AS_STRING(src), L)
                store_u64(PyBytes_AS_STRING(msg) + seq_offset, seq)
                seq += 1
            f = encode_transfer_frames(session.channel, self.handle, did,
                                       PyBytes_FromStringAndSize(tagbuf, 4), self.settled, msg,
                                       max_frame_size)
            parts[i] = f
            total += PyBytes_GET_SIZE(f)
            did += 1
        if count == 1:
            result = parts[0]
        else:
            result = PyBytes_FromStringAndSize(NULL, total)
            w = PyBytes_AS_STRING(result)
            for i in range(count):
                f = <bytes>PyList_GET_ITEM(parts, i)
                n = PyBytes_GET_SIZE(f)
                memcpy(w, PyBytes_AS_STRING(f), <size_t>n)
                w += n
        # Count the frames: every frame but a delivery's last is a full max-frame-size one.
        p = PyBytes_AS_STRING(result)
        off = 0
        while off < total:
            off += load_u32(p + off)
            frames += 1
        session.next_delivery_id = did
        session.next_outgoing_id = <uint32_t>(session.next_outgoing_id + <uint32_t>frames)
        session.remote_incoming_window -= frames
        self.delivery_count = <uint32_t>(self.delivery_count + <uint32_t>count)
        self.credit -= count
        self.sent += <uint64_t>count
        return result


def frames_per_message(Py_ssize_t size, uint64_t max_frame_size):
    """An upper bound on the transfer frames one delivery of ``size`` message bytes takes."""
    # Performative sizes: first frame at most 3 + 9 + 5 + 5 + 2 + 4 + 3 bytes, continuations less.
    cdef int64_t first = <int64_t>max_frame_size - 8 - 32
    cdef int64_t rest = <int64_t>max_frame_size - 8 - 24
    if max_frame_size == 0 or size <= first:
        return 1
    return 1 + (size - first + rest - 1) // rest


# -- receiving -----------------------------------------------------------------------------------

@cython.final
cdef class ReceiverCore:
    """A receiving link's counters and what it has received."""

    def __cinit__(self, SessionCore session, object owner=None, bint keep=True, bint auto_accept=True):
        self.session = session
        self.owner = owner
        self.credit = 0
        self.delivery_count = 0
        self.keep = keep
        self.auto_accept = auto_accept
        self.messages = []
        self.delivery_ids = []
        self.received = 0
        self.bytes_received = 0
        self.touched = False
        self.check_seq = False
        self.strict_seq = True
        self.next_seq = 0
        self.seq_errors = 0
        self.seq_error = None
        self._in_partial = False
        self._partial = None

    def take_messages(self):
        """(messages, delivery_ids) received since the last call; both lists start afresh."""
        msgs, ids = self.messages, self.delivery_ids
        self.messages = []
        self.delivery_ids = []
        return msgs, ids

    @property
    def in_partial(self):
        return self._in_partial

    cdef int _deliver(self, const char* data, Py_ssize_t n, bint settled, bint has_id,
                      uint32_t delivery_id) except -1:
        cdef uint64_t got
        self.credit -= 1
        self.delivery_count = <uint32_t>(self.delivery_count + 1)
        self.received += 1
        self.bytes_received += <uint64_t>n
        if self.check_seq:
            if n < 8:
                got = 0xFFFFFFFFFFFFFFFF
            else:
                got = load_u64(data + n - 8)
            if got != self.next_seq and (self.strict_seq or got < self.next_seq):
                self.seq_errors += 1
                if self.seq_error is None:
                    self.seq_error = "Sequence error: expected n%s%d but got %d" % (
                        "==" if self.strict_seq else ">=", self.next_seq, got)
            if got != 0xFFFFFFFFFFFFFFFF:
                self.next_seq = got + 1
        if self.keep:
            self.messages.append(PyBytes_FromStringAndSize(data, n))
            if not self.auto_accept:
                self.delivery_ids.append(None if settled or not has_id else delivery_id)
        if not settled and has_id and self.auto_accept:
            self.session.add_accept(delivery_id)
        return 0


cdef inline uint8_t _byte(FRBuffer* b) except? 0xff:
    if b.len < 1:
        raise _DecodeError("truncated transfer performative")
    return <uint8_t>frb_take(b, 1)[0]


cdef int _read_uint(FRBuffer* b, uint64_t* out) except -1:
    """A transfer field of an unsigned integer type: 1 and *out set, or 0 for null."""
    cdef uint8_t c = _byte(b)
    cdef Py_ssize_t w
    if c == 0x40:
        return 0
    if c == 0x43 or c == 0x44:
        out[0] = 0
        return 1
    if c == 0x52 or c == 0x53 or c == 0x50:
        w = 1
    elif c == 0x60:
        w = 2
    elif c == 0x70:
        w = 4
    elif c == 0x80:
        w = 8
    else:
        raise _DecodeError("transfer: constructor 0x%02x where an unsigned integer was expected" % c)
    if b.len < w:
        raise _DecodeError("truncated transfer performative")
    p = frb_take(b, w)
    if w == 1:
        out[0] = <uint8_t>p[0]
    elif w == 2:
        out[0] = load_u16(p)
    elif w == 4:
        out[0] = load_u32(p)
    else:
        out[0] = load_u64(p)
    return 1


cdef int _read_bool(FRBuffer* b) except -1:
    """A transfer field of type boolean: 1 true, 0 false or null."""
    cdef uint8_t c = _byte(b)
    if c == 0x41:
        return 1
    if c == 0x42 or c == 0x40:
        return 0
    if c == 0x56:
        c = _byte(b)
        if c > 1:
            raise _DecodeError("transfer: invalid boolean byte 0x%02x" % c)
        return c
    raise _DecodeError("transfer: constructor 0x%02x where a boolean was expected" % c)


@cython.final
cdef class InboundCore:
    """Frames in; transfers for registered receivers consumed here, all else handed back."""

    def __cinit__(self, uint32_t max_frame_size=65536):
        self.reader = FrameReader(max_frame_size)
        self._receivers = {}
        self._sessions = {}
        self.touched = []
        self.frames = 0
        self._last = None
        self._last_channel = -1
        self._last_handle = 0

    @property
    def max_frame_size(self):
        return self.reader.max_frame_size

    @max_frame_size.setter
    def max_frame_size(self, uint32_t value):
        self.reader.max_frame_size = value

    @property
    def buffered(self):
        return self.reader.buffered

    def feed(self, data):
        self.reader.feed(data)

    def read_protocol_header(self):
        return self.reader.read_protocol_header()

    def add_session(self, int remote_channel, SessionCore session):
        self._sessions[remote_channel] = session

    def remove_session(self, int remote_channel):
        self._sessions.pop(remote_channel, None)
        for key in [k for k in self._receivers if (k >> 32) == remote_channel]:
            del self._receivers[key]
        self._last = None
        self._last_channel = -1

    def add_receiver(self, int remote_channel, uint32_t remote_handle, ReceiverCore receiver):
        self._receivers[(<uint64_t>remote_channel << 32) | remote_handle] = receiver

    def remove_receiver(self, int remote_channel, uint32_t remote_handle):
        self._receivers.pop((<uint64_t>remote_channel << 32) | remote_handle, None)
        self._last = None
        self._last_channel = -1

    cpdef object next_event(self):
        """Consume frames until one that Python must handle: returns (frame_type, channel, body)
        (an empty body is a heartbeat), or None when no complete frame is left.  Transfer frames
        on a registered session for a registered receiver never come back; their session's
        next-incoming-id counts them.  Raises DecodeError for a malformed frame or transfer."""
        cdef FrameView fv
        cdef const char* body
        cdef Py_ssize_t blen
        cdef SessionCore session
        while self.reader.next_frame_c(&fv):
            self.frames += 1
            body = fv.body
            blen = fv.body_len
            if (fv.frame_type == FRAME_AMQP and blen >= 3 and body[0] == 0 and <uint8_t>body[1] == 0x53
                    and <uint8_t>body[2] == TRANSFER):
                if self._transfer(fv.channel, body, blen):
                    continue
            return (fv.frame_type, fv.channel, PyBytes_FromStringAndSize(body, blen))
        return None

    cdef int _transfer(self, int channel, const char* body, Py_ssize_t blen) except -1:
        """Handle one transfer frame: 1 if done, 0 if Python must (unknown channel or handle)."""
        cdef FRBuffer b
        cdef FRBuffer lst
        cdef uint8_t c
        cdef uint64_t count, size, handle = 0, did = 0
        cdef bint has_handle, has_id, settled, more, aborted = False
        cdef ReceiverCore rc
        cdef SessionCore session
        frb_init(&b, body + 3, blen - 3)
        c = _byte(&b)
        if c == 0xc0:
            if b.len < 2:
                raise _DecodeError("truncated transfer performative")
            size = <uint8_t>b.buf[0]
            count = <uint8_t>b.buf[1]
            frb_take(&b, 2)
            size -= 1
        elif c == 0xd0:
            if b.len < 8:
                raise _DecodeError("truncated transfer performative")
            size = load_u32(b.buf)
            count = load_u32(b.buf + 4)
            frb_take(&b, 8)
            if size < 4:
                raise _DecodeError("transfer list size %d is too small" % size)
            size -= 4
        else:
            raise _DecodeError("transfer performative is not a list (constructor 0x%02x)" % c)
        if <uint64_t>b.len < size:
            raise _DecodeError("transfer list declares %d bytes, %d present" % (size, b.len))
        lst = b
        lst.len = <Py_ssize_t>size
        frb_take(&b, <Py_ssize_t>size)      # b now holds the payload
        has_handle = count > 0 and _read_uint(&lst, &handle)
        if not has_handle:
            raise _DecodeError("transfer: mandatory field handle is missing")
        if handle > 0xFFFFFFFF:
            raise _DecodeError("transfer: handle %d out of range" % handle)
        if channel == self._last_channel and <uint32_t>handle == self._last_handle:
            rc = self._last
        else:
            rc = self._receivers.get((<uint64_t>channel << 32) | handle)
            if rc is None:
                return 0
            self._last = rc
            self._last_channel = channel
            self._last_handle = <uint32_t>handle
        session = rc.session
        has_id = count > 1 and _read_uint(&lst, &did)
        if count > 2:
            skip_value(&lst, 1)           # delivery-tag
        if count > 3:
            skip_value(&lst, 1)           # message-format
        settled = count > 4 and _read_bool(&lst)
        more = count > 5 and _read_bool(&lst)
        if count > 9:
            skip_value(&lst, 1)           # rcv-settle-mode
            skip_value(&lst, 1)           # state
            skip_value(&lst, 1)           # resume
            aborted = _read_bool(&lst)
        session.next_incoming_id = <uint32_t>(session.next_incoming_id + 1)
        if not rc.touched:
            rc.touched = True
            self.touched.append(rc)
        if rc._in_partial:
            if aborted:
                rc._in_partial = False
                rc._partial.len = 0
                return 1
            if settled:
                rc._partial_settled = True
            if rc.keep or rc.check_seq:
                wb_write(rc._partial, b.buf, b.len)
            if more:
                return 1
            rc._in_partial = False
            rc._deliver(rc._partial.buf, rc._partial.len, rc._partial_settled, rc._partial_has_id,
                        rc._partial_id)
            rc._partial.len = 0
            return 1
        if aborted:
            return 1
        if more:
            rc._in_partial = True
            rc._partial_settled = settled
            rc._partial_has_id = has_id
            rc._partial_id = <uint32_t>did
            if rc._partial is None:
                rc._partial = WriteBuffer.__new__(WriteBuffer)
            rc._partial.len = 0
            if rc.keep or rc.check_seq:
                wb_write(rc._partial, b.buf, b.len)
            return 1
        rc._deliver(b.buf, b.len, settled, has_id, <uint32_t>did)
        return 1
