"""Links: a producer's link into a queue or exchange, and a consumer's link out of a queue.

Attach follows qpidd's mapping (../shared/reference/amqp10-mapping.md): the broker answers every attach
with an attach, and when the address cannot be resolved it answers with a null terminus and at once
detaches with the error.
"""
from cypid.pyx.codec import DecodeError, Described, encode_transfer_frames, symbol, ubyte, uint, ulong

from . import errors
from .errors import AmqpError
from cypid.pyx.message import Message
from .store import Pending
from .terminus import Terminus

ATTACH, FLOW, DETACH = 0x12, 0x13, 0x16
SOURCE, TARGET = 0x28, 0x29
SENDER, RECEIVER = False, True
SETTLE_UNSETTLED, SETTLE_SETTLED, SETTLE_MIXED = 0, 1, 2
RCV_FIRST, RCV_SECOND = 0, 1
# Producer credit: qpidd grants 500 and tops the window up when it falls to half.
CREDIT_WINDOW = 500
CREDIT_LOW = 250
MASK32 = 0xFFFFFFFF


def make_error(condition, description):
    return Described(ulong(0x1D), [symbol(condition), description])


class Link:
    is_sender = False

    def __init__(self, session, handle, attach):
        self.session = session
        self.broker = session.broker
        self.handle = handle
        n = len(attach)
        self.name = attach[0]
        self.remote_handle = attach[1]
        self.snd_settle_mode = attach[3] if n > 3 else None
        self.rcv_settle_mode = attach[4] if n > 4 else None
        self.source = Terminus.parse(attach[5] if n > 5 else None)
        self.target = Terminus.parse(attach[6] if n > 6 else None)
        self.remote_delivery_count = attach[9] if n > 9 else None
        self.detached = False
        self.node = None

    def send_attach(self, source, target, initial_delivery_count=None):
        max_size = self.broker.options.max_message_size
        self.session.send(ATTACH, [
            self.name, uint(self.handle), self.is_sender is False, ubyte(self.reply_snd_settle_mode()),
            ubyte(self.reply_rcv_settle_mode()), source, target, None, None,
            uint(initial_delivery_count) if initial_delivery_count is not None else None,
            ulong(max_size) if max_size and not self.is_sender else None,
        ])

    def reply_snd_settle_mode(self):
        return self.snd_settle_mode if self.snd_settle_mode is not None else SETTLE_MIXED

    def reply_rcv_settle_mode(self):
        """The broker receiving settles first (at once, or once its journal synced)."""
        return RCV_FIRST

    def refuse(self, error, log=True):
        """Answer the attach with a null terminus and close the link with the error."""
        # qpidd logs refused attaches at error level ("Error on attach: ..."): one line per refusal
        # (a connection over its link limit: one line for the episode).
        if log:
            self.broker.log.warning("Link %r on %s refused: %s", self.name, self.session.connection.address,
                                    error)
        if self.is_sender:
            self.send_attach(None, self.target.encode() if self.target else None, 0)
        else:
            self.send_attach(self.source.encode() if self.source else None, None)
        self.detach(error.condition, error.description)

    def detach(self, condition=None, description=None):
        if self.detached:
            return
        self.abandon()
        err = make_error(condition, description) if condition else None
        self.session.send(DETACH, [uint(self.handle), True, err])
        # The handles stay taken until the peer answers with its own detach.

    def on_detach(self, closed):
        if self.detached:
            self.session.link_detached(self)
            return
        self.abandon()
        self.session.send(DETACH, [uint(self.handle), True])
        self.session.link_detached(self)

    def abandon(self):
        self.detached = True


