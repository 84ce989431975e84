# cython: language_level=3
"""The broker's per-message path in C: a producer's transfer routed into a queue, a queue's message
sent to a consumer, a consumer's outcome applied -- without a Python call on the way when the target
is a queue (exchanges, the ACL's publish rules, queue filters, HA and the store's holds go through
the Python they have always gone through).

    engine (endpoints.Link._deliver) --Handler.deliver_message--> BrokerHandler
        --> ProducerCore.on_transfer: Message(data), Router.route_c --> Queue.enqueue --> dispatch
    Queue._dispatch --Consumer.can_take_c / deliver_c--> ConsumerCore --> Link.send_parts
    engine (Session._on_disposition) --Handler.deliver_outcome--> ConsumerCore.outcome_c --> Queue

The classes are the bases of the broker's Python ones (broker/connection.py's Connection,
broker/nodes.py's Nodes, broker/links.py's IncomingLink and OutgoingLink), which set the fields
(broker_core.pxd) and keep everything that is not per message. docs/ENGINE.md, "The broker on it".
"""
cimport cython
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from libc.stdint cimport int64_t, uint64_t

from cypid.pyx.amqp cimport ACCEPTED, REJECTED, RELEASED, TRANSACTIONAL_STATE
from cypid.pyx.endpoints cimport Delivery, Link
from cypid.pyx.engine cimport Engine
from cypid.pyx.engine_core cimport L_ATTACHED, Handler
from cypid.pyx.message cimport Message, encoded_header, message_from
from cypid.pyx.store_core cimport Pending
from cypid.pyx.queue cimport Consumer, Queue

from cypid.pyx import amqp
from cypid.pyx.codec import DecodeError, Described, symbol, ulong
from cypid.pyx.queue import QueueLimitExceeded

from cypid.broker import filters, redelivery
from cypid.broker.errors import DECODE_ERROR, MESSAGE_SIZE_EXCEEDED, NOT_FOUND, UNAUTHORIZED_ACCESS, AmqpError

# Producer credit: qpidd grants 500 and tops the window up when it falls to half.
CREDIT_WINDOW = 500
CREDIT_LOW = 250
cdef int64_t _CREDIT_WINDOW = CREDIT_WINDOW
cdef int64_t _CREDIT_LOW = CREDIT_LOW


def limit_outcome(e):
    """A queue's limit refused a message: `rejected` naming the queue and the limit (qpidd answers
    `released`, which cannot say why; a producer learns more from this)."""
    return Described(ulong(0x25), [Described(ulong(0x1D), [symbol(e.condition), e.description])])


# =================================================================================================
# The engine's handler: per-delivery calls go straight to the link objects
# =================================================================================================

