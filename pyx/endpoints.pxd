# cython: language_level=3
"""cypid.pyx.endpoints: the engine's sessions, links and incoming deliveries (see docs/ENGINE.md).
Their connection is an engine_core.ConnectionCore: the Engine of cypid.pyx.engine.
"""
cimport cython
from libc.stdint cimport int64_t, uint32_t, uint64_t

from cypid.pyx.encoder cimport WriteBuffer
from cypid.pyx.engine_core cimport ConnectionCore


@cython.final
cdef class Session:
    cdef readonly ConnectionCore engine
    cdef readonly int channel                 # ours (in the frames we write)
    cdef readonly int remote_channel          # the peer's (-1 until its begin)
    cdef readonly int state                   # S_* (engine.SessionState)
    cdef readonly bint ended_here             # our end went first (end(), or an error found here),
                                              # not as the answer to the peer's
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
    cdef readonly int state                   # L_* (engine.LinkState)
    cdef readonly bint detached_here          # our detach went first (detach(), refuse(), or an error
                                              # found here), not as the answer to the peer's
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
    cdef readonly object flow_properties      # the peer's last flow's properties (None: none)
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
    cdef object _tstate                 # encoded delivery state of the delivery coming in (per-message links)
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
    cdef int64_t send_parts(self, bytes head, bytes body, object tag, object settled,
                            object context, bytes state=*) except -2


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
    cdef readonly object state                # the transfer's delivery state, encoded (None: none given)
    cdef int _stage                           # 0 in on_message, 1 waiting for holds, 2 settled
    cdef int _settle(self) except -1
    cpdef release(self, outcome=*)            # a C call for the store's sync release
