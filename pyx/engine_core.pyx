# cython: language_level=3
"""The engine's lower layer (see engine_core.pxd): the handler interface, the connection fields that
sessions and links write to, the performative field readers (the transfer reader is
frames.read_transfer).
cypid.pyx.endpoints (sessions, links) and cypid.pyx.engine (the connection) are built on it.
"""
cimport cython
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE, _PyBytes_Resize
from cpython.mem cimport PyMem_Free
from cpython.ref cimport Py_DECREF, Py_INCREF, PyObject
from libc.string cimport memcpy
from libc.stdint cimport int64_t, uint8_t, uint32_t, uint64_t

from cypid.pyx.amqp cimport FRAME_AMQP
from cypid.pyx.encoder cimport WriteBuffer, wb_write
from cypid.pyx.frames cimport encode_frame

from cypid.pyx import amqp
from cypid.pyx.values import DecodeError

cdef object _DecodeError = DecodeError



class ProtocolViolation(Exception):
    """The peer broke the protocol: the connection closes with ``condition``."""

    def __init__(self, condition, description):
        super().__init__("%s: %s" % (condition, description))
        self.condition = condition
        self.description = description


class EngineError(ValueError):
    """A call the engine's state does not allow (sending on a link that is not attached...)."""


# -- performative fields -------------------------------------------------------------------------

cdef object _uint_field(list fields, Py_ssize_t i, object default, uint64_t limit, str what):
    """An unsigned integer field (any integer encoding within limit), or default when absent."""
    v = fields[i] if i < len(fields) else None
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, int) or v < 0 or v > limit:
        raise ProtocolViolation(amqp.DECODE_ERROR, "%s must be an unsigned integer up to %d, not %r"
                                % (what, limit, v))
    return v


cdef bint _bool_field(list fields, Py_ssize_t i, str what) except -1:
    v = fields[i] if i < len(fields) else None
    if v is None:
        return False
    if not isinstance(v, bool):
        raise ProtocolViolation(amqp.DECODE_ERROR, "%s must be a boolean, not %r" % (what, v))
    return v


def frames_per_message(Py_ssize_t size, uint64_t max_frame_size):
    """An upper bound on the transfer frames one delivery of ``size`` bytes takes (4-byte tags)."""
    return _frames_per_message(size, max_frame_size)


cdef Py_ssize_t _frames_per_message(Py_ssize_t size, uint64_t max_frame_size) noexcept:
    # Performative sizes with a tag of up to 32 bytes: first frame at most 60, continuations 24.
    cdef int64_t first = <int64_t>max_frame_size - 8 - 60
    cdef int64_t rest = <int64_t>max_frame_size - 8 - 24
    if max_frame_size == 0 or size <= first:
        return 1
    return 1 + (size - first + rest - 1) // rest


cdef int64_t _take_number(list free, uint32_t* next_number, uint64_t limit) except -2:
    """A channel or handle number: a released one, else the next never used one up to limit; -1 if
    none is left.  O(1): numbers are never searched for."""
    cdef uint32_t n
    if free:
        return free.pop()
    if next_number[0] <= limit:
        n = next_number[0]
        next_number[0] = n + 1
        return n
    return -1


# =================================================================================================
# The handler
# =================================================================================================

cdef class Handler:
    """The engine's calls out (docs/ENGINE.md): subclass and override what you need."""

    cpdef object on_sasl_init(self, object mechanism, object response, object hostname):
        return 0 if mechanism == "ANONYMOUS" else 1

    cpdef object on_sasl_response(self, object response):
        return 1

    cpdef object on_sasl_mechanisms(self, list offered):
        return ("ANONYMOUS", None) if "ANONYMOUS" in offered else None

    cpdef object on_sasl_challenge(self, object challenge):
        return b""

    cpdef object on_open(self):
        pass

    cpdef object on_close(self, object error, bint by_peer):
        pass

    cpdef object on_begin(self, object session):
        pass

    cpdef object on_end(self, object session, object error):
        pass

    cpdef object on_attach(self, object link):
        if link.state == L_ATTACH_RCVD:
            link.refuse(amqp.NOT_IMPLEMENTED, "this endpoint takes no links")

    cpdef object on_flow(self, object link):
        pass

    cpdef object on_session_flow(self, object session):
        pass

    cpdef object on_message(self, object link, object delivery, object data):
        pass

    cpdef object on_messages(self, object link):
        pass

    cpdef object on_outcome(self, object link, object context, int outcome, object state):
        pass

    cpdef object on_settled(self, object link, Py_ssize_t count, int outcome, object state):
        pass

    cpdef object on_detach(self, object link, object error):
        pass

    cpdef object on_writable(self):
        pass

    cpdef object on_wake(self):
        pass

    cdef int deliver_message(self, object link, object delivery, const char* data, Py_ssize_t n) except -1:
        """The message is the ``n`` bytes at ``data`` (valid during the call only)."""
        self.on_message(link, delivery, PyBytes_FromStringAndSize(data, n))
        return 0

    cdef int deliver_outcome(self, object link, object context, int outcome, object state) except -1:
        self.on_outcome(link, context, outcome, state)
        return 0


# =================================================================================================
# The output buffer
# =================================================================================================

cdef extern from "Python.h":
    ctypedef struct PyBytesObject:
        Py_hash_t ob_shash
    Py_ssize_t Py_REFCNT(object o)
    void Py_SET_SIZE(object o, Py_ssize_t size)