class IncomingLink(Link):
    """A producer sending to a queue, an exchange, or (null target) wherever each message's `to` says."""

    def __init__(self, session, handle, attach):
        super().__init__(session, handle, attach)
        self.credit = 0
        self.delivery_count = self.remote_delivery_count or 0
        self.partial = None       # bytearray of a multi-frame delivery in progress
        self.partial_id = 0
        self.partial_settled = False
        self.anonymous = False
        self.received = 0
        self.max_message_size = self.broker.options.max_message_size   # 0: no limit

    def attach(self):
        target = self.target
        try:
            if target is None:
                raise errors.PreconditionFailed("No target specified!")
            if target.coordinator:
                raise errors.Unimplemented("transactions are not supported yet")
            if target.address is None and not target.dynamic:
                self.anonymous = True
                reply = target.encode()
            else:
                self.node, reply = self.broker.nodes.resolve_target(self, target)
        except AmqpError as e:
            self.refuse(e)
            return
        self.send_attach(self.source.encode() if self.source else None, reply)
        self.refill()

    def refill(self):
        if self.detached:
            return
        self.credit = CREDIT_WINDOW
        self.session.send_flow(self)

    def abandon(self):
        if self.detached:
            return
        self.detached = True
        if self.node is not None:
            self.broker.nodes.producer_detached(self.node, self)   # an auto-delete exchange may go

    def on_flow(self, fields):
        if len(fields) > 9 and fields[9]:
            self.session.send_flow(self)

    def on_transfer(self, did, settled, more, aborted, payload):
        """One transfer frame on this link (a delivery, or part of one when `more`)."""
        partial = self.partial
        max_size = self.max_message_size
        if partial is None:
            if max_size and len(payload) > max_size:
                self.too_large(len(payload), more)
                return
            if more:
                self.partial = bytearray(payload)
                self.partial_id = did
                self.partial_settled = settled
                return
            data = payload
        else:
            if aborted:                  # the delivery never happened
                self.partial = None
                return
            if max_size and len(partial) + len(payload) > max_size:
                self.too_large(len(partial) + len(payload), more)
                return
            partial += payload
            if settled:
                self.partial_settled = True
            if more:
                return
            data = bytes(partial)
            self.partial = None
            did, settled = self.partial_id, self.partial_settled
        self.credit -= 1
        self.delivery_count = (self.delivery_count + 1) & MASK32
        self.received += 1
        outcome = self.deliver(data)
        if not settled and did is not None:
            if outcome.__class__ is Pending:    # durable: settled once its journal records are synced
                outcome.wait(self.session, did)
            else:
                self.session.settle_incoming(did, outcome)
        if self.credit <= CREDIT_LOW and self.credit + 1 > CREDIT_LOW:
            self.session.want_credit(self)

    def too_large(self, size, more):
        """A delivery grew past max-message-size (the one the attach offered): what arrived is
        dropped and the link detached, so a never-finished delivery holds no more memory."""
        self.partial = None
        self.broker.log.warning("Link %r on %s detached: message of %s%d bytes exceeds max-message-size %d",
                                self.name, self.session.connection.address, "at least " if more else "",
                                size, self.max_message_size)
        self.detach(errors.MESSAGE_SIZE_EXCEEDED, "message of %s%d bytes exceeds max-message-size %d"
                    % ("at least " if more else "", size, self.max_message_size))

    def deliver(self, data):
        """Route one complete message; returns None for accepted, else the outcome to settle with."""
        broker = self.broker
        try:
            msg = Message(data)
            if broker.acl.transfer:     # the ACL has publish rules (broker/acl.py)
                refused = broker.acl.publish_refused(self, msg)
                if refused is not None:
                    return Described(ulong(0x25), [make_error(errors.UNAUTHORIZED_ACCESS, refused)])
            broker.publisher = self.session.connection   # whom the QMF agent answers for
            if self.anonymous:
                return broker.nodes.route_anonymous(msg)
            # A headers exchange decodes the application-properties only now (before enqueueing).
            return broker.nodes.route(self.node, msg)
        except DecodeError as e:
            return Described(ulong(0x25), [make_error(errors.DECODE_ERROR, str(e))])
        except AmqpError as e:
            # This message cannot be routed (e.g. a topic key over the limit): reject it alone; the
            # sender's link and connection carry on. Errors bound to a wider endpoint still close it.
            if e.scope not in (None, "link"):
                raise
            return Described(ulong(0x25), [make_error(e.condition, str(e))])
        finally:
            broker.publisher = None


