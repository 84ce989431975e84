# cython: language_level=3
"""cypid.pyx.frames: AMQP 1.0 frames and performatives (the C-level contract).

FrameReader splits a byte stream into frames; decode_performative / read_transfer (the engine's
transfer reader; decode_transfer in Python) read a frame body; encode_frame / encode_transfer_frames write frames.  cypid.pyx.codec re-exports all of it.
"""
from libc.stdint cimport uint32_t, uint64_t

from cypid.pyx.encoder cimport WriteBuffer


cdef enum:
    FRAME_HEADER_SIZE = 8
    FRAME_AMQP = 0
    FRAME_SASL = 1
    READ_MIN = 16384                  # FrameReader.read_size: the free space offered to a read
    READ_MAX = 256 * 1024
    MAX_TRANSFER_STATE = 64           # the longest delivery state a transfer we write may carry


# A complete frame still inside a FrameReader's buffer (valid until the next feed()).
cdef struct FrameView:
    int frame_type
    int channel
    const char* body
    Py_ssize_t body_len


# The fields of a transfer the engine uses, read in place (tag and payload point into the frame).
cdef struct Transfer:
    uint64_t handle
    bint has_id
    uint32_t did
    const char* tag
    Py_ssize_t tag_len
    bint settled
    bint more
    bint aborted
    const char* state                     # the transfer's delivery state (encoded), NULL when absent or null
    Py_ssize_t state_len
    const char* payload
    Py_ssize_t payload_len


cdef class FrameReader:
    cdef char* _buf                   # malloc'd; bytes [_start, _end) are unread
    cdef Py_ssize_t _cap
    cdef Py_ssize_t _start
    cdef Py_ssize_t _end
    cdef public uint32_t max_frame_size
    cdef Py_ssize_t _exports          # buffer views lent out (a read in progress): no realloc
    cdef readonly Py_ssize_t read_size
    cdef int reserve_read(self) except -1
    cdef int advance(self, Py_ssize_t n) except -1
    cdef int clear(self) except -1
    cdef int feed_c(self, const char* data, Py_ssize_t n) except -1
    cpdef feed(self, data)
    cpdef object read_protocol_header(self)
    cdef int next_frame_c(self, FrameView* out) except -1   # 1 and *out filled, or 0 (need more)
    cdef int _grow_for(self, Py_ssize_t size) except -1
    cpdef object next_frame(self)


cpdef tuple decode_performative(object body)
cdef int read_transfer(const char* body, Py_ssize_t blen, Transfer* t) except -1   # 1, or 0: not a transfer
cpdef object decode_transfer(object body)      # (handle, delivery_id, settled, more, aborted, payload) | None
cpdef bytes encode_frame(int channel, uint64_t code, object fields, object payload=*, int frame_type=*)
cpdef bytes encode_transfer_frames(int channel, uint32_t handle, uint32_t delivery_id, object tag,
                                   bint settled, object message, uint64_t max_frame_size)
cdef Py_ssize_t write_transfer_frames(WriteBuffer wb, int channel, uint32_t handle, uint32_t delivery_id,
                                      const char* tag, Py_ssize_t tl, bint settled, const char* msg,
                                      Py_ssize_t L, uint64_t max_frame_size) except -1   # frames written
cdef Py_ssize_t write_transfer_frames2(WriteBuffer wb, int channel, uint32_t handle, uint32_t delivery_id,
                                       const char* tag, Py_ssize_t tl, bint settled, const char* head,
                                       Py_ssize_t hl, const char* msg, Py_ssize_t L,
                                       uint64_t max_frame_size, const char* state=*,
                                       Py_ssize_t sl=*) except -1   # head + msg (+ state), frames written
