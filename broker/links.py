"""The broker's side of links: a producer's link into a queue or exchange, a consumer's out of a queue.

The protocol (handles, credit, delivery-count, settle modes, the unsettled deliveries) is the engine's
Link (cypid.pyx.endpoints, docs/ENGINE.md); these objects are its ``context``. Attach follows qpidd's
mapping (../shared/reference/amqp10-mapping.md): the broker answers every attach with an attach, and
when the address cannot be resolved it answers with a null terminus and at once detaches with the error
(``Link.refuse`` in the engine).
"""
from cypid.pyx import amqp
from cypid.pyx.broker_core import CREDIT_WINDOW, ConsumerCore, ProducerCore
from cypid.pyx.message import Message     # the message class the broker's links make (the QMF agent's too)

from . import errors
from .errors import AmqpError
from .terminus import Terminus


class Link:
    """What producer and consumer links share: the engine link, the parsed termini, the session.
    (The per-message work is their Cython bases': cypid.pyx.broker_core.)"""

    is_sender = False

    def __init__(self, session, core):
        self.session = session           # broker.session.Session
        self.connection = session.connection
        self.broker = session.broker
        self.nodes = session.broker.nodes
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


class IncomingLink(Link, ProducerCore):
    """A producer sending to a queue, an exchange, or (null target) wherever each message's `to` says
    (ProducerCore routes each message: on_transfer, deliver(data))."""

    def __init__(self, session, core):
        super().__init__(session, core)
        self.acl = self.broker.acl
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


class OutgoingLink(Link, ConsumerCore):
    """A consumer (or browser) taking messages from a queue (the consumer interface queue.pxd
    declares -- ``browsing``, ``browse_position``, ``selector``, ``can_take()``, ``deliver(msg,
    queue)`` -- and the outcomes, in ConsumerCore)."""

    is_sender = True

    def __init__(self, session, core):
        super().__init__(session, core)
        self.queue = None
        self.browsing = False
        self.browse_position = 0
        self.presettled = False
        self.delete_on_detach = False   # a private subscription queue goes with its link
        self.selector = None            # this consumer's filter (cypid.pyx.selector), set on attach
        self.acq_txn = None             # the transaction its transfers are acquired by (broker/acquisition.py)
        self.acq_txns = []              # the transactions it acquired for

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

    def flow_properties(self, properties):
        """A flow carrying properties: True when the link was detached for them. A ``txn-id`` asks
        for transactional acquisition (AMQP 1.0 section 4.4.3, broker/acquisition.py). Other
        properties have no meaning to the broker."""
        if not isinstance(properties, dict) or "txn-id" not in properties:
            return False
        return self.broker.transactions.acquisitions.flow(self, properties["txn-id"])

    def abandon(self):
        if self.detached:
            return
        self.detached = True
        queue = self.queue
        if queue is None:
            return
        queue.remove_consumer(self)
        self.broker.events.unsubscribed(self)
        # Deliveries this link left unsettled return to the queue, counted as failed attempts (not
        # those an open transaction acquired: they go back as its rollback gives them back).
        undone = self.broker.transactions.acquisitions.link_gone(self) if self.acq_txns else ()
        for msg in self.core.take_unsettled():
            if msg is None:
                continue      # browsed (or pre-settled)
            if msg in undone:
                queue.release(msg)
                continue
            queue.release(msg, count_failure=True)
            if msg.durable:
                self.broker.nodes.released(queue, msg)
        if self.delete_on_detach and not queue.deleted:
            self.broker.nodes.delete_queue(queue)
        self.broker.nodes.lifetimes.link_gone(queue, self)


__all__ = ["IncomingLink", "OutgoingLink", "CREDIT_WINDOW", "Message"]
