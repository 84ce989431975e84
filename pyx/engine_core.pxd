# cython: language_level=3
"""cypid.pyx.engine_core: the engine's lower layer -- the handler interface, the connection fields that
sessions and links write to (ConnectionCore, the base of engine.Engine), the engine's output buffer and
the performative field readers (transfers are read by frames.read_transfer).  See docs/ENGINE.md.
"""
cimport cython
from libc.stdint cimport int64_t, uint32_t, uint64_t

from cypid.pyx.encoder cimport WriteBuffer


cdef enum:
    # The endpoint states (docs/ENGINE.md, "States"); Python code reads them as engine.ConnectionState,
    # SessionState and LinkState.  Connection states (Engine.state, made from its phase and flags).
    C_HEADER = 0         # a protocol header is expected
    C_SASL = 1           # SASL frames
    C_OPENING = 2        # AMQP frames: the opens are not both exchanged yet
    C_OPENED = 3
    C_CLOSE_SENT = 4     # our close is out, the peer's not in
    C_CLOSED = 5         # finished: nothing more is read or written
    # Session states.
    S_UNMAPPED = 0       # made here, begin not sent yet (never seen outside)
    S_BEGIN_SENT = 1     # our begin is out, the peer's not in
    S_MAPPED = 2         # both begins exchanged
    S_END_SENT = 3       # our end is out; the peer's frames are dropped until its end
    S_ENDED = 4
    # Link states.
    L_ATTACH_SENT = 0    # our attach is out
    L_ATTACH_RCVD = 1    # the peer's attach is in; the handler answers (accept / refuse)
    L_ATTACHED = 2
    L_DETACH_SENT = 3    # our detach is out; the peer's transfers and flows are dropped
    L_DETACHED = 4
    MAX_TAG = 32         # delivery-tag bytes the spec allows
    MIN_MAX_FRAME = 512
    P_HEADER = 0         # connection phase: a protocol header is expected
    P_SASL = 1
    P_AMQP = 2


cdef inline object _field(list fields, Py_ssize_t i):
    return fields[i] if i < len(fields) else None


cdef object _uint_field(list fields, Py_ssize_t i, object default, uint64_t limit, str what)
cdef bint _bool_field(list fields, Py_ssize_t i, str what) except -1
cdef Py_ssize_t _frames_per_message(Py_ssize_t size, uint64_t max_frame_size) noexcept
cdef int64_t _take_number(list free, uint32_t* next_number, uint64_t limit) except -2


cdef class Handler:
    """What the engine calls (docs/ENGINE.md, "The handler interface"); every method has a default."""
    cpdef object on_sasl_init(self, object mechanism, object response, object hostname)
    cpdef object on_sasl_response(self, object response)
    cpdef object on_sasl_mechanisms(self, list offered)
    cpdef object on_sasl_challenge(self, object challenge)
    cpdef object on_open(self)
    cpdef object on_close(self, object error, bint by_peer)
    cpdef object on_begin(self, object session)
    cpdef object on_end(self, object session, object error)
    cpdef object on_attach(self, object link)
    cpdef object on_flow(self, object link)
    cpdef object on_session_flow(self, object session)
    cpdef object on_message(self, object link, object delivery, object data)
    cpdef object on_messages(self, object link)
    cpdef object on_outcome(self, object link, object context, int outcome, object state)
    cpdef object on_settled(self, object link, Py_ssize_t count, int outcome, object state)
    cpdef object on_detach(self, object link, object error)
    cpdef object on_writable(self)
    cpdef object on_wake(self)
    # The per-delivery calls as the engine makes them: C calls a Cython handler overrides to skip the
    # Python method lookup (the defaults call on_message / on_outcome).
    cdef int deliver_message(self, object link, object delivery, const char* data, Py_ssize_t n) except -1
    cdef int deliver_outcome(self, object link, object context, int outcome, object state) except -1


@cython.final
cdef class OutputBuffer(WriteBuffer):
    """The engine's output: a WriteBuffer whose storage is a bytes object, handed over whole (cut to
    length) by take() instead of copied."""
    cdef object _obj                          # the bytes object buf points into
    cdef bytes _spare                         # the last output handed over, reused once it is free
    cdef Py_ssize_t _spare_cap                # its allocated length
    cdef Py_ssize_t _next_cap                 # storage to make for the next output without a spare
    cdef int _new(self, Py_ssize_t capacity) except -1
    cdef bytes take(self)


cdef class ConnectionCore:
    """The connection fields sessions and links use (engine.Engine adds the rest)."""
    cdef public Handler handler
    cdef OutputBuffer _out                    # every frame we write, until take_output()
    cdef public Py_ssize_t output_limit       # bound on encoded-but-unwritten bytes
    cdef bint _out_full                       # the bound was reached: on_writable() once it empties
    cdef readonly uint32_t handle_max
    cdef readonly uint32_t incoming_window    # transfers a session of ours accepts between flows
    cdef readonly uint64_t max_message_size   # 0: no limit
    cdef readonly uint32_t remote_max_frame_size
    cdef dict _sessions                       # local channel -> Session
    cdef dict _remote_sessions                # remote channel -> Session
    cdef list _free_channels
    cdef list _dirty                          # sessions with dispositions / window flows to write
    cdef list _touched                        # batch links that got deliveries in this burst
    cdef public Py_ssize_t held               # incoming deliveries held (not settled yet)
    cdef bint _in_feed                        # inside feed(): the shell writes when it returns
    cdef bint _woken                          # on_wake() called since the last take_output()
    cdef int _wake(self) except -1
    cdef object _last_session                 # the Session of the last transfer (runs of transfers)
    cdef int _last_channel
    cdef int _write_frame(self, int channel, int code, list fields, int frame_type=*) except -1
    cdef int _release_channel(self, int channel, int remote_channel, object session) except -1
