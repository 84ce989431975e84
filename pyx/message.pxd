# cython: language_level=3
"""cypid.pyx.message: the broker's message, as a C struct with broker/message.py's Python interface.

Other Cython modules (the queue) cimport ``Message`` and read its fields directly; Python code sees
the same attributes and methods as broker/message.py's ``Message``.
"""
from libc.stdint cimport int64_t

from cypid.pyx.sections cimport MessageInfo


cdef class Message:
    cdef public bytes body              # the encoded message without header / delivery-annotations
    cdef public bint durable
    cdef public int priority            # 0-255 as sent (AMQP default 4)
    cdef public int64_t ttl             # ms, 0 = none
    cdef public double expires          # monotonic seconds, 0 = never
    cdef public object to               # str | None
    cdef public object subject          # str | None
    cdef public object user_id          # bytes | None: the properties' user-id (the broker checks it)
    cdef public Py_ssize_t size         # bytes as received (header included)
    cdef public int64_t delivery_count
    cdef public bint acquired_before
    cdef public int64_t seq             # the holding queue's sequence number
    cdef Py_ssize_t _ap_offset          # application-properties value within body, -1 = none
    cdef int _take(self, MessageInfo info, bytes body) except -1


cdef Message message_from(const char* data, Py_ssize_t n)   # Message(data[:n]) without a copy between
cdef bytes encoded_header(Message m)    # the header section before m.body for a consumer, or None
