# cython: language_level=3
"""A message as the broker holds it: its encoded bytes plus the few fields routing needs.

The same interface as broker/message.py's ``Message`` (attributes body, durable, priority, ttl,
expires, to, subject, size, delivery_count, acquired_before, seq; copy(), application_properties(),
encoded(), expired(now), annotate(annotations)), as a cdef class: construction and copies cost a few C assignments, and the
queue reads the fields without Python attribute lookups.

One difference in what is kept: only ``body`` (the message from the bare message on) is held, with
the offset of the application-properties inside it; the scanned ``MessageInfo`` and the received
bytes (header and delivery-annotations included) are let go, so a message with a header section does
not cost its size twice.
"""
cimport cython
from libc.stdint cimport int64_t
from posix.time cimport CLOCK_MONOTONIC, clock_gettime, timespec

from cpython.bytes cimport PyBytes_FromStringAndSize

from cypid.pyx.codec cimport MessageInfo, decode_at, encode_header, scan_message
from cypid.pyx.sections cimport scan_buffer

# First-delivery header sections without ttl, by (durable, priority): built once.
cdef list _FIRST_HEADERS = [None] * 512


cdef inline double _mono_s() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return <double>ts.tv_sec + <double>ts.tv_nsec * 1e-9


cdef Message message_from(const char* data, Py_ssize_t n):
    """``Message(data[:n])`` made in place: the bytes kept (from the bare message on) are the one
    copy made of the received ones."""
    cdef MessageInfo info = MessageInfo.__new__(MessageInfo)
    cdef Message m = Message.__new__(Message)
    scan_buffer(info, data, n)
    m._take(info, PyBytes_FromStringAndSize(data + info.bare_offset, n - info.bare_offset))
    return m


cdef bytes encoded_header(Message m):
    """The header section a consumer's copy of ``m`` starts with (``encoded()`` is it + ``m.body``),
    or None when every header field is at its default; Cython senders write the two parts without
    joining them."""
    cdef int64_t ttl = m.ttl
    cdef int key
    cdef bytes header
    if ttl and m.expires:
        ttl = max(1, <int64_t>((m.expires - _mono_s()) * 1000))
    if not ttl and not m.delivery_count:
        if m.acquired_before:
            if not m.durable and m.priority == 4:
                return None       # every header field at its default: no header section
        elif 0 <= m.priority < 256:
            # A first delivery says first-acquirer=true (its default is false), as qpidd does.
            key = m.durable * 256 + m.priority
            header = <bytes>_FIRST_HEADERS[key]
            if header is None:
                header = _FIRST_HEADERS[key] = encode_header(m.durable, m.priority, 0, True, 0)
            return header
    return encode_header(m.durable, m.priority, ttl, not m.acquired_before, m.delivery_count)


@cython.freelist(256)
cdef class Message:
    def __init__(self, data):
        cdef MessageInfo info = scan_message(data)
        cdef Py_ssize_t off = info.bare_offset
        data = info.data                    # bytes, whatever bytes-like came in
        self._take(info, data if off == 0 else data[off:])

    cdef int _take(self, MessageInfo info, bytes body) except -1:
        """The fields of a scanned message; ``body``: its bytes from the bare message on."""
        cdef Py_ssize_t off = info.bare_offset
        self.body = body
        self._ap_offset = info._ap_value - off if info._ap_value >= 0 else -1
        self.durable = info.durable
        self.priority = info.priority
        self.ttl = info.ttl
        # Absolute expiry on the monotonic clock (time.monotonic's); 0 means never.
        self.expires = _mono_s() + info.ttl / 1000.0 if info.ttl else 0.0
        self.to = info.to
        self.subject = info.subject
        self.user_id = info.user_id
        self.size = info.size
        self.delivery_count = info.delivery_count
        self.acquired_before = (not info.first_acquirer) if info.delivery_count else False
        self.seq = 0
        return 0

    def copy(self):
        """The same message for another queue: routed copies share the bytes, not the delivery state."""
        cdef Message other = Message.__new__(Message)
        other.body = self.body
        other._ap_offset = self._ap_offset
        other.durable = self.durable
        other.priority = self.priority
        other.ttl = self.ttl
        other.expires = self.expires
        other.to = self.to
        other.subject = self.subject
        other.user_id = self.user_id
        other.size = self.size
        other.delivery_count = self.delivery_count
        other.acquired_before = self.acquired_before
        other.seq = self.seq
        return other

    def application_properties(self):
        """The application-properties map (decoded now), or {}."""
        if self._ap_offset < 0:
            return {}
        value = decode_at(self.body, self._ap_offset)[0]
        return {} if value is None else value

    def encoded(self):
        """The bytes to send to a consumer: a fresh header section, then the kept bytes."""
        cdef bytes header = encoded_header(self)
        return self.body if header is None else header + self.body

    def expired(self, now):
        return self.expires != 0.0 and now >= self.expires

    def annotate(self, annotations):
        """Merge ``annotations`` (a dict; str keys become symbols) over the message-annotations
        the message carries (the section is added if it has none), e.g. an exchange's
        ``{"qpid.msg_sequence": n}``. Changes ``body`` and ``size``; copies made before keep the
        old bytes."""
        cdef MessageInfo info = scan_message(self.body)
        cdef bytes body = info.rebuild(b"", annotations)
        cdef Py_ssize_t delta = len(body) - len(self.body)
        if self._ap_offset >= 0:
            self._ap_offset += delta     # application-properties follow message-annotations
        self.size += delta
        self.body = body

    def __repr__(self):
        return "<Message seq=%d size=%d to=%r subject=%r>" % (self.seq, self.size, self.to, self.subject)