cdef class BrokerHandler(Handler):
    """Base of broker.connection.Connection. The engine's per-delivery calls reach the broker's link
    objects (``link.context``) as C calls; links of other kinds fall back to on_message/on_outcome.

    The shell's per-read work is here too: asyncio's BufferedProtocol calls (get_buffer,
    buffer_updated) and the once-per-turn output (_flush) run the engine's C entry points without a
    Python frame. A read goes straight into the engine's frame reader (the buffer handed out stays
    valid until buffer_updated: the reader does not move it while it is lent out), is decoded and
    dispatched; what the engine wrote is taken and written once at the end of the loop turn. The
    rest (connection_made, pause/resume, eof, timers, failing and closing) is Connection's."""

    def get_buffer(self, Py_ssize_t sizehint):
        return self.engine.get_buffer_c()     # (the hint, -1 on asyncio's loop, is the reader's to ignore)

    def buffer_updated(self, Py_ssize_t nbytes):
        if not self.closing:
            self._input(None, nbytes)

    def data_received(self, data):
        """(Transports that do not read into get_buffer's buffer.)"""
        if not self.closing:
            self._input(data, len(data))

    cdef int _input(self, object data, Py_ssize_t nbytes) except -1:
        cdef Engine engine = self.engine
        cdef double now = self.loop_time()
        self.stats_bytes_in += nbytes
        self._feeding = True
        try:
            if data is None:
                engine.buffer_updated_c(nbytes, now)
            else:
                engine.feed(data, now)
        except AmqpError as e:      # the handler found the peer at fault (a malformed terminus...)
            self._feeding = False
            self.fail(e.condition, e.description)
            return 0
        except Exception as e:      # a broker bug in a handler call: this connection goes, the broker carries on
            self._feeding = False
            self.internal_error(e)
            return 0
        finally:
            self._feeding = False
        if engine.close_sent or engine.finished:
            self.close_transport()
        else:
            self.request_flush()
        return 0

    def want_flush(self):
        """Write what the engine has at the end of this loop turn."""
        self.request_flush()

    cdef int request_flush(self) except -1:
        if not self.flush_scheduled:
            self.flush_scheduled = True
            self.loop.call_soon(self._flush)
        return 0

    def _flush(self):
        cdef bytes data
        self.flush_scheduled = False
        if self.closing:
            return
        data = self.engine.take_output_c(self.loop_time())
        transport = self.transport
        if data and transport is not None and not transport.is_closing():
            transport.write(data)
            self.stats_bytes_out += len(data)

    cpdef object on_wake(self):
        self.request_flush()

    cpdef object on_flow(self, object link):
        """The consumer's credit (or drain) changed: its queue is asked for more (in C)."""
        ctx = (<Link>link).context
        if isinstance(ctx, ConsumerCore):
            if (<Link>link).flow_properties is not None and ctx.flow_properties((<Link>link).flow_properties):
                return
            (<ConsumerCore>ctx).pump()

    cdef int deliver_message(self, object link, object delivery, const char* data, Py_ssize_t n) except -1:
        ctx = (<Link>link).context
        if isinstance(ctx, ProducerCore):
            return (<ProducerCore>ctx).on_transfer(<Delivery>delivery, data, n)
        self.on_message(link, delivery, PyBytes_FromStringAndSize(data, n))
        return 0

    cdef int deliver_outcome(self, object link, object context, int outcome, object state) except -1:
        ctx = (<Link>link).context
        if isinstance(ctx, ConsumerCore):
            return (<ConsumerCore>ctx).outcome_c(context, outcome, state)
        self.on_outcome(link, context, outcome, state)
        return 0


# =================================================================================================
# Routing
# =================================================================================================

cdef class Router:
    """Base of broker.nodes.Nodes: ``route(node, msg)``, a queue in C, an exchange through
    Nodes._route_exchange; HA's holds (``replication``) and a flow-stopped queue's (Nodes._hold)
    are added to what the store's enqueue returned."""

    def route(self, node, msg):
        """Deliver msg to a queue or through an exchange. Returns None (accepted), a Pending (settle
        once its journal records are synced, its queue accepts more and HA backups have it), or an
        outcome."""
        return self.route_c(node, msg)

    cdef object route_c(self, object node, object msg):
        outcome = self._route_c(node, msg)
        rep = self.replication
        if rep is not None and rep.routed:
            return rep.hold(outcome)
        return outcome

    cdef object _route_c(self, object node, object msg):
        cdef Queue queue
        cdef bint durable
        if type(node) is not Queue:
            return self._route_exchange(node, msg)
        queue = <Queue>node
        if queue.deleted:
            return amqp.rejected(NOT_FOUND, "Queue %s has been deleted" % queue.name)
        if self.filtered and not filters.admits(queue, msg, self.broker.publisher):
            return None     # qpid.filter or no-local: accepted, and not for this queue
        if self.sequences.counters:
            self.sequences.stamp(queue, msg)
        durable = (<Message>msg).durable if type(msg) is Message else msg.durable
        try:
            if durable and self.store is not None:
                outcome = self.store.enqueue(queue, msg)
            else:
                queue.enqueue(msg)
                outcome = None
        except QueueLimitExceeded as e:
            return limit_outcome(e)
        if queue.flowStopped:
            return self._hold(queue, outcome)
        return outcome


# =================================================================================================
# Producers
# =================================================================================================

