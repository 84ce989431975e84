"""The broker's side of links: a producer's link into a queue or exchange, a consumer's out of a queue.

The protocol (handles, credit, delivery-count, settle modes, the unsettled deliveries) is the engine's
Link (cypid.pyx.endpoints, docs/ENGINE.md); these objects are its ``context``. Attach follows qpidd's
mapping (../shared/reference/amqp10-mapping.md): the broker answers every attach with an attach, and
when the address cannot be resolved it answers with a null terminus and at once detaches with the error
(``Link.refuse`` in the engine).
"""
from cypid.pyx import amqp
from cypid.pyx.codec import DecodeError
from cypid.pyx.message import Message

from . import errors, redelivery
from .errors import AmqpError
from .store import Pending
from .terminus import Terminus

# Producer credit: qpidd grants 500 and tops the window up when it falls to half.
CREDIT_WINDOW = 500
CREDIT_LOW = 250


class Link:
    """What producer and consumer links share: the engine link, the parsed termini, the session."""

    is_sender = False

    def __init__(self, session, core):
        self.session = session           # broker.session.Session
        self.connection = session.connection
        self.broker = session.broker
        self.core = core                 # cypid.pyx.endpoints.Link
        self.name = core.name
        self.handle = core.handle
        self.snd_settle_mode = core.remote_snd_settle_mode
        self.source = Terminus.parse(core.remote_source)
        self.target = Terminus.parse(core.remote_target)
        self.detached = False
        self.node = None

    def refuse(self, error, log=True):
        """Answer the attach with a null terminus and close the link with the error."""
        # qpidd logs refused attaches at error level ("Error on attach: ..."): one line per refusal
        # (a connection over its link limit: one line for the episode).
        if log:
            self.broker.log.warning("Link %r on %s refused: %s", self.name, self.connection.address, error)
        self.detached = True
        self.core.refuse(error.condition, error.description)

    def detach(self, condition=None, description=None):
        """The broker closes the link (its node went): released now, the engine's detach written."""
        if self.detached:
            return
        self.abandon()
        self.core.detach(condition, description)
        self.connection.want_flush()

    def abandon(self):
        self.detached = True

    def __repr__(self):
        return "<%s %r handle=%d on %s>" % (type(self).__name__, self.name, self.handle, self.connection.address)


class IncomingLink(Link):
    """A producer sending to a queue, an exchange, or (null target) wherever each message's `to` says."""

    def __init__(self, session, core):
        super().__init__(session, core)
        self.anonymous = False
        self.check_user_id = self.broker.acl.checks_user_id(self.connection)   # --auth yes (acl.py)

    def attach(self):
        target = self.target
        try:
            if target is None:
                raise errors.PreconditionFailed("No target specified!")
            if target.coordinator:
                from .transactions import Coordinator     # (it imports this module)
                self.__class__ = Coordinator              # declare and discharge come on this link
                return self.attach()
            if target.address is None and not target.dynamic:
                self.anonymous = True
                reply = target.encode()
            else:
                self.node, reply = self.broker.nodes.resolve_target(self, target)
        except AmqpError as e:
            self.refuse(e)
            return False
        # The broker receiving settles first (at once, or once the holds on a delivery are released).
        self.core.accept(target=reply, rcv_settle_mode=amqp.RCV_FIRST)
        self.core.flow(credit=CREDIT_WINDOW)
        return True

    def abandon(self):
        if self.detached:
            return
        self.detached = True
        if self.node is not None:
            self.broker.nodes.producer_detached(self.node, self)   # an auto-delete exchange may go

    def on_message(self, delivery, data):
        """One complete incoming delivery (the engine's Delivery): routed; its settlement waits for
        the holds the routing put on it (journal syncs, flow-stopped queues). A transfer with a
        transactional-state waits for its transaction's commit (broker/transactions.py)."""
        if delivery.state is not None and self.broker.transactions.post(self, delivery, data):
            outcome = None
        else:
            outcome = self.deliver(data)
        if outcome is not None:
            if outcome.__class__ is Pending:
                if not delivery.settled:
                    outcome.attach(delivery)
            else:
                delivery.outcome = outcome
        core = self.core
        if core.credit <= CREDIT_LOW:
            core.flow(credit=CREDIT_WINDOW)

    def deliver(self, data):
        """Route one complete message; returns None for accepted, a Pending, or the outcome to settle with."""
        broker = self.broker
        try:
            msg = Message(data)
            if self.check_user_id and msg.user_id is not None:
                broker.acl.verify_user_id(self.connection, msg.user_id)     # acl.LinkRefusal
            if broker.acl.transfer:     # the ACL has publish rules (broker/acl.py)
                refused = broker.acl.publish_refused(self, msg)
                if refused is not None:
                    return amqp.rejected(errors.UNAUTHORIZED_ACCESS, refused)
            broker.publisher = self.connection   # whom the QMF agent answers for
            if self.anonymous:
                return broker.nodes.route_anonymous(msg)
            # A headers exchange decodes the application-properties only now (before enqueueing).
            return broker.nodes.route(self.node, msg)
        except DecodeError as e:
            return amqp.rejected(errors.DECODE_ERROR, str(e))
        except AmqpError as e:
            # This message cannot be routed (e.g. a topic key over the limit): reject it alone; the
            # sender's link and connection carry on. Errors bound to a wider endpoint still close it.
            if e.scope not in (None, "link"):
                raise
            if e.closes_link:   # qpidd closes the producer's link too (acl.LinkRefusal)
                broker.loop.call_soon(self.detach, e.condition, e.description)
            return amqp.rejected(e.condition, str(e))
        finally:
            broker.publisher = None


