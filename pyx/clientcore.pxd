# cython: language_level=3
"""cypid.pyx.clientcore: the per-message work of cypid.client, in C.

The client's Python layer (client/connection.py) handles every performative except transfers, and
calls in here once per batch of outgoing messages and once per read burst:

* ``SenderCore.encode(session, message, count, ...)``: the frames of ``count`` deliveries of one
  pre-encoded message, in one bytes object, through ``codec.encode_transfer_frames``; the session's
  delivery-id / transfer-id counters and the link's credit advance by what was written.
* ``InboundCore``: a ``codec.FrameReader`` plus the receiving links.  ``next_event()`` consumes
  every transfer frame for a registered receiver in C (no Python object per message unless the
  receiver keeps message bytes) and returns any other frame to Python.  Receivers that got something
  during the burst are listed in ``touched``; accepts to send are kept per session as ranges of
  delivery-ids (``SessionCore.take_accepts``), so one disposition frame settles a whole run.
"""
from libc.stdint cimport int64_t, uint32_t, uint64_t

from cypid.pyx.codec cimport FrameReader, WriteBuffer


cdef class SessionCore:
    cdef public int channel                     # our channel (what we put in frame headers)
    cdef public uint32_t next_outgoing_id       # transfer-id of the next transfer frame we send
    cdef public uint32_t next_delivery_id       # delivery-id of the next delivery we send
    cdef public int64_t remote_incoming_window  # transfer frames the peer still accepts
    cdef public uint32_t next_incoming_id       # transfer-id of the next transfer frame we receive
    cdef public Py_ssize_t pending_accepts      # deliveries waiting in the accept ranges
    cdef list _ranges                           # closed runs [(first, last), ...] of delivery-ids
    cdef bint _run_open                         # a run is being extended
    cdef uint32_t _run_first, _run_last
    cdef int add_accept(self, uint32_t delivery_id) except -1
    cpdef list take_accepts(self)


cdef class SenderCore:
    cdef public uint32_t handle                 # our handle for the link
    cdef public bint settled                    # deliveries are sent pre-settled
    cdef public uint32_t delivery_count         # the link's delivery-count (spec 2.6.7)
    cdef public int64_t credit                  # link credit left (may go negative never: callers check)
    cdef public uint64_t sent                   # deliveries written
    cpdef bytes encode(self, SessionCore session, object message, Py_ssize_t count,
                       uint64_t max_frame_size, Py_ssize_t seq_offset=*, uint64_t seq=*)


cdef class ReceiverCore:
    cdef public SessionCore session
    cdef public object owner                    # the Python Receiver
    cdef public int64_t credit                  # link credit we granted that is not used yet
    cdef public uint32_t delivery_count         # the link's delivery-count
    cdef public bint keep                       # keep each message's bytes in `messages`
    cdef public bint auto_accept                # accept unsettled deliveries as they complete
    cdef public list messages                   # bytes of complete messages (keep mode)
    cdef public list delivery_ids               # delivery-id of each kept unsettled message, None
                                                # if settled (only when keep and not auto_accept)
    cdef public uint64_t received               # complete deliveries
    cdef public uint64_t bytes_received         # their message bytes
    cdef public bint touched                    # listed in the InboundCore's touched list
    # Sequence check (perftest): the last 8 bytes of each message are a big-endian counter.
    cdef public bint check_seq
    cdef public bint strict_seq                 # == expected (else >= expected)
    cdef public uint64_t next_seq
    cdef public uint64_t seq_errors
    cdef public object seq_error                # description of the first mismatch, or None
    # A multi-frame delivery in progress.
    cdef bint _in_partial
    cdef bint _partial_settled
    cdef bint _partial_has_id
    cdef uint32_t _partial_id
    cdef WriteBuffer _partial
    cdef int _deliver(self, const char* data, Py_ssize_t n, bint settled, bint has_id,
                      uint32_t delivery_id) except -1


cdef class InboundCore:
    cdef FrameReader reader
    cdef dict _receivers                        # (remote channel << 32) | remote handle -> ReceiverCore
    cdef dict _sessions                         # remote channel -> SessionCore
    cdef public list touched                    # ReceiverCores that got deliveries this burst
    cdef public uint64_t frames                 # frames read (heartbeats included)
    cdef ReceiverCore _last
    cdef int _last_channel
    cdef uint32_t _last_handle
    cpdef object next_event(self)
    cdef int _transfer(self, int channel, const char* body, Py_ssize_t blen) except -1
