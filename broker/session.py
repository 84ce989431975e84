"""One AMQP 1.0 session: transfer-id windows, link handles, and settlement of deliveries both ways.

Dispositions to producers and credit top-ups are gathered during a read burst and sent by flush(),
so one disposition frame settles a whole range of deliveries.
"""
import heapq

from cypid.pyx.codec import Described, encode_frame, uint, ulong, ushort

from . import errors
from .errors import AmqpError
from .links import IncomingLink, OutgoingLink, make_error

BEGIN, ATTACH, FLOW, TRANSFER, DISPOSITION, DETACH, END = 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17
ACCEPTED = Described(ulong(0x24), [])
RELEASED = Described(ulong(0x26), [])
# Outcome descriptors as they may arrive (ulong codes or their symbolic names).
OUTCOMES = {
    0x24: "accepted", "amqp:accepted:list": "accepted",
    0x25: "rejected", "amqp:rejected:list": "rejected",
    0x26: "released", "amqp:released:list": "released",
    0x27: "modified", "amqp:modified:list": "modified",
}
WINDOW = 0x7FFFFFFF
MASK32 = 0xFFFFFFFF


class Session:
    def __init__(self, connection, channel, remote_channel, begin):
        self.connection = connection
        self.broker = connection.broker
        self.channel = channel
        self.remote_channel = remote_channel
        n = len(begin)
        self.next_incoming_id = begin[1] if n > 1 and begin[1] is not None else 0
        self.remote_incoming_window = begin[2] if n > 2 and begin[2] is not None else 0
        self.remote_outgoing_window = begin[3] if n > 3 and begin[3] is not None else 0
        self.next_outgoing_id = 0
        self.next_delivery_id = 0
        self.links = {}            # remote handle -> link
        self.local_handles = {}    # local handle -> link
        self.senders = {}          # local handle -> OutgoingLink (those resume_outgoing pumps)
        self.free_handles = []     # heap of local handles given back by detached links
        self.next_handle = 0       # lowest local handle never used
        self.unsettled = {}        # outgoing delivery-id -> (link, message, queue)
        self.accepts = []          # incoming delivery-ids to settle as accepted
        self.other_outcomes = []   # (delivery-id, outcome) to settle otherwise
        self.wants_credit = []     # incoming links to top up
        self.blocked = []          # outgoing links waiting for the remote incoming window
        self.pending_frames = None  # [frames, offset, max_frame, link]: a delivery's frames the
                                    # peer's incoming window has not let through yet
        self.ended = False

    # -- framing helpers ---------------------------------------------------------------
    def send(self, code, fields, payload=b""):
        self.connection.write(encode_frame(self.channel, code, fields, payload))

    def send_begin(self):
        self.send(BEGIN, [ushort(self.remote_channel), uint(self.next_outgoing_id), uint(WINDOW),
                          uint(WINDOW), uint(self.broker.handle_max)])

    def flow_fields(self):
        return [uint(self.next_incoming_id), uint(WINDOW), uint(self.next_outgoing_id), uint(WINDOW)]

    def send_flow(self, link=None, drain=False):
        fields = self.flow_fields()
        if link is not None:
            fields += [uint(link.handle), uint(link.delivery_count), uint(link.credit), None, drain]
        self.send(FLOW, fields)

    def mark_dirty(self):
        self.connection.dirty.add(self)

    # -- incoming performatives ---------------------------------------------------------------
    def on_transfer(self, handle, delivery_id, settled, more, aborted, payload):
        """One transfer frame, as codec.decode_transfer gives it (checked; delivery_id None if absent)."""
        link = self.links.get(handle)
        self.next_incoming_id = (self.next_incoming_id + 1) & MASK32
        if link is None or link.is_sender:
            self.fail(errors.UNATTACHED_HANDLE, "transfer on unattached handle %s" % (handle,))
            return
        if link.detached:
            return   # sent before the peer saw our detach (e.g. of a refused link): dropped
        link.on_transfer(delivery_id, settled, more, aborted, payload)

    def on_flow(self, fields):
        n = len(fields)
        nii = fields[0] if n > 0 and fields[0] is not None else 0
        iw = fields[1] if n > 1 and fields[1] is not None else 0
        was_blocked = self.remote_incoming_window <= 0 or self.pending_frames is not None
        self.remote_incoming_window = (nii + iw - self.next_outgoing_id)
        if self.pending_frames is not None:
            self.send_pending()
        handle = fields[4] if n > 4 else None
        if handle is not None:
            link = self.links.get(handle)
            if link is None:
                self.fail(errors.UNATTACHED_HANDLE, "flow on unattached handle %s" % (handle,))
                return
            if not link.detached:   # else: sent before the peer saw our detach
                link.on_flow(fields)
        elif n > 9 and fields[9]:
            self.send(FLOW, self.flow_fields())
        if was_blocked and self.remote_incoming_window > 0 and self.pending_frames is None:
            self.resume_outgoing()

    def on_disposition(self, fields):
        n = len(fields)
        role = fields[0]
        first = fields[1]
        last = fields[2] if n > 2 and fields[2] is not None else first
        settled = fields[3] if n > 3 and fields[3] is not None else False
        state = fields[4] if n > 4 else None
        if not role:
            return  # the peer settling its own transfers to us: we settled them already
        outcome = None
        if state is not None:
            outcome = OUTCOMES.get(getattr(state, "descriptor", None))
            if outcome is None:
                if not settled:
                    return  # a non-terminal state (received): nothing to do yet
        elif not settled:
            return
        else:
            outcome = "accepted"
        unsettled = self.unsettled
        if (last - first) & MASK32 < 64 or len(unsettled) > ((last - first) & MASK32):
            ids = [(first + i) & MASK32 for i in range(((last - first) & MASK32) + 1)]
        else:
            ids = [d for d in unsettled if ((d - first) & MASK32) <= ((last - first) & MASK32)]
        done = []
        for did in ids:
            entry = unsettled.pop(did, None)
            if entry is None:
                continue
            link, msg, queue = entry
            link.unsettled_count -= 1
            done.append(did)
            if queue is None:
                continue      # browsed: the message stays on its queue whatever the outcome
            if outcome == "accepted":
                queue.dequeued(msg)
            elif outcome == "released":
                queue.release(msg)
            elif outcome == "rejected":
                queue.reject(msg)
            else:  # modified
                value = state.value if isinstance(state.value, list) else []
                failed = bool(value[0]) if len(value) > 0 else False
                annotations = value[2] if len(value) > 2 else None
                if annotations:
                    self.broker.log.debug("modified annotations on %s ignored", queue.name)
                queue.release(msg, count_failure=failed)
                if failed and msg.durable:
                    self.broker.nodes.released(queue, msg)
        if not settled and done:
            # The peer waits for us to settle (rcv-settle-mode second): confirm with the same state,
            # as the deliveries' sender (role false).
            for did in done:
                self.send(DISPOSITION, [False, uint(did), None, True, state])

    def on_attach(self, fields):
        handle = fields[1]
        if handle in self.links:
            self.fail(errors.HANDLE_IN_USE, "attach on handle %s already in use" % handle)
            return
        broker = self.broker
        if handle > broker.handle_max:
            # Spec 2.7.2 (begin, handle-max): a handle beyond the partner's range is a framing-error.
            raise errors.FramingError("attach on handle %d beyond handle-max %d (max-links-per-session)"
                                      % (handle, broker.handle_max))
        conn = self.connection
        limit = broker.options.max_links_per_connection
        if conn.link_count >= 2 * limit:
            # Refused links stay until the peer detaches them; one that never does is cut off.
            raise errors.ResourceLimitExceeded(
                "%d links attached or refused and not detached (max-links-per-connection %d)"
                % (conn.link_count, limit))
        if self.free_handles:
            local = heapq.heappop(self.free_handles)
        else:
            local = self.next_handle
            self.next_handle += 1
        role = fields[2]
        link = (OutgoingLink if role else IncomingLink)(self, local, fields)
        self.links[handle] = link
        self.local_handles[local] = link
        conn.link_count += 1
        if conn.link_count > limit:
            error = errors.ResourceLimitExceeded("connection has more than %d links "
                                                 "(max-links-per-connection)" % limit)
            link.refuse(error, log=not conn.link_limit_logged)
            conn.link_limit_logged = True
            return
        if role:
            self.senders[local] = link
        link.attach()

    def on_detach(self, fields):
        handle = fields[0]
        link = self.links.get(handle)
        if link is None:
            self.fail(errors.UNATTACHED_HANDLE, "detach on unattached handle %s" % (handle,))
            return
        closed = fields[1] if len(fields) > 1 else False
        link.on_detach(bool(closed))

    def link_detached(self, link):
        if self.links.get(link.remote_handle) is link:
            del self.links[link.remote_handle]
            self.connection.link_count -= 1
        if self.local_handles.get(link.handle) is link:
            del self.local_handles[link.handle]
            heapq.heappush(self.free_handles, link.handle)
        self.senders.pop(link.handle, None)

    def on_end(self, fields):
        if not self.ended:
            self.abandon()
            self.send(END, [])
        self.connection.session_ended(self)

    # -- outcomes for incoming deliveries -----------------------------------------------------
    def settle_incoming(self, delivery_id, outcome):
        if outcome is None:
            self.accepts.append(delivery_id)
        else:
            self.other_outcomes.append((delivery_id, outcome))
        self.connection.dirty.add(self)

    def want_credit(self, link):
        self.wants_credit.append(link)
        self.connection.dirty.add(self)

    def flush(self):
        """Send the dispositions and credit this burst left behind, as few frames as possible."""
        if self.ended:
            return
        accepts = self.accepts
        if accepts:
            first = last = accepts[0]
            for did in accepts[1:]:
                if did == ((last + 1) & MASK32):
                    last = did
                    continue
                self.send(DISPOSITION, [True, uint(first), uint(last), True, ACCEPTED])
                first = last = did
            self.send(DISPOSITION, [True, uint(first), uint(last), True, ACCEPTED])
            accepts.clear()
        if self.other_outcomes:
            for did, outcome in self.other_outcomes:
                self.send(DISPOSITION, [True, uint(did), None, True, outcome])
            self.other_outcomes.clear()
        if self.wants_credit:
            for link in self.wants_credit:
                link.refill()
            self.wants_credit.clear()

    # -- outgoing ------------------------------------------------------------------------------
    def write_transfer(self, frames, max_frame, link):
        """Write one delivery's transfer frames (from encode_transfer_frames: every frame but the
        last is exactly max_frame bytes) as far as the peer's incoming window allows; the rest
        follow as its flows open the window. Links take nothing new while some are held back."""
        n = (len(frames) + max_frame - 1) // max_frame
        if n <= self.remote_incoming_window and self.pending_frames is None:
            self.connection.write(frames)
            self.next_outgoing_id = (self.next_outgoing_id + n) & MASK32
            self.remote_incoming_window -= n
            return
        self.pending_frames = [frames, 0, max_frame, link]
        self.send_pending()

    def send_pending(self):
        frames, offset, max_frame, _ = self.pending_frames
        window = self.remote_incoming_window
        if window <= 0:
            return
        end = min(len(frames), offset + window * max_frame)
        n = (end - offset + max_frame - 1) // max_frame
        self.connection.write(frames[offset:end])
        self.next_outgoing_id = (self.next_outgoing_id + n) & MASK32
        self.remote_incoming_window -= n
        if end == len(frames):
            self.pending_frames = None
        else:
            self.pending_frames[1] = end

    def drop_pending(self, link):
        """``link`` is going: the rest of its held-back delivery is never sent (the peer drops a
        delivery left incomplete by a detach)."""
        if self.pending_frames is not None and self.pending_frames[3] is link:
            self.pending_frames = None
            if self.remote_incoming_window > 0:
                self.connection.loop.call_soon(self.resume_outgoing)

    def resume_outgoing(self):
        for link in list(self.senders.values()):
            link.pump()

    # -- ending --------------------------------------------------------------------------------
    def fail(self, condition, description):
        """End this session with an error; the connection and its other sessions carry on."""
        if self.ended:
            return
        self.broker.log.warning("Session %d on %s ended: %s: %s", self.channel,
                                self.connection.address, condition, description)
        self.abandon()
        self.send(END, [make_error(condition, description)])
        # The channel stays taken (its frames ignored) until the peer answers with its own end.

    def abandon(self):
        """The session is gone: release what its links held and forget them."""
        if self.ended:
            return
        self.ended = True
        self.pending_frames = None
        for link in list(self.local_handles.values()):
            link.abandon()
        # Deliveries a consumer never settled go back to their queues, counted as a failed attempt.
        for link, msg, queue in self.unsettled.values():
            if queue is None:
                continue      # browsed
            queue.release(msg, count_failure=True)
            if msg.durable:
                self.broker.nodes.released(queue, msg)
        self.unsettled.clear()
        self.connection.link_count -= len(self.links)
        self.links.clear()
        self.local_handles.clear()
        self.senders.clear()
        self.broker.nodes.session_ended(self)


__all__ = ["Session", "AmqpError"]