class OutgoingLink(Link):
    """A consumer (or browser) taking messages from a queue (the consumer interface queue.pyx uses:
    ``browsing``, ``browse_position``, ``can_take()``, ``deliver(msg, queue)``)."""

    is_sender = True

    def __init__(self, session, core):
        super().__init__(session, core)
        self.queue = None
        self.browsing = False
        self.browse_position = 0
        self.presettled = False
        self.delete_on_detach = False   # a private subscription queue goes with its link
        self.selector = None            # this consumer's filter (cypid.pyx.selector), set on attach

    def attach(self):
        source = self.source
        try:
            if source is None:
                raise errors.PreconditionFailed("No source specified!")
            self.queue, reply = self.broker.nodes.resolve_source(self, source)
        except AmqpError as e:
            self.refuse(e)
            return False
        # What the attach announces is what the engine follows: settled or unsettled, never mixed;
        # a client receiving in mode second gets the broker's settlement after its own.
        self.core.accept(source=reply, snd_settle_mode=amqp.SND_SETTLED if self.presettled else amqp.SND_UNSETTLED)
        self.queue.add_consumer(self)
        self.broker.events.subscribed(self)
        return True

    def can_take(self):
        """Credit, the peer's session window, and room in the connection's output (max-connection-output:
        a consumer that does not read its socket makes the broker encode no more for it)."""
        conn = self.connection
        return self.core.can_send and not conn.paused

    def deliver(self, msg, queue):
        if msg.body is not None:
            data = msg.encoded()
        else:   # flowed to disk: read back from the queue's journal
            data = self.broker.nodes.store.encoded(queue, msg, keep=not self.browsing)
        if self.presettled:
            self.core.send(data)
            if not self.browsing:
                queue.dequeued(msg)
        elif self.browsing:
            # A browsed delivery has no context: its settlement (rcv-settle-mode second waits for
            # ours) leaves the message where it is.
            self.core.send(data)
        else:
            self.core.send(data, context=msg)
        self.connection.want_flush()

    def on_outcome(self, msg, outcome, state):
        """The client settled a delivery of ``msg`` (amqp outcome code, 0 for none: accepted)."""
        queue = self.queue
        if outcome == amqp.ACCEPTED or outcome == 0:
            queue.dequeued(msg)
        elif outcome == amqp.RELEASED:
            queue.release(msg)
        elif outcome == amqp.REJECTED:
            queue.reject(msg)
        elif outcome == amqp.TRANSACTIONAL_STATE:     # applied at the commit (broker/transactions.py)
            self.broker.transactions.retire(self, msg, state)
        else:  # modified: delivery-failed, undeliverable-here, message-annotations
            redelivery.modified(self, queue, msg, state)

    def pump(self):
        """Take what the queue has for this link while it can; a drain whose credit the queue cannot
        use up ends here (also when it resumes after the output or the window was full)."""
        queue = self.queue
        if queue is None or self.detached:
            return
        if self.can_take():
            queue.dispatch()
        core = self.core
        if core.drain and core.credit > 0 and not self.detached and not queue.has_message_for(self):
            core.drained()
            self.connection.want_flush()

    def abandon(self):
        if self.detached:
            return
        self.detached = True
        queue = self.queue
        if queue is None:
            return
        queue.remove_consumer(self)
        self.broker.events.unsubscribed(self)
        # Deliveries this link left unsettled return to the queue, counted as failed attempts.
        for msg in self.core.take_unsettled():
            if msg is None:
                continue      # browsed (or pre-settled)
            queue.release(msg, count_failure=True)
            if msg.durable:
                self.broker.nodes.released(queue, msg)
        if self.delete_on_detach and not queue.deleted:
            self.broker.nodes.delete_queue(queue)
        self.broker.nodes.lifetimes.link_gone(queue, self)


__all__ = ["IncomingLink", "OutgoingLink", "CREDIT_WINDOW"]
