# cython: language_level=3
"""cypid.pyx.engine: one AMQP 1.0 endpoint engine (connection, session and link state) for the
client and the broker.  docs/ENGINE.md is its description: the handler interface, the states, and
what the engine bounds.  Bytes in through ``Engine.feed``, calls out on a ``Handler``; calls in on
the engine's objects, bytes out through ``Engine.take_output``.  No asyncio, no queues, no store.
"""
cimport cython
from libc.stdint cimport int64_t, uint32_t, uint64_t

from cypid.pyx.encoder cimport WriteBuffer
from cypid.pyx.frames cimport FrameReader


cdef enum:
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


@cython.final
cdef class Engine:
    cdef readonly bint server                 # the listening side (answers headers, open, begins)
    cdef public Handler handler
    cdef FrameReader _reader
    cdef WriteBuffer _out                     # every frame we write, until take_output()
    cdef public Py_ssize_t output_limit       # bound on encoded-but-unwritten bytes
    cdef bint _out_full                       # the bound was reached: on_writable() once it empties
    # Our limits, fixed at construction.
    cdef readonly uint32_t max_frame_size
    cdef readonly int channel_max
    cdef readonly uint32_t handle_max
    cdef readonly uint32_t incoming_window    # transfers a session of ours accepts between flows
    cdef readonly uint64_t max_message_size   # 0: no limit
    cdef readonly double idle_timeout         # the idle-time-out we announce (s); 0: none
    # The peer's, from its open.
    cdef readonly uint32_t remote_max_frame_size
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
    cdef dict _sessions                       # local channel -> Session
    cdef dict _remote_sessions                # remote channel -> Session
    cdef list _free_channels
    cdef uint32_t _next_channel
    cdef Session _last_session                # the session of the last transfer (runs of transfers)
    cdef int _last_channel
    cdef list _dirty                          # sessions with dispositions / window flows to write
    cdef list _touched                        # batch links that got deliveries in this burst
    cdef readonly double last_read
    cdef readonly double last_write
    cdef readonly uint64_t frames_in
    cdef public Py_ssize_t held               # incoming deliveries held (not settled yet)

    cdef int _write_frame(self, int channel, int code, list fields, int frame_type=*) except -1
    cdef int _on_header(self, bytes header) except -1
    cdef int _on_sasl(self, int code, list fields) except -1
    cdef int _dispatch(self, int channel, const char* body, Py_ssize_t blen) except -1
    cdef int _on_open(self, list fields) except -1
    cdef int _on_close(self, list fields) except -1
    cdef int _on_begin(self, int channel, list fields) except -1
    cdef int _on_transfer(self, int channel, const char* body, Py_ssize_t blen) except -1
    cdef int _end_of_burst(self) except -1
    cdef int _terminate(self, object error) except -1
    cdef int _fail(self, str condition, str description) except -1
    cdef int _flush_sessions(self) except -1
    cdef int _release_channel(self, Session s) except -1
    cdef Session _new_session(self, int remote_channel, object incoming_window, object handle_max)


@cython.final
cdef class Session:
    cdef readonly Engine engine
    cdef readonly int channel                 # ours (in the frames we write)
    cdef readonly int remote_channel          # the peer's (-1 until its begin)
    cdef readonly int state
    cdef public object context                # the handler's
    cdef readonly uint32_t next_outgoing_id   # transfer-id of our next transfer frame
    cdef readonly uint32_t next_delivery_id   # delivery-id of our next delivery
    cdef readonly int64_t remote_incoming_window   # transfer frames the peer still takes
    cdef readonly uint32_t remote_outgoing_window
    cdef readonly uint32_t next_incoming_id   # transfer-id of the peer's next transfer frame
    cdef readonly uint32_t incoming_window    # what we announce
    cdef int64_t _in_room                     # transfers the peer may still send before our next flow
    cdef readonly uint32_t handle_max         # ours
    cdef readonly uint32_t remote_handle_max
    cdef dict _links                          # local handle -> Link
    cdef dict _remote_links                   # remote handle -> Link
    cdef dict _attaching                      # name -> our Link waiting for the peer's attach
    cdef list _free_handles
    cdef uint32_t _next_handle
    cdef Link _last                           # the link of the last transfer
    cdef uint32_t _last_handle
    # Settlements of incoming deliveries to write: runs of accepted ids, then the others.
    cdef list _accepts                        # closed runs [(first, last)]
    cdef Py_ssize_t _pending_accepts          # accepts queued (in _accepts and the open run)
    cdef public Py_ssize_t settle_batch       # hold accepts back until this many (0: write each turn);
                                              # flush_settles() / detach / end / close write them
    cdef bint _force
    cdef bint _run_open
    cdef uint32_t _run_first, _run_last
    cdef list _others                         # [(delivery-id, state, settled)]
    cdef list _echo_settles                   # [(first, last, state)]: settlements a peer in
                                              # rcv-settle-mode second waits for
    cdef bint _dirty
    # Outgoing unsettled deliveries: a ring by delivery-id (slot i is id _ubase + i - _uhead).
    cdef list _ulinks                         # Link, or None (settled / pre-settled)
    cdef list _uctx                           # the sender's context per delivery, or None
    cdef Py_ssize_t _uhead
    cdef uint32_t _ubase
    # A multi-frame delivery the peer's window cut: the frames still to write.
    cdef bytes _pending
    cdef Py_ssize_t _pending_off
    cdef Link _pending_link

    cdef int _write(self, int code, list fields) except -1
    cdef list _flow_fields(self)
    cdef int _queue_settle(self, uint32_t did, object state, bint settled) except -1
    cdef int _flush(self, bint force=*) except -1
    cdef int _track(self, Link link, object context, bint unsettled, uint32_t did) except -1
    cdef bint _notified                       # on_end called
    cdef int _write_frames(self, WriteBuffer frames, Py_ssize_t nframes, Link link) except -1
    cdef int _write_pending(self) except -1
    cdef int _on_frame(self, int code, list fields) except -1
    cdef int _on_attach(self, list fields) except -1
    cdef int _on_flow(self, list fields) except -1
    cdef int _on_disposition(self, list fields) except -1
    cdef int _on_detach(self, list fields) except -1
    cdef int _on_end(self, list fields) except -1
    cdef int _fail(self, str condition, str description) except -1
    cdef int _terminate(self, object error) except -1
    cdef int _release_handle(self, Link link) except -1
    cdef Link _new_link(self, object name, bint is_sender)
    cdef int _advance_ring(self) except -1


