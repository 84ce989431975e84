# cython: language_level=3
"""cypid.pyx.engine: one AMQP 1.0 endpoint engine (connection, session and link state) for the
client and the broker.  docs/ENGINE.md is its description: the handler interface, the states, and
what the engine bounds.  Bytes in through ``Engine.feed``, calls out on a ``Handler``; calls in on
the engine's objects, bytes out through ``Engine.take_output``.  No asyncio, no queues, no store.
Three modules, each on the one before: engine_core (Handler, ConnectionCore, readers), endpoints
(Session, Link, Delivery), engine (the connection).
"""
cimport cython
from libc.stdint cimport uint32_t, uint64_t

from cypid.pyx.endpoints cimport Session
from cypid.pyx.engine_core cimport ConnectionCore, Handler
from cypid.pyx.frames cimport FrameReader


@cython.final
cdef class Engine(ConnectionCore):
    cdef readonly bint server                 # the listening side (answers headers, open, begins)
    cdef FrameReader _reader
    # Our limits, fixed at construction.
    cdef readonly uint32_t max_frame_size
    cdef readonly int channel_max
    cdef readonly double idle_timeout         # the idle-time-out we announce (s); 0: none
    cdef readonly double idle_grace           # close after idle_grace x idle_timeout without input
    # The peer's, from its open.
    cdef readonly int remote_channel_max
    cdef readonly double remote_idle_timeout
    cdef readonly object remote_container_id
    cdef readonly object remote_hostname
    cdef readonly object remote_properties
    cdef readonly object remote_offered_capabilities
    cdef readonly object remote_desired_capabilities
    # SASL.
    cdef object _sasl_mechanisms              # server: mechanisms offered (None: no SASL layer)
    cdef bint _require_sasl                   # server: refuse a plain AMQP header
    cdef bint _client_sasl                    # client: start with the SASL header
    cdef public object hostname               # client: sent in sasl-init and open
    cdef public object container_id           # ours, in our open
    cdef readonly object sasl_mechanism       # the mechanism chosen
    # Connection state.
    cdef int _phase                           # 0 header expected, 1 SASL frames, 2 AMQP frames
    cdef bint _started
    cdef bint _sasl_done
    cdef bint _amqp_header_sent
    cdef object _pending_open                 # client: open frame held until the SASL outcome
    cdef readonly bint open_sent
    cdef readonly bint open_rcvd
    cdef readonly bint close_sent
    cdef readonly bint close_rcvd
    cdef readonly bint finished               # nothing more to read or write: close the socket
    cdef readonly object error                # (condition, description, info) the connection ended with
    cdef uint32_t _next_channel
    cdef readonly double last_read
    cdef readonly double last_write
    cdef readonly uint64_t frames_in

    # The shell's per-read and per-turn calls (get_buffer, buffer_updated, take_output) as C calls.
    cdef object get_buffer_c(self)
    cdef int buffer_updated_c(self, Py_ssize_t nbytes, double now) except -1
    cdef bytes take_output_c(self, double now)
    cdef int _on_header(self, bytes header) except -1
    cdef int _on_sasl(self, int code, list fields) except -1
    cdef int _dispatch(self, int channel, const char* body, Py_ssize_t blen) except -1
    cdef int _on_open(self, list fields) except -1
    cdef int _on_close(self, list fields) except -1
    cdef int _on_begin(self, int channel, list fields) except -1
    cdef int _on_transfer(self, int channel, const char* body, Py_ssize_t blen) except -1
    cdef int _process(self, double now) except -1
    cdef int _end_of_burst(self) except -1
    cdef int _terminate(self, object error) except -1
    cdef int _fail(self, str condition, str description) except -1
    cdef int _flush_sessions(self) except -1
    cdef Session _new_session(self, int remote_channel, object incoming_window, object handle_max)