cdef inline void _set_bytes_size(bytes b, Py_ssize_t n) noexcept:
    """Change the length a bytes object of ours says it has (n at most its allocated length): its
    terminating NUL moves, its cached hash is forgotten."""
    Py_SET_SIZE(b, n)
    PyBytes_AS_STRING(b)[n] = 0
    (<PyBytesObject*>b).ob_shash = -1


cdef enum:
    OUT_INITIAL = 1024          # an idle connection's output storage
    OUT_HANDOVER = 16384        # outputs at least this long are handed over, not copied
    OUT_KEEP = 256 * 1024       # the most storage a short output leaves in place
    OUT_SPARE_MAX = 4 << 20      # the largest storage kept for reuse after a handover
    OUT_NEXT_MAX = 8 << 20      # the most storage made at once for the next output after a handover


@cython.final
cdef class OutputBuffer(WriteBuffer):
    # _obj is the bytes object buf points into (None after a handover, until the next write). A long
    # output is handed over as that object itself, cut to length in its header: its storage stays
    # allocated, and when the shell's transport has written it and let it go (only the _spare
    # reference left) the next output is written into it again -- a steady stream of outputs makes
    # no allocation and touches no fresh page. A spare still held by the transport is dropped and a
    # new storage made (the last output's size and a quarter); one over OUT_KEEP is not kept, so an
    # idle connection holds at most that much.
    def __cinit__(self):
        PyMem_Free(self.buf)      # WriteBuffer's own storage: ours is a bytes object
        self.buf = NULL
        self._new(OUT_INITIAL)

    def __dealloc__(self):
        self.buf = NULL           # it points into _obj: WriteBuffer's __dealloc__ must not free it

    cdef int _new(self, Py_ssize_t capacity) except -1:
        obj = PyBytes_FromStringAndSize(NULL, capacity)
        self._obj = obj
        self.buf = PyBytes_AS_STRING(obj)
        self.size = capacity
        self.len = 0
        return 0

    cdef int _grow(self, Py_ssize_t extra) except -1:
        cdef Py_ssize_t need = self.len + extra
        cdef Py_ssize_t new_size
        if self.buf == NULL:            # the first write since a handover
            spare = self._spare
            self._spare = None
            if spare is not None and Py_REFCNT(spare) == 1 and self._spare_cap >= need:
                _set_bytes_size(spare, self._spare_cap)     # only we hold it: its whole storage again
                self._obj = spare
                self.buf = PyBytes_AS_STRING(spare)
                self.size = self._spare_cap
                self.len = 0
                return 0
            return self._new(need if need > self._next_cap else self._next_cap)
        new_size = self.size * 2
        if new_size < need:
            new_size = need
        obj = PyBytes_FromStringAndSize(NULL, new_size)
        memcpy(PyBytes_AS_STRING(obj), self.buf, <size_t>self.len)
        self._obj = obj
        self.buf = PyBytes_AS_STRING(obj)
        self.size = new_size
        return 0

    cdef bytes take(self):
        """What was written, as bytes; the buffer starts afresh. A long output is the storage itself
        (cut to length: no copy), a short one a copy (the storage is kept)."""
        cdef Py_ssize_t n = self.len, nxt, cap = self.size
        cdef PyObject* raw
        cdef bytes data
        if n == 0:
            return b""
        if n < OUT_HANDOVER:
            data = PyBytes_FromStringAndSize(self.buf, n)
            self.len = 0
            if self.size > OUT_KEEP:
                self._new(OUT_INITIAL)      # give back what a burst needed once
            return data
        nxt = n + n // 4
        self._next_cap = nxt if nxt < OUT_NEXT_MAX else OUT_NEXT_MAX
        data = <bytes>self._obj
        self._obj = None
        self.buf = NULL
        self.size = 0
        self.len = 0
        if cap <= OUT_SPARE_MAX:
            _set_bytes_size(data, n)        # cut in its header only: the storage is reused (_grow)
            self._spare = data
            self._spare_cap = cap
            return data
        self._spare = None
        raw = <PyObject*>data
        Py_INCREF(data)                     # raw's reference
        data = None                         # raw holds the only one
        _PyBytes_Resize(&raw, n)            # in place, or a moved copy (on failure raw is gone: raises)
        data = <bytes>raw
        Py_DECREF(data)                     # raw's reference, now data's
        return data


# =================================================================================================
# The connection's fields that sessions and links use
# =================================================================================================

cdef class ConnectionCore:
    """Base of Engine: what its sessions and links reach (engine_core.pxd lists the fields)."""

    cdef int _write_frame(self, int channel, int code, list fields, int frame_type=FRAME_AMQP) except -1:
        cdef bytes f = encode_frame(channel, code, fields, b"", frame_type)
        wb_write(self._out, PyBytes_AS_STRING(f), PyBytes_GET_SIZE(f))
        return 0

    cdef int _wake(self) except -1:
        """Something was queued for output outside feed() (a hold released from a timer or another
        connection's work): tell the shell once, so it calls take_output() this loop turn."""
        if not self._in_feed and not self._woken:
            self._woken = True
            self.handler.on_wake()
        return 0

    cdef int _release_channel(self, int channel, int remote_channel, object session) except -1:
        if self._sessions.get(channel) is session:
            del self._sessions[channel]
            self._free_channels.append(channel)
        if remote_channel >= 0 and self._remote_sessions.get(remote_channel) is session:
            del self._remote_sessions[remote_channel]
        if self._last_session is session:
            self._last_session = None
            self._last_channel = -1
        return 0
