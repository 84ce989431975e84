# cython: language_level=3
"""cypid.pyx.exposition: the sample lines of Prometheus' text format, written in C.

``samples(name, labels, objects, attr, suffix=b"")`` returns, as one bytes object, a line
``<name>{<labels[i]><suffix>} <value>\\n`` for each object, the value being the object's integer
attribute ``attr`` (None counts as 0; an object without the attribute gets no line). ``labels[i]``
is object i's label text, already escaped (``queue="q1"``). It knows nothing of queues: the broker's
/metrics (broker/http/metrics.py) hands it the queues, exchanges or connections of one scrape, so a
scrape of 10,000 queues costs a getattr and a memcpy per line, not a Python format.
"""
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from libc.stdint cimport int64_t, uint64_t
from libc.stdlib cimport free, malloc, realloc
from libc.string cimport memcpy

cdef enum:
    MAX_NUMBER = 21                     # digits of a signed 64-bit integer, with its sign


cdef inline Py_ssize_t _itoa(char* out, int64_t v) noexcept:
    """Writes v in decimal at out; returns the length."""
    cdef char tmp[MAX_NUMBER]
    cdef Py_ssize_t n = 0, i
    cdef uint64_t u = <uint64_t>(-v) if v < 0 else <uint64_t>v
    while True:
        tmp[n] = <char>(48 + u % 10)
        n += 1
        u //= 10
        if u == 0:
            break
    i = 0
    if v < 0:
        out[0] = 45             # '-'
        i = 1
    while n > 0:
        n -= 1
        out[i] = tmp[n]
        i += 1
    return i


def samples(bytes name, list labels, list objects, str attr, bytes suffix=b""):
    """The sample lines of one family: see the module docstring."""
    cdef Py_ssize_t count = len(objects)
    if len(labels) != count:
        raise ValueError("one label text per object")
    cdef Py_ssize_t nlen = PyBytes_GET_SIZE(name), slen = PyBytes_GET_SIZE(suffix)
    cdef const char* cname = PyBytes_AS_STRING(name)
    cdef const char* csuffix = PyBytes_AS_STRING(suffix)
    cdef Py_ssize_t cap = 0, pos = 0, llen, i, need
    cdef bytes label
    cdef char* buf
    cdef char* grown
    cdef int64_t value
    for i in range(count):
        cap += PyBytes_GET_SIZE(<bytes>labels[i])
    cap += count * (nlen + slen + 4 + MAX_NUMBER) + 1
    buf = <char*>malloc(cap)
    if buf == NULL:
        raise MemoryError()
    try:
        for i in range(count):
            try:
                obj_value = getattr(objects[i], attr)
            except AttributeError:
                continue
            value = 0 if obj_value is None else <int64_t>obj_value
            label = <bytes>labels[i]
            llen = PyBytes_GET_SIZE(label)
            need = pos + nlen + llen + slen + 4 + MAX_NUMBER
            if need > cap:              # labels changed size under us (they are bytes: they cannot)
                grown = <char*>realloc(buf, need * 2)
                if grown == NULL:
                    raise MemoryError()
                buf, cap = grown, need * 2
            memcpy(buf + pos, cname, nlen)
            pos += nlen
            buf[pos] = 123              # '{'
            pos += 1
            memcpy(buf + pos, PyBytes_AS_STRING(label), llen)
            pos += llen
            memcpy(buf + pos, csuffix, slen)
            pos += slen
            buf[pos] = 125              # '}'
            buf[pos + 1] = 32           # ' '
            pos += 2
            pos += _itoa(buf + pos, value)
            buf[pos] = 10               # '\n'
            pos += 1
        return PyBytes_FromStringAndSize(buf, pos)
    finally:
        free(buf)