cdef class ProducerCore:
    """Base of broker.links.IncomingLink: a producer's complete deliveries, routed.

    Credit follows holds. A message whose routing put a flow hold on its settlement (a flow-stopped
    queue's, or HA stream flow's: Pending.flow; not a journal sync's, which is short) counts against
    the link's credit from its routing until its last hold is released, whether or not the producer
    waits for the settlement (a pre-settled send is counted too): the link is topped up (when credit
    and ``flow_held`` together fall to CREDIT_LOW) only to CREDIT_WINDOW - ``flow_held``. So credit
    outstanding plus flow-held messages never exceed CREDIT_WINDOW: a producer that sends without
    waiting gets no more credit once 500 of its messages wait on flow holds, and its credit comes back
    as they are released. With no flow hold it is qpidd's window: 500, topped up at 250."""

    cdef int on_transfer(self, Delivery delivery, const char* data, Py_ssize_t n) except -1:
        """One complete incoming delivery (the ``n`` bytes at ``data``): routed; its settlement waits
        for the holds the routing put on it (journal syncs, flow-stopped queues, HA backups)."""
        cdef Link core
        cdef Pending p
        if delivery.state is not None and self.broker.transactions.post(
                self, delivery, PyBytes_FromStringAndSize(data, n)):
            outcome = None      # a transactional transfer waits for its transaction (broker/transactions.py)
        elif self.node is None and not self.anonymous:
            # Not a producer of a node: the transaction coordinator (broker/transactions.py), whose
            # declares and discharges its own deliver() handles.
            outcome = self.deliver(PyBytes_FromStringAndSize(data, n))
        else:
            outcome = self.route(data, n)
        if outcome is not None:
            if type(outcome) is Pending:
                p = <Pending>outcome
                if not delivery.settled:
                    p.attach(delivery)
                if p.flow and p.count > 0 and p.producer is None:
                    p.producer = self       # counted until its last release
                    self.flow_held += 1
            else:
                delivery.outcome = outcome
        core = self.core
        if core.credit + self.flow_held <= _CREDIT_LOW:
            core.flow(credit=_CREDIT_WINDOW - self.flow_held)
        return 0

    cpdef flow_released(self):
        """The last hold of one of this link's flow-held messages went (Pending.release): its credit
        comes back once credit and flow-held messages together are down to CREDIT_LOW again."""
        cdef Link core = self.core
        self.flow_held -= 1
        if self.detached or core is None or core.state != L_ATTACHED:
            return
        if core.credit + self.flow_held <= _CREDIT_LOW:
            core.flow(credit=_CREDIT_WINDOW - self.flow_held)
            self.connection.request_flush()

    def on_message(self, delivery, data):
        cdef bytes b = bytes(data)
        self.on_transfer(delivery, PyBytes_AS_STRING(b), PyBytes_GET_SIZE(b))

    def deliver(self, data):
        """Route one complete message; returns None for accepted, a Pending, or the outcome to settle with."""
        cdef bytes b = bytes(data)
        return self.route(PyBytes_AS_STRING(b), PyBytes_GET_SIZE(b))

    cdef object route(self, const char* data, Py_ssize_t n):
        broker = self.broker
        # Whom the QMF agent answers for and whom no-local compares: read by exchanges and filtered
        # queues only, so a message straight into a plain queue does not set it.
        cdef bint publishing = self.anonymous or type(self.node) is not Queue or self.nodes.filtered != 0
        try:
            msg = message_from(data, n)
            if self.check_user_id and (<Message>msg).user_id is not None:
                self.acl.verify_user_id(self.connection, (<Message>msg).user_id)     # acl.LinkRefusal
            if self.acl.transfer:       # the ACL has publish rules (broker/acl.py)
                refused = self.acl.publish_refused(self, msg)
                if refused is not None:
                    return amqp.rejected(UNAUTHORIZED_ACCESS, refused)
            if publishing:
                broker.publisher = self.connection
            if self.anonymous:
                return self.nodes.route_anonymous(msg)
            # A headers exchange decodes the application-properties only now (before enqueueing).
            return self.nodes.route_c(self.node, msg)
        except DecodeError as e:
            return amqp.rejected(DECODE_ERROR, str(e))
        except AmqpError as e:
            # This message cannot be routed (e.g. a topic key over the limit): reject it alone; the
            # sender's link and connection carry on. Errors bound to a wider endpoint still close it.
            if e.scope not in (None, "link"):
                raise
            if e.closes_link:   # qpidd closes the producer's link too (acl.LinkRefusal)
                broker.loop.call_soon(self.detach, e.condition, e.description)
            return amqp.rejected(e.condition, str(e))
        finally:
            if publishing:
                broker.publisher = None