@cython.final
cdef class Link:
    cdef readonly Session session
    cdef readonly object name
    cdef readonly uint32_t handle             # ours
    cdef readonly uint32_t remote_handle
    cdef readonly bint has_remote
    cdef readonly bint is_sender              # our role
    cdef readonly int state
    cdef public object context                # the handler's
    cdef readonly int snd_settle_mode         # as agreed (what our attach announced)
    cdef readonly int rcv_settle_mode
    cdef readonly object source, target       # what our attach sent
    cdef readonly object remote_source, remote_target
    cdef readonly object remote_properties
    cdef readonly object remote_offered_capabilities
    cdef readonly object remote_desired_capabilities
    cdef readonly int remote_snd_settle_mode  # what the peer's attach asked for
    cdef readonly int remote_rcv_settle_mode
    cdef readonly uint64_t max_message_size   # ours (0: none)
    cdef readonly uint64_t remote_max_message_size
    cdef public int64_t credit                # sender: what the peer granted; receiver: what we did
    cdef public uint32_t delivery_count
    cdef readonly bint drain
    cdef readonly uint32_t available
    cdef readonly uint64_t unsettled          # sender: our deliveries the peer has not settled
    cdef readonly uint64_t sent
    # Receiving.
    cdef public bint batch                    # messages kept in C, on_messages once per burst
    cdef public bint keep                     # batch: keep each message's bytes
    cdef public bint auto_accept              # batch: accept unsettled deliveries as they complete
    cdef public list messages                 # batch + keep: bytes of complete messages
    cdef public list delivery_ids             # batch + keep, not auto_accept: id (None if settled)
    cdef public uint64_t received
    cdef public uint64_t bytes_received
    cdef bint _touched
    cdef public bint check_seq                # the last 8 bytes of each message: a big-endian counter
    cdef public bint strict_seq
    cdef public uint64_t next_seq
    cdef public uint64_t seq_errors
    cdef public object seq_error
    cdef bint _in_partial
    cdef bint _partial_settled
    cdef bint _partial_has_id
    cdef uint32_t _partial_id
    cdef object _partial_tag
    cdef uint64_t _partial_size
    cdef WriteBuffer _partial
    cdef bint _notified                       # on_detach called

    cdef int _write_attach(self) except -1
    cdef int _answer_null(self) except -1
    cdef int _write_attach_fields(self, object properties, object offered_capabilities,
                                  object desired_capabilities) except -1
    cdef int _write_detach(self, object err) except -1
    cdef int _deliver(self, const char* data, Py_ssize_t n, bint settled, bint has_id, uint32_t did,
                      object tag) except -1
    cdef int _fail(self, str condition, str description) except -1
    cdef int _terminate(self, object error) except -1
    cdef int _send_flow(self, bint echo) except -1
    cdef int _sendable(self, Py_ssize_t frames) noexcept


@cython.final
@cython.freelist(256)
cdef class Delivery:
    """An incoming delivery handed to on_message; settled when its last hold is released."""
    cdef readonly Link link
    cdef readonly uint32_t id
    cdef readonly object tag
    cdef readonly bint settled                # the sender sent it settled: nothing to do
    cdef readonly int holds
    cdef public object outcome                # None: accepted
    cdef int _stage                           # 0 in on_message, 1 waiting for holds, 2 settled
    cdef int _settle(self) except -1
