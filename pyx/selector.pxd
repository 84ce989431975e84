# cython: language_level=3
"""cypid.pyx.selector: JMS message selectors (``apache.org:selector-filter:string``).

``Selector(text)`` parses once (``SelectorError`` names the fault and its position); the queue
calls ``matches(msg)`` for each message it considers for a filtered consumer or subscription. See
selector.pyx for the language and its values.
"""
from cypid.pyx.message cimport Message


cdef class Env:
    """One evaluation: the message, and what has been read from it so far."""
    cdef object msg
    cdef Selector sel
    cdef list props             # the named application properties' values, by slot
    cdef bint props_read
    cdef object info            # the message's MessageInfo, once a properties field is needed
    cdef object annotations     # its message-annotations, once needed

    cdef int read_props(self) except -1
    cdef object scan(self)
    cdef object special(self, int kind)


cdef class Node:
    cdef object eval(self, Env env)


cdef class Selector:
    cdef readonly str text
    cdef readonly tuple names           # the application properties the selector reads
    cdef Node root
    cdef list keys                      # names as UTF-8 bytes, by slot
    # The queue's scan state for the one consumer this selector filters (queue.pyx _next_selected):
    # every available message up to scan_mark was found not to match, as long as the queue's
    # avail_epoch is still scan_epoch.
    cdef public long long scan_mark
    cdef public long long scan_epoch
    # loader(msg): put back the body of a message kept on disk only (recovered from the journal and
    # not yet read, or flowed to disk), so that the selector sees its properties; None: no store.
    cdef public object loader
    # Queue positions (a message's seq) never selected, whatever it says: the deliveries this
    # consumer gave back as `modified` with undeliverable-here. None: none.
    cdef public set refused

    cpdef bint matches(self, object msg) except -1
    cdef bint _matches_on_disk(self, Message msg) except -1