# =================================================================================================
# Consumers
# =================================================================================================

cdef class ConsumerCore(Consumer):
    """Base of broker.links.OutgoingLink: the queue's consumer interface in C, and the outcomes of
    what it sent."""

    def can_take(self):
        return self.can_take_c()

    cdef bint can_take_c(self) except -1:
        """Credit, the peer's session window, and room in the connection's output (max-connection-output:
        a consumer that does not read its socket makes the broker encode no more for it)."""
        return self.core._sendable(1) == 1 and not self.connection.paused

    cpdef pump(self):
        """Take what the queue has for this link while it can; a drain whose credit the queue cannot
        use up ends here (also when it resumes after the output or the window was full)."""
        cdef Link core
        queue = self.queue
        if queue is None or self.detached:
            return
        if self.can_take_c():
            (<Queue?>queue).dispatch()
        core = self.core
        if core.drain and core.credit > 0 and not self.detached and not queue.has_message_for(self):
            core.drained()
            self.connection.request_flush()

    def deliver(self, msg, queue):
        self.deliver_c(msg, queue)

    cdef int deliver_c(self, object msg, Queue queue) except -1:
        cdef bytes head = None, body
        cdef uint64_t limit
        cdef Py_ssize_t size
        if type(msg) is Message and (<Message>msg).body is not None:
            head = encoded_header(<Message>msg)
            body = (<Message>msg).body
        elif msg.body is not None:
            body = msg.encoded()
        else:   # flowed to disk: read back from the queue's journal
            body = self.nodes.store.encoded(queue, msg, keep=not self.browsing)
        limit = self.core.remote_max_message_size
        if limit:
            size = PyBytes_GET_SIZE(body) + (PyBytes_GET_SIZE(head) if head is not None else 0)
            if <uint64_t>size > limit:
                return self._too_large(msg, queue, size)
        if self.presettled:
            self.core.send_parts(head, body, None, None, None)
            if not self.browsing:
                queue.dequeued(msg)
        elif self.browsing:
            # A browsed delivery has no context: its settlement (rcv-settle-mode second waits for
            # ours) leaves the message where it is.
            self.core.send_parts(head, body, None, None, None)
        elif self.txn_state is None:
            self.core.send_parts(head, body, None, None, msg)
        else:   # acquired by a transaction (broker/acquisition.py): the transfer says which
            self.broker.transactions.acquisitions.acquired(
                self, msg, self.core.send_parts(head, body, None, None, msg, self.txn_state))
        self.connection.request_flush()
        return 0

    cdef int _too_large(self, object msg, Queue queue, Py_ssize_t size) except -1:
        """``msg`` is larger than the consumer's attach allows (its max-message-size): the link is
        detached with amqp:link:message-size-exceeded and the message stays on the queue, in its
        place, for consumers that can take it (not counted as a failed delivery: it was not sent)."""
        limit = self.core.remote_max_message_size
        text = ("message of %d bytes on queue %s exceeds the link's max-message-size %d"
                % (size, queue.name, limit))
        self.broker.log.warning("Link %r on %s detached: %s", self.core.name, self.connection.address, text)
        self.detach(MESSAGE_SIZE_EXCEEDED, text)
        if not self.browsing:
            queue.release(msg)
        return 0

    def on_outcome(self, msg, outcome, state):
        self.outcome_c(msg, outcome, state)

    cdef int outcome_c(self, object msg, int outcome, object state) except -1:
        """The client settled a delivery of ``msg`` (amqp outcome code, 0 for none: accepted)."""
        cdef Queue queue = <Queue?>self.queue
        if outcome == ACCEPTED or outcome == 0:
            queue.dequeued(msg)
        elif outcome == RELEASED:
            queue.release(msg)
        elif outcome == REJECTED:
            queue.reject(msg)
        elif outcome == TRANSACTIONAL_STATE:     # applied at the commit (broker/transactions.py)
            self.broker.transactions.retire(self, msg, state)
        else:  # modified: delivery-failed, undeliverable-here, message-annotations
            redelivery.modified(self, queue, msg, state)
        return 0
