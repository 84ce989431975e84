# cython: language_level=3
"""cypid.pyx.broker_core: the broker's per-message path in C (the contract; see broker_core.pyx).

``BrokerHandler`` is the base of broker/connection.py's Connection (the engine's handler), ``Router``
of broker/nodes.py's Nodes, ``ProducerCore`` of broker/links.py's IncomingLink and ``ConsumerCore``
(the queue's ``Consumer`` interface) of its OutgoingLink. The Python classes keep everything that is
not per message (attach, refuse, detach, management); the fields below are theirs, set from Python.
"""
from libc.stdint cimport int64_t

from cypid.pyx.endpoints cimport Delivery, Link
from cypid.pyx.engine cimport Engine
from cypid.pyx.engine_core cimport Handler
from cypid.pyx.queue cimport Consumer, Queue


cdef class BrokerHandler(Handler):
    # The shell's per-read and per-turn work (asyncio's BufferedProtocol calls) is this class's, in C;
    # broker/connection.py's Connection sets these fields and keeps the rest of the shell.
    cdef public Engine engine               # made in connection_made
    cdef public object transport
    cdef public object loop
    cdef public object loop_time            # loop.time, bound once
    cdef public bint paused                 # the transport's buffer is full, or the connection is closing
    cdef public bint closing                # our last frame is written: input is dropped
    cdef public bint flush_scheduled        # the shell's _flush runs this loop turn
    cdef public bint _feeding               # inside the engine's input: a close is written when it returns
    cdef public int64_t stats_bytes_in      # bytes read and written (/metrics, management)
    cdef public int64_t stats_bytes_out
    cdef int request_flush(self) except -1  # _flush at the end of this loop turn, unless it is scheduled already
    cdef int _input(self, object data, Py_ssize_t nbytes) except -1


cdef class Router:
    cdef public object broker
    cdef public object store                # broker/store.py's Store, or None
    cdef public object replication          # HA on a primary (ha/primary.py), or None
    cdef public object sequences            # broker/sequences.py's QueueSequences (qpid.queue_msg_sequence)
    cdef public Py_ssize_t filtered         # queues with a qpid.filter or no-local
    cdef public int64_t discards_no_route
    cdef public dict flow_holds             # flow-stopped queue -> [Pending] held until it resumes
    cdef object route_c(self, object node, object msg)
    cdef object _route_c(self, object node, object msg)


cdef class ProducerCore:
    cdef public Link core
    cdef public object broker
    cdef public BrokerHandler connection
    cdef public Router nodes
    cdef public object acl                  # broker/acl.py's Authorizer
    cdef public object node                 # the queue or exchange of the target (None: anonymous)
    cdef public bint anonymous
    cdef public bint check_user_id          # --auth yes: a message's user-id must be the connection's
    cdef public bint detached
    cdef public Py_ssize_t flow_held        # routed messages waiting on a flow hold (credit follows them)
    cdef int on_transfer(self, Delivery delivery, const char* data, Py_ssize_t n) except -1
    cpdef flow_released(self)
    cdef object route(self, const char* data, Py_ssize_t n)


cdef class ConsumerCore(Consumer):
    cdef public Link core
    cdef public object broker
    cdef public BrokerHandler connection
    cdef public Router nodes
    cdef public object queue                # a cypid.pyx.queue.Queue once attached
    cdef public bint presettled
    cdef public bint detached
    cdef public bint delete_on_detach       # a private subscription queue goes with its link
    cdef public bytes txn_state             # transactional acquisition: the encoded transactional-state
                                            # its transfers carry (broker/acquisition.py), or None
    cpdef pump(self)                        # take from the queue while the link can (credit, window, output)
    cdef int outcome_c(self, object msg, int outcome, object state) except -1
    cdef int _too_large(self, object msg, Queue queue, Py_ssize_t size) except -1