class OutgoingLink(Link):
    """A consumer (or browser) taking messages from a queue."""

    is_sender = True

    def __init__(self, session, handle, attach):
        super().__init__(session, handle, attach)
        self.credit = 0
        self.delivery_count = 0
        self.drain = False
        self.queue = None
        self.browsing = False
        self.browse_position = 0
        self.presettled = False
        self.unsettled_count = 0
        self.delete_on_detach = False   # a private subscription queue goes with its link
        self.selector = None            # this consumer's filter (cypid.pyx.selector), set on attach
        self.connection = session.connection

    def attach(self):
        source = self.source
        try:
            if source is None:
                raise errors.PreconditionFailed("No source specified!")
            self.queue, reply = self.broker.nodes.resolve_source(self, source)
        except AmqpError as e:
            self.refuse(e)
            return
        self.send_attach(reply, self.target.encode() if self.target else None, 0)
        self.queue.add_consumer(self)
        self.broker.events.subscribed(self)

    def reply_snd_settle_mode(self):
        return SETTLE_SETTLED if self.presettled else SETTLE_UNSETTLED

    def reply_rcv_settle_mode(self):
        """The client receiving settles first or second, as it asked: the broker settles a delivery
        the client settled or, in mode second, confirms the client's outcome with its settlement."""
        return RCV_SECOND if self.rcv_settle_mode == RCV_SECOND else RCV_FIRST

    def can_take(self):
        """Credit, the session window, and room in the connection's output (max-connection-output:
        a consumer that does not read its socket makes the broker encode no more for it)."""
        session = self.session
        conn = self.connection
        return self.credit > 0 and not conn.paused and conn.out_bytes < conn.out_limit \
            and session.remote_incoming_window > 0 and session.pending_frames is None and not self.detached

    def deliver(self, msg, queue):
        session = self.session
        did = session.next_delivery_id
        session.next_delivery_id = (did + 1) & MASK32
        if msg.body is not None:
            data = msg.encoded()
        else:   # flowed to disk: read back from the queue's journal
            data = self.broker.nodes.store.encoded(queue, msg, keep=not self.browsing)
        conn = self.connection
        settled = self.presettled      # as the attach announced, browsing or not
        max_frame = conn.remote_max_frame
        frames = encode_transfer_frames(session.channel, self.handle, did, did.to_bytes(4, "big"),
                                        settled, data, max_frame)
        session.write_transfer(frames, max_frame, self)
        self.credit -= 1
        self.delivery_count = (self.delivery_count + 1) & MASK32
        if settled:
            if not self.browsing:
                queue.dequeued(msg)
        else:
            # A browsed delivery is kept with queue None: its settlement (rcv-settle-mode second
            # waits for ours) leaves the message where it is.
            session.unsettled[did] = (self, msg, None if self.browsing else queue)
            self.unsettled_count += 1

    def on_flow(self, fields):
        n = len(fields)
        remote_count = fields[5] if n > 5 and fields[5] is not None else 0
        link_credit = fields[6] if n > 6 and fields[6] is not None else 0
        self.drain = bool(fields[8]) if n > 8 and fields[8] is not None else False
        self.credit = (remote_count + link_credit - self.delivery_count) & MASK32
        if self.credit > 0x7FFFFFFF:   # the peer's count is behind ours: no credit
            self.credit = 0
        if not self.pump() and n > 9 and fields[9]:
            self.session.send_flow(self)

    def pump(self):
        """Take what the queue has for this link while it can; a drain whose credit the queue
        cannot use up ends here (also when it resumes after the output or the window was full).
        Returns True if it sent the drained flow."""
        queue = self.queue
        if queue is None:
            return False
        if self.can_take():
            queue.dispatch()
        if self.drain and self.credit > 0 and not self.detached and not queue.has_message_for(self):
            self.delivery_count = (self.delivery_count + self.credit) & MASK32
            self.credit = 0
            self.session.send_flow(self, drain=True)
            return True
        return False

    def abandon(self):
        if self.detached:
            return
        self.detached = True
        self.session.drop_pending(self)
        queue = self.queue
        if queue is None:
            return
        queue.remove_consumer(self)
        self.broker.events.unsubscribed(self)
        # Deliveries this link left unsettled return to the queue, counted as failed attempts.
        unsettled = self.session.unsettled
        if self.unsettled_count:
            for did in [d for d, entry in unsettled.items() if entry[0] is self]:
                _, msg, q = unsettled.pop(did)
                if q is None:
                    continue      # browsed
                q.release(msg, count_failure=True)
                if msg.durable:
                    self.broker.nodes.released(q, msg)
            self.unsettled_count = 0
        if self.delete_on_detach and not queue.deleted:
            self.broker.nodes.delete_queue(queue)
