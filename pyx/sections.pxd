# cython: language_level=3
"""cypid.pyx.sections: an encoded message's sections (the C-level contract).

scan_message finds what the broker needs (header fields, to/subject/reply-to, section offsets)
without decoding the body; encode_header writes a header section; MessageInfo.rebuild re-encodes
a message's header and message-annotations.  cypid.pyx.codec re-exports all of it.
"""
from libc.stdint cimport uint32_t, uint64_t, int64_t


cdef class MessageInfo:
    cdef readonly bytes data            # the encoded message as scanned
    cdef readonly Py_ssize_t size
    cdef readonly bint durable
    cdef readonly int priority          # 4 unless the header says otherwise
    cdef readonly uint32_t ttl          # ms, 0 = none
    cdef readonly bint first_acquirer
    cdef readonly uint32_t delivery_count
    cdef readonly object to             # str | None (properties)
    cdef readonly object subject
    cdef readonly object reply_to
    cdef readonly object user_id        # bytes | None
    cdef readonly int64_t absolute_expiry_time   # ms since epoch, 0 = none
    cdef readonly int64_t creation_time          # ms since epoch, 0 = none
    cdef readonly Py_ssize_t bare_offset         # after header and delivery-annotations
    cdef readonly Py_ssize_t annotations_offset  # message-annotations section start, -1 if none
    cdef readonly Py_ssize_t properties_offset   # after message-annotations: the bare message proper
    cdef readonly Py_ssize_t body_offset         # first body section (data/sequence/value), or size
    cdef Py_ssize_t _da_value, _ma_value, _props_value, _ap_value, _footer_value  # value offsets, -1 = absent
    cdef object _section_value(self, Py_ssize_t off, object default)


cpdef MessageInfo scan_message(object data)
cdef int scan_buffer(MessageInfo info, const char* data, Py_ssize_t n) except -1   # scan_message in place
cpdef bytes encode_header(bint durable, int priority, uint64_t ttl, bint first_acquirer,
                          uint64_t delivery_count)
