# cython: language_level=3
"""Sessions, links and incoming deliveries of the engine (see endpoints.pxd and docs/ENGINE.md): windows,
handles, credit, settlement both ways, holds.  Their connection is an engine_core.ConnectionCore (the
Engine of cypid.pyx.engine).
"""
cimport cython
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from libc.stdint cimport int32_t, int64_t, uint32_t, uint64_t

from cypid.pyx.amqp cimport (ATTACH, DETACH, DISPOSITION, END, FLOW, RCV_FIRST, RCV_SECOND, RECEIVED,
                             SND_MIXED, SND_SETTLED, error_from, error_value, outcome_code)
from cypid.pyx.encoder cimport WriteBuffer, wb_write
from cypid.pyx.engine_core cimport (L_ATTACH_RCVD, L_ATTACH_SENT, L_ATTACHED, L_DETACH_SENT, L_DETACHED,
                                    MAX_TAG, S_BEGIN_SENT, S_END_SENT, S_ENDED, S_MAPPED, ConnectionCore, Handler,
                                    _bool_field, _field, _frames_per_message, _take_number, _uint_field)
from cypid.pyx.frames cimport write_transfer_frames, write_transfer_frames2
from cypid.pyx.frb cimport load_u32, load_u64, store_u32, store_u64

from cypid.pyx import amqp
from cypid.pyx.engine_core import EngineError, ProtocolViolation
from cypid.pyx.values import ubyte, uint, ulong

cdef object _ACCEPTED = amqp.ACCEPTED_STATE
cdef uint32_t MASK32 = 0xFFFFFFFF

# =================================================================================================
# Sessions
# =================================================================================================

@cython.final
cdef class Session:
    """One session of an Engine (made by ``Engine.begin`` or by the peer's begin)."""

    def __repr__(self):
        return "<Session channel=%d remote=%d state=%d>" % (self.channel, self.remote_channel, self.state)

    @property
    def links(self):
        """The attached links by local handle (a copy)."""
        return dict(self._links)

    @property
    def outstanding(self):
        """Outgoing deliveries not settled by the peer yet (ring slots in use)."""
        cdef Py_ssize_t n = 0, i
        for i in range(self._uhead, len(self._ulinks)):
            if self._ulinks[i] is not None:
                n += 1
        return n

    cdef int _write(self, int code, list fields) except -1:
        return self.engine._write_frame(self.channel, code, fields)

    cdef list _flow_fields(self):
        self._in_room = self.incoming_window
        return [uint(self.next_incoming_id), uint(self.incoming_window), uint(self.next_outgoing_id),
                uint(0x7FFFFFFF)]

    def flow(self, echo=False):
        """A session flow (our windows)."""
        fields = self._flow_fields()
        if echo:
            fields += [None, None, None, None, None, True]
        self._write(FLOW, fields)

    cdef int _queue_settle(self, uint32_t did, object state, bint settled) except -1:
        if state is None and settled:
            self._pending_accepts += 1
            if self._run_open:
                if did == <uint32_t>(self._run_last + 1):
                    self._run_last = did
                else:
                    self._accepts.append((self._run_first, self._run_last))
                    self._run_first = self._run_last = did
            else:
                self._run_open = True
                self._run_first = self._run_last = did
        else:
            self._others.append((did, _ACCEPTED if state is None else state, settled))
        if not self._dirty:
            self._dirty = True
            self.engine._dirty.append(self)
        return 0

    def settle(self, uint32_t delivery_id, state=None, bint settled=True):
        """Settle an incoming delivery (of a batch link with auto_accept off): accepted when ``state``
        is None.  Accepts go out in ranges with the next output."""
        self._queue_settle(delivery_id, state, settled)

    def flush_settles(self):
        """Write the accepts held back by ``settle_batch`` with the next output."""
        if self._pending_accepts:
            self._force = True
            if not self._dirty:
                self._dirty = True
                self.engine._dirty.append(self)

    cdef int _flush(self, bint force=False) except -1:
        self._dirty = False
        if self.state != S_MAPPED:
            self._accepts = []
            self._run_open = False
            self._pending_accepts = 0
            self._others = []
            self._echo_settles = []
            return 0
        if force or self._force or self._pending_accepts >= self.settle_batch:
            self._force = False
            if self._run_open:
                self._accepts.append((self._run_first, self._run_last))
                self._run_open = False
            for first, last in self._accepts:
                self._write(DISPOSITION, [True, uint(first), uint(last) if last != first else None, True,
                                          _ACCEPTED])
            self._accepts = []
            self._pending_accepts = 0
        if self._others:
            for did, state, settled in self._others:
                self._write(DISPOSITION, [True, uint(did), None, settled, state])
            self._others = []
        if self._echo_settles:
            for first, last, state in self._echo_settles:
                self._write(DISPOSITION, [False, uint(first), uint(last), True, state])
            self._echo_settles = []
        if self._in_room < self.incoming_window // 2:
            self._write(FLOW, self._flow_fields())
        return 0

    @property
    def pending_settles(self):
        """Settlements queued and not written yet."""
        return len(self._others) + self._pending_accepts

    # -- outgoing ---------------------------------------------------------------------------------
    cdef int _track(self, Link link, object context, bint unsettled, uint32_t did) except -1:
        if self._uhead >= len(self._ulinks):
            if not unsettled:
                return 0
            if self._uhead:
                self._ulinks = []
                self._uctx = []
                self._uhead = 0
            self._ubase = did
        if unsettled:
            self._ulinks.append(link)
            self._uctx.append(context)
        else:
            self._ulinks.append(None)
            self._uctx.append(None)
        return 0

    cdef int _write_frames(self, WriteBuffer frames, Py_ssize_t nframes, Link link) except -1:
        """Write a delivery's frames as far as the peer's incoming window allows; keep the rest."""
        self._pending = PyBytes_FromStringAndSize(frames.buf, frames.len)
        self._pending_off = 0
        self._pending_link = link
        return self._write_pending()

    cdef int _write_pending(self) except -1:
        cdef const char* p = PyBytes_AS_STRING(self._pending)
        cdef Py_ssize_t total = PyBytes_GET_SIZE(self._pending)
        cdef Py_ssize_t start = self._pending_off, off = self._pending_off
        cdef uint32_t n = 0
        while off < total and self.remote_incoming_window > 0:
            off += load_u32(p + off)
            self.remote_incoming_window -= 1
            n += 1
        if off > start:
            wb_write(self.engine._out, p + start, off - start)
            self.next_outgoing_id = <uint32_t>(self.next_outgoing_id + n)
        if off >= total:
            self._pending = None
            self._pending_link = None
        else:
            self._pending_off = off
        return 0

    # -- incoming performatives -------------------------------------------------------------------
    cdef int _on_frame(self, int code, list fields) except -1:
        if self.state == S_END_SENT:
            if code == END:
                self.state = S_ENDED
                self.engine._release_channel(self.channel, self.remote_channel, self)
                if not self._notified:
                    self._terminate(error_from(_field(fields, 0)))
            return 0
        if self.state != S_MAPPED:
            return 0
        if code == FLOW:
            return self._on_flow(fields)
        if code == DISPOSITION:
            return self._on_disposition(fields)
        if code == ATTACH:
            return self._on_attach(fields)
        if code == DETACH:
            return self._on_detach(fields)
        if code == END:
            return self._on_end(fields)
        raise ProtocolViolation(amqp.FRAMING_ERROR, "unexpected performative 0x%x on a session" % code)

    cdef int _on_attach(self, list fields) except -1:
        cdef Link link
        name = _field(fields, 0)
        if not isinstance(name, str):
            raise ProtocolViolation(amqp.DECODE_ERROR, "attach.name must be a string, not %r" % (name,))
        handle = _uint_field(fields, 1, None, 0xFFFFFFFF, "attach.handle")
        if handle is None:
            raise ProtocolViolation(amqp.DECODE_ERROR, "attach: mandatory field handle is missing")
        peer_is_receiver = _bool_field(fields, 2, "attach.role")
        if handle in self._remote_links:
            return self._fail(amqp.HANDLE_IN_USE, "attach on handle %d already in use" % handle)
        if handle > self.handle_max:      # the spec: a handle beyond handle-max is a framing error
            raise ProtocolViolation(amqp.FRAMING_ERROR, "attach on handle %d beyond handle-max %d"
                                    % (handle, self.handle_max))
        link = self._attaching.pop(name, None)
        if link is not None and link.is_sender == peer_is_receiver:
            link.state = L_ATTACHED
        else:
            if link is not None:
                return self._fail(amqp.ERRANT_LINK, "attach for link %r with the wrong role" % name)
            try:
                link = self._new_link(name, peer_is_receiver)
            except EngineError as e:
                return self._fail(amqp.RESOURCE_LIMIT_EXCEEDED, str(e))
            link.state = L_ATTACH_RCVD
        link.remote_handle = handle
        link.has_remote = True
        self._remote_links[handle] = link
        link.remote_snd_settle_mode = _uint_field(fields, 3, SND_MIXED, 2, "attach.snd-settle-mode")
        link.remote_rcv_settle_mode = _uint_field(fields, 4, RCV_FIRST, 1, "attach.rcv-settle-mode")
        link.remote_source = _field(fields, 5)
        link.remote_target = _field(fields, 6)
        link.remote_max_message_size = _uint_field(fields, 10, 0, 0xFFFFFFFFFFFFFFFF, "attach.max-message-size")
        link.remote_offered_capabilities = _field(fields, 11)
        link.remote_desired_capabilities = _field(fields, 12)
        props = _field(fields, 13)
        link.remote_properties = props if isinstance(props, dict) else {}
        if not link.is_sender:
            link.delivery_count = _uint_field(fields, 9, 0, 0xFFFFFFFF, "attach.initial-delivery-count")
        if link.state == L_ATTACH_RCVD:
            link.snd_settle_mode = link.remote_snd_settle_mode
            link.rcv_settle_mode = link.remote_rcv_settle_mode
        self.engine.handler.on_attach(link)
        return 0

    cdef Link _new_link(self, object name, bint is_sender):
        cdef Link link
        cdef uint32_t limit = self.handle_max
        cdef int64_t handle
        if self.remote_handle_max < limit:
            limit = self.remote_handle_max
        handle = _take_number(self._free_handles, &self._next_handle, limit)
        if handle < 0:
            raise EngineError("no free link handle (handle-max %d)" % limit)
        link = Link.__new__(Link)
        link.session = self
        link.name = name
        link.handle = handle
        link.is_sender = is_sender
        link.max_message_size = self.engine.max_message_size
        link.auto_accept = True
        link.keep = True
        link.strict_seq = True
        link.messages = []
        link.delivery_ids = []
        self._links[handle] = link
        return link

    def attach(self, name, bint is_sender, source=None, target=None, int snd_settle_mode=SND_MIXED,
               int rcv_settle_mode=RCV_FIRST, max_message_size=None, properties=None,
               offered_capabilities=None, desired_capabilities=None, bint batch=False):
        """Attach a link (on_attach comes with the peer's answer).  ``batch``: a receiving link whose
        messages are kept in C and reported once per read burst (on_messages)."""
        cdef Link link
        if self.state != S_MAPPED and self.state != S_BEGIN_SENT:
            raise EngineError("the session is not open")
        if name in self._attaching:
            raise EngineError("a link named %r is attaching already" % (name,))
        link = self._new_link(name, is_sender)
        link.state = L_ATTACH_SENT
        link.source = source
        link.target = target
        link.snd_settle_mode = snd_settle_mode
        link.rcv_settle_mode = rcv_settle_mode
        link.batch = batch
        if max_message_size is not None:
            link.max_message_size = max_message_size
        link.remote_properties = {}
        link._write_attach_fields(properties, offered_capabilities, desired_capabilities)
        self._attaching[name] = link
        return link

    cdef int _on_flow(self, list fields) except -1:
        cdef Link link
        nii = _uint_field(fields, 0, 0, 0xFFFFFFFF, "flow.next-incoming-id")
        iw = _uint_field(fields, 1, 0, 0xFFFFFFFF, "flow.incoming-window")
        self.remote_outgoing_window = _uint_field(fields, 3, 0, 0xFFFFFFFF, "flow.outgoing-window")
        handle = _uint_field(fields, 4, None, 0xFFFFFFFF, "flow.handle")
        echo = _bool_field(fields, 9, "flow.echo")
        was_closed = self.remote_incoming_window <= 0 or self._pending is not None
        self.remote_incoming_window = <int64_t>nii + <int64_t>iw - <int64_t>self.next_outgoing_id
        if nii > self.next_outgoing_id + 0x80000000:      # the peer's id wrapped past ours
            self.remote_incoming_window -= 0x100000000
        if self._pending is not None and self.remote_incoming_window > 0:
            self._write_pending()
        if handle is None:
            if echo:
                self._write(FLOW, self._flow_fields())
        else:
            link = self._remote_links.get(handle)
            if link is None:
                return self._fail(amqp.UNATTACHED_HANDLE, "flow on unattached handle %d" % handle)
            if link.state == L_ATTACHED or link.state == L_ATTACH_RCVD:
                dc = _uint_field(fields, 5, None, 0xFFFFFFFF, "flow.delivery-count")
                lc = _uint_field(fields, 6, 0, 0xFFFFFFFF, "flow.link-credit")
                link.available = _uint_field(fields, 7, 0, 0xFFFFFFFF, "flow.available")
                link.drain = _bool_field(fields, 8, "flow.drain")
                link.flow_properties = _field(fields, 10)
                if link.is_sender:
                    credit = ((0 if dc is None else dc) + lc - link.delivery_count) & MASK32
                    link.credit = credit if credit <= 0x7FFFFFFF else 0
                else:
                    if dc is not None:
                        link.delivery_count = dc
                    link.credit = lc
                self.engine.handler.on_flow(link)
                if echo and link.state == L_ATTACHED:
                    link._send_flow(False)
        if was_closed and self.remote_incoming_window > 0 and self._pending is None:
            self.engine.handler.on_session_flow(self)
        return 0

    cdef int _on_disposition(self, list fields) except -1:
        cdef Link link, group = None
        cdef Py_ssize_t count = 0, ringlen, off, idx
        cdef int64_t start, end
        cdef uint32_t first, last
        cdef int code
        peer_is_receiver = _bool_field(fields, 0, "disposition.role")
        first = _uint_field(fields, 1, None, 0xFFFFFFFF, "disposition.first") if _field(fields, 1) is not None \
            else 0
        if _field(fields, 1) is None:
            raise ProtocolViolation(amqp.DECODE_ERROR, "disposition: mandatory field first is missing")
        last = _uint_field(fields, 2, first, 0xFFFFFFFF, "disposition.last")
        settled = _bool_field(fields, 3, "disposition.settled")
        state = _field(fields, 4)
        if not peer_is_receiver:
            return 0        # the peer settling its own deliveries (rcv-settle-mode second): done
        code = outcome_code(state)
        if code == RECEIVED or (code == 0 and not settled):
            return 0        # not terminal
        handler = self.engine.handler
        ringlen = len(self._ulinks) - self._uhead
        if ringlen > 0:
            start = <int32_t>(first - self._ubase)
            end = start + <int64_t>(<uint32_t>(last - first))
            if start < 0:
                start = 0
            if end >= ringlen:
                end = ringlen - 1
            for off in range(start, end + 1):
                idx = self._uhead + off
                obj = self._ulinks[idx]
                if obj is None:
                    continue
                link = <Link>obj
                ctx = self._uctx[idx]
                self._ulinks[idx] = None
                self._uctx[idx] = None
                link.unsettled -= 1
                if ctx is None:
                    if link is group:
                        count += 1
                        continue
                    if group is not None:
                        handler.on_settled(group, count, code, state)
                    group = link
                    count = 1
                else:
                    if group is not None:
                        handler.on_settled(group, count, code, state)
                        group = None
                    (<Handler>handler).deliver_outcome(link, ctx, code, state)
            if group is not None:
                handler.on_settled(group, count, code, state)
            self._advance_ring()
        if not settled:
            # The peer receives in rcv-settle-mode second: it waits for our settlement.
            self._echo_settles.append((first, last, state))
            if not self._dirty:
                self._dirty = True
                self.engine._dirty.append(self)
        return 0

    cdef int _advance_ring(self) except -1:
        cdef Py_ssize_t n = len(self._ulinks)
        while self._uhead < n and self._ulinks[self._uhead] is None:
            self._uhead += 1
            self._ubase = <uint32_t>(self._ubase + 1)
        if self._uhead >= n:
            self._ulinks = []
            self._uctx = []
            self._uhead = 0
        elif self._uhead > 4096 and self._uhead * 2 > n:
            del self._ulinks[:self._uhead]
            del self._uctx[:self._uhead]
            self._uhead = 0
        return 0

    cdef int _on_detach(self, list fields) except -1:
        cdef Link link
        handle = _uint_field(fields, 0, None, 0xFFFFFFFF, "detach.handle")
        link = self._remote_links.get(handle) if handle is not None else None
        if link is None:
            return self._fail(amqp.UNATTACHED_HANDLE, "detach on unattached handle %s" % (handle,))
        err = error_from(_field(fields, 2))
        if link.state != L_DETACH_SENT:
            link._write_detach(None)
        link.state = L_DETACHED
        self._release_handle(link)
        if not link._notified:
            link._terminate(err)
        return 0

    cdef int _release_handle(self, Link link) except -1:
        if self._links.get(link.handle) is link:
            del self._links[link.handle]
            self._free_handles.append(link.handle)
        if link.has_remote and self._remote_links.get(link.remote_handle) is link:
            del self._remote_links[link.remote_handle]
        if self._attaching.get(link.name) is link:
            del self._attaching[link.name]
        if self._last is link:
            self._last = None
        return 0

    cdef int _on_end(self, list fields) except -1:
        err = error_from(_field(fields, 0))
        self._write(END, [])
        self.state = S_ENDED
        self.engine._release_channel(self.channel, self.remote_channel, self)
        self._terminate(err)
        return 0

    def end(self, condition=None, description=None, info=None):
        """Write our end (with an error when ``condition`` is given); on_end comes with the peer's."""
        if self.state != S_MAPPED and self.state != S_BEGIN_SENT:
            return
        self._flush(True)
        self._write(END, [error_value(condition, description, info)] if condition else [])
        self.state = S_END_SENT
        self.ended_here = True
        self._pending = None

    cdef int _fail(self, str condition, str description) except -1:
        """End this session with an error (the connection and its other sessions carry on)."""
        if self.state != S_MAPPED:
            return 0
        self._write(END, [error_value(condition, description)])
        self.state = S_END_SENT
        self.ended_here = True
        self._terminate((condition, description, None))
        return 0

    cdef int _terminate(self, object error) except -1:
        cdef Link link
        if self._notified:
            return 0
        self._notified = True
        if self.state != S_END_SENT:
            self.state = S_ENDED
        self._pending = None
        self._pending_link = None
        links = list(self._links.values())
        for link in links:
            link.state = L_DETACHED     # the session's end ends them all (a detach of ours waits no more)
            if not link._notified:
                link._terminate(error)
        self._links.clear()
        self._remote_links.clear()
        self._attaching.clear()
        self._last = None
        self._ulinks = []
        self._uctx = []
        self._uhead = 0
        self.engine.handler.on_end(self, error)
        return 0


# =================================================================================================
# Links
# =================================================================================================

@cython.final
cdef class Link:
    """One link of a Session (made by ``Session.attach`` or by the peer's attach)."""

    def __repr__(self):
        return "<Link %r handle=%d %s state=%d credit=%d>" % (
            self.name, self.handle, "sender" if self.is_sender else "receiver", self.state, self.credit)

    # -- attach -----------------------------------------------------------------------------------
    cdef int _write_attach_fields(self, object properties, object offered_capabilities,
                                  object desired_capabilities) except -1:
        self.session._write(ATTACH, [
            self.name, uint(self.handle), not self.is_sender, ubyte(self.snd_settle_mode),
            ubyte(self.rcv_settle_mode), self.source, self.target, None, None,
            uint(self.delivery_count) if self.is_sender else None,
            ulong(self.max_message_size) if self.max_message_size else None,
            offered_capabilities, desired_capabilities, properties])
        return 0

    cdef int _write_attach(self) except -1:
        self._write_attach_fields(None, None, None)
        return 0

    def accept(self, source=None, target=None, snd_settle_mode=None, rcv_settle_mode=None,
               max_message_size=None, properties=None, offered_capabilities=None, bint batch=False):
        """Answer the peer's attach: the link is attached with these termini (the peer's when None)
        and settle modes (the peer's, which the engine honours, when None)."""
        if self.state != L_ATTACH_RCVD:
            raise EngineError("link %r is not waiting for an answer" % (self.name,))
        self.source = self.remote_source if source is None else source
        self.target = self.remote_target if target is None else target
        if snd_settle_mode is not None:
            self.snd_settle_mode = snd_settle_mode
        if rcv_settle_mode is not None:
            self.rcv_settle_mode = rcv_settle_mode
        if max_message_size is not None:
            self.max_message_size = max_message_size
        self.batch = batch
        self._write_attach_fields(properties, offered_capabilities, None)
        self.state = L_ATTACHED

    def refuse(self, condition, description=None, info=None):
        """Answer the peer's attach with a null terminus on our side, then detach with the error."""
        if self.state != L_ATTACH_RCVD:
            raise EngineError("link %r is not waiting for an answer" % (self.name,))
        self._answer_null()
        self.detach(condition, description, info)

    cdef int _answer_null(self) except -1:
        """Answer the peer's attach with a null terminus on our side (a detach follows)."""
        self.source = None if self.is_sender else self.remote_source
        self.target = self.remote_target if self.is_sender else None
        self._write_attach()
        self.state = L_ATTACHED
        return 0

    cdef int _write_detach(self, object err) except -1:
        self.session._write(DETACH, [uint(self.handle), True] + ([err] if err is not None else []))
        return 0

    def detach(self, condition=None, description=None, info=None):
        """Write our detach (closed, with an error when ``condition`` is given); on_detach comes
        with the peer's."""
        if self.state != L_ATTACHED and self.state != L_ATTACH_SENT:
            return
        self.session._flush(True)       # settlements first: the peer forgets the link's at the detach
        self._write_detach(error_value(condition, description, info) if condition else None)
        self.state = L_DETACH_SENT
        self.detached_here = True
        s = self.session
        if s._pending_link is self:
            s._pending = None          # the peer drops a delivery a detach leaves incomplete
            s._pending_link = None
        if not self.has_remote:
            s._attaching.pop(self.name, None)

    cdef int _fail(self, str condition, str description) except -1:
        """Detach with an error found here (the session carries on)."""
        if self.state != L_ATTACHED and self.state != L_ATTACH_RCVD:
            return 0
        self._in_partial = False
        self._partial = None
        self._partial_tag = None
        if self.state == L_ATTACH_RCVD:
            self._answer_null()         # the spec: our attach before our detach
        self.detach(condition, description)
        self._terminate((condition, description, None))
        return 0

    cdef int _terminate(self, object error) except -1:
        if self._notified:
            return 0
        self._notified = True
        self._in_partial = False
        self._partial = None
        self.session.engine.handler.on_detach(self, error)
        self.take_unsettled()
        return 0

    def settle_sent(self, uint32_t delivery_id, object context, object state):
        """Settle our delivery ``delivery_id`` (sent with ``context``) from our side while the peer
        has not: a disposition (role sender, settled, ``state``) goes out with the next output and
        the delivery is forgotten. False (nothing done) when it is not ours unsettled any more."""
        cdef Session s = self.session
        cdef int64_t off = <int32_t>(delivery_id - s._ubase)
        cdef Py_ssize_t idx
        if off < 0 or off >= len(s._ulinks) - s._uhead:
            return False
        idx = s._uhead + <Py_ssize_t>off
        if s._ulinks[idx] is not self or s._uctx[idx] is not context:
            return False
        s._ulinks[idx] = None
        s._uctx[idx] = None
        self.unsettled -= 1
        s._advance_ring()
        s._echo_settles.append((delivery_id, delivery_id, state))
        if not s._dirty:
            s._dirty = True
            s.engine._dirty.append(s)
        return True

    def take_unsettled(self):
        """The contexts of our deliveries on this link the peer has not settled (None for those sent
        without one); they are forgotten.  For on_detach: give them back to where they came from."""
        cdef Session s = self.session
        cdef Py_ssize_t i
        out = []
        if not self.unsettled:
            return out
        for i in range(s._uhead, len(s._ulinks)):
            if s._ulinks[i] is self:
                out.append(s._uctx[i])
                s._ulinks[i] = None
                s._uctx[i] = None
        self.unsettled = 0
        s._advance_ring()
        return out

    # -- credit -----------------------------------------------------------------------------------
    cdef int _send_flow(self, bint echo) except -1:
        if self.session._dirty:
            self.session._flush()       # settlements queued before this credit go first
        fields = self.session._flow_fields()
        fields += [uint(self.handle), uint(self.delivery_count), uint(<uint32_t>self.credit if self.credit > 0 else 0),
                   uint(self.available) if self.is_sender else None, self.drain if not self.is_sender or self.drain else None,
                   True if echo else None]
        self.session._write(FLOW, fields)
        return 0

    def flow(self, credit=None, drain=None, echo=False):
        """Receiver: grant ``credit`` (the total outstanding), ask to ``drain``.  Sender: tell the
        peer our delivery-count, credit and ``available`` (set it first)."""
        if self.state != L_ATTACHED:
            raise EngineError("link %r is not attached" % (self.name,))
        if not self.is_sender:
            if credit is not None:
                self.credit = credit
            if drain is not None:
                self.drain = drain
        self._send_flow(echo)

    def set_available(self, uint32_t available):
        self.available = available

    def drained(self):
        """Sender with nothing (more) to send while the peer drains: use the credit up and say so."""
        if self.is_sender and self.drain and self.credit > 0 and self.state == L_ATTACHED:
            self.delivery_count = <uint32_t>(self.delivery_count + <uint32_t>self.credit)
            self.credit = 0
            self._send_flow(False)

    # -- receiving --------------------------------------------------------------------------------
    cdef int _deliver(self, const char* data, Py_ssize_t n, bint settled, bint has_id, uint32_t did,
                      object tag) except -1:
        cdef uint64_t got
        cdef Delivery d
        cdef ConnectionCore engine = self.session.engine
        self.credit -= 1
        self.delivery_count = <uint32_t>(self.delivery_count + 1)
        self.received += 1
        self.bytes_received += <uint64_t>n
        if self.batch:
            if self.check_seq:
                got = load_u64(data + n - 8) if n >= 8 else 0xFFFFFFFFFFFFFFFF
                if got != self.next_seq and (self.strict_seq or got < self.next_seq):
                    self.seq_errors += 1
                    if self.seq_error is None:
                        self.seq_error = "Sequence error: expected n%s%d but got %d" % (
                            "==" if self.strict_seq else ">=", self.next_seq, got)
                if got != 0xFFFFFFFFFFFFFFFF:
                    self.next_seq = got + 1
            if self.keep:
                self.messages.append(PyBytes_FromStringAndSize(data, n))
                if not self.auto_accept:
                    self.delivery_ids.append(None if settled else did)
            if not settled and self.auto_accept:
                self.session._queue_settle(did, None, self.rcv_settle_mode != RCV_SECOND)
            if not self._touched:
                self._touched = True
                engine._touched.append(self)
            return 0
        d = Delivery.__new__(Delivery)
        d.link = self
        d.id = did
        d.tag = tag
        d.settled = settled
        if self._tstate is not None:
            d.state = self._tstate
            self._tstate = None
        engine.handler.deliver_message(self, d, data, n)
        d._stage = 1
        if d.holds == 0:
            d._settle()
        return 0

    def take_messages(self):
        """(messages, delivery_ids) kept since the last call (batch links); both start afresh."""
        msgs, ids = self.messages, self.delivery_ids
        self.messages = []
        self.delivery_ids = []
        return msgs, ids

    @property
    def in_partial(self):
        return self._in_partial

    # -- sending ----------------------------------------------------------------------------------
    cdef int _sendable(self, Py_ssize_t frames) noexcept:
        cdef Session s = self.session
        if self.state != L_ATTACHED or not self.is_sender or self.credit <= 0 or s._pending is not None:
            return 0
        if s.state != S_MAPPED or s.remote_incoming_window < 1:
            return 0
        if s.engine._out.len >= s.engine.output_limit:
            s.engine._out_full = True
            return 0
        return 1

    @property
    def can_send(self):
        """Credit, the peer's session window and the output bound all allow a delivery now."""
        return self._sendable(1) == 1

    def send(self, data, tag=None, settled=None, context=None):
        """Send one delivery of ``data`` (an encoded message); returns its delivery-id, or -1 when
        credit, the peer's window or the output bound do not allow it now.  The settle mode our attach
        announced decides ``settled`` (asked for only in mode mixed).  An unsettled delivery's outcome
        comes back in on_outcome(link, context, ...), or in on_settled when context is None."""
        return self.send_parts(None, data if type(data) is bytes else bytes(data), tag, settled, context)

    cdef int64_t send_parts(self, bytes head, bytes body, object tag, object settled,
                            object context, bytes state=None) except -2:
        """``send`` of the message ``head`` + ``body`` (``head`` None or a header section written
        before the body without joining them), for Cython callers; ``state`` (None, or an encoded
        delivery state) goes in the transfer's state field."""
        cdef Session s = self.session
        cdef ConnectionCore engine = s.engine
        cdef WriteBuffer tmp
        cdef bytes tagb
        cdef char tagbuf[4]
        cdef uint32_t did
        cdef Py_ssize_t fpm, nf, hl = 0, size, tl
        cdef const char* hp = NULL
        cdef const char* tp
        cdef const char* sp = NULL
        cdef Py_ssize_t sl = 0
        cdef bint pre
        if self.state != L_ATTACHED or not self.is_sender:
            raise EngineError("link %r is not an attached sender" % (self.name,))
        if not self._sendable(1):
            return -1
        if state is not None:
            sp = PyBytes_AS_STRING(state)
            sl = PyBytes_GET_SIZE(state)
        if head is not None:
            hp = PyBytes_AS_STRING(head)
            hl = PyBytes_GET_SIZE(head)
        size = hl + PyBytes_GET_SIZE(body)
        if self.remote_max_message_size and <uint64_t>size > self.remote_max_message_size:
            raise EngineError("message of %d bytes exceeds the peer's max-message-size %d"
                              % (size, self.remote_max_message_size))
        pre = (self.snd_settle_mode == SND_SETTLED or
               (self.snd_settle_mode == SND_MIXED and settled is not None and settled))
        did = s.next_delivery_id
        if tag is None:
            store_u32(tagbuf, did)
            tp = tagbuf
            tl = 4
        else:
            tagb = bytes(tag)
            tp = PyBytes_AS_STRING(tagb)
            tl = PyBytes_GET_SIZE(tagb)
            if tl > MAX_TAG:
                raise EngineError("delivery-tag of %d bytes (at most %d)" % (tl, MAX_TAG))
        fpm = _frames_per_message(size, engine.remote_max_frame_size)
        if fpm <= s.remote_incoming_window:
            nf = write_transfer_frames2(engine._out, s.channel, self.handle, did, tp, tl, pre, hp, hl, PyBytes_AS_STRING(body),
                                        PyBytes_GET_SIZE(body), engine.remote_max_frame_size, sp, sl)
            s.next_outgoing_id = <uint32_t>(s.next_outgoing_id + <uint32_t>nf)
            s.remote_incoming_window -= nf
        else:
            tmp = WriteBuffer.__new__(WriteBuffer)
            nf = write_transfer_frames2(tmp, s.channel, self.handle, did, tp, tl, pre, hp, hl, PyBytes_AS_STRING(body),
                                        PyBytes_GET_SIZE(body), engine.remote_max_frame_size, sp, sl)
            s._write_frames(tmp, nf, self)
        s.next_delivery_id = <uint32_t>(did + 1)
        s._track(self, context, not pre, did)
        self.credit -= 1
        self.delivery_count = <uint32_t>(self.delivery_count + 1)
        self.sent += 1
        if not pre:
            self.unsettled += 1
        return did

    def send_batch(self, message, Py_ssize_t count, settled=None, Py_ssize_t seq_offset=-1,
                   uint64_t seq=0):
        """Send up to ``count`` deliveries of one encoded ``message`` (bytes) in one call, as many as
        credit, the peer's window and the output bound allow; returns how many.  Each delivery's tag
        is its 4-byte delivery-id.  With ``seq_offset >= 0`` the 8 bytes at that offset of each copy
        carry a big-endian counter from ``seq``.  Outcomes come back in on_settled."""
        cdef Session s = self.session
        cdef ConnectionCore engine = s.engine
        cdef bytes msg
        cdef Py_ssize_t L, n, i, fpm
        cdef WriteBuffer out
        cdef uint32_t did, frames = 0
        cdef char tagbuf[4]
        cdef char* mp
        cdef bint pre
        if self.state != L_ATTACHED or not self.is_sender:
            raise EngineError("link %r is not an attached sender" % (self.name,))
        if count <= 0 or not self._sendable(1):
            return 0
        msg = message if type(message) is bytes else bytes(message)
        L = PyBytes_GET_SIZE(msg)
        if self.remote_max_message_size and <uint64_t>L > self.remote_max_message_size:
            raise EngineError("message of %d bytes exceeds the peer's max-message-size %d"
                              % (L, self.remote_max_message_size))
        if seq_offset >= 0:
            if seq_offset + 8 > L:
                raise ValueError("sequence offset %d does not fit a message of %d bytes" % (seq_offset, L))
            msg = PyBytes_FromStringAndSize(PyBytes_AS_STRING(msg), L)    # ours to stamp in place
        mp = PyBytes_AS_STRING(msg)
        pre = (self.snd_settle_mode == SND_SETTLED or
               (self.snd_settle_mode == SND_MIXED and settled is not None and settled))
        n = count
        if n > self.credit:
            n = <Py_ssize_t>self.credit
        fpm = _frames_per_message(L, engine.remote_max_frame_size)
        if n > s.remote_incoming_window // fpm:
            n = <Py_ssize_t>(s.remote_incoming_window // fpm)
        if n <= 0:
            return 0
        did = s.next_delivery_id
        out = engine._out
        for i in range(n):
            if out.len >= engine.output_limit:
                engine._out_full = True
                n = i
                break
            store_u32(tagbuf, did)
            if seq_offset >= 0:
                store_u64(mp + seq_offset, seq)
                seq += 1
            frames += <uint32_t>write_transfer_frames(out, s.channel, self.handle, did, tagbuf, 4,
                                                      pre, mp, L, engine.remote_max_frame_size)
            did += 1
        if not pre:
            if s._uhead >= len(s._ulinks):
                if s._uhead:
                    s._ulinks = []
                    s._uctx = []
                    s._uhead = 0
                s._ubase = s.next_delivery_id
            s._ulinks.extend([self] * n)
            s._uctx.extend([None] * n)
            self.unsettled += <uint64_t>n
        elif s._uhead < len(s._ulinks):
            s._ulinks.extend([None] * n)
            s._uctx.extend([None] * n)
        s.next_delivery_id = did
        s.next_outgoing_id = <uint32_t>(s.next_outgoing_id + frames)
        s.remote_incoming_window -= frames
        self.credit -= n
        self.delivery_count = <uint32_t>(self.delivery_count + <uint32_t>n)
        self.sent += <uint64_t>n
        return n


# =================================================================================================
# Incoming deliveries and holds
# =================================================================================================

@cython.final
cdef class Delivery:
    """An incoming delivery (per-message links).  ``hold()`` defers its settlement; the engine settles
    it (with ``outcome``, accepted when None) when the last hold is released."""

    def __repr__(self):
        return "<Delivery %d holds=%d>" % (self.id, self.holds)

    def hold(self):
        """One more thing must finish before this delivery is settled; returns the delivery."""
        if self._stage == 2:
            raise EngineError("delivery %d is settled already" % self.id)
        if self.holds == 0:
            self.link.session.engine.held += 1
        self.holds += 1
        return self

    cpdef release(self, outcome=None):
        """One hold is done (``outcome``, if given, replaces the delivery's); with none left the
        delivery is settled."""
        if self.holds <= 0:
            raise EngineError("delivery %d has no hold to release" % self.id)
        if outcome is not None:
            self.outcome = outcome
        self.holds -= 1
        if self.holds == 0:
            self.link.session.engine.held -= 1
            if self._stage == 1:
                self._settle()
                self.link.session.engine._wake()

    cdef int _settle(self) except -1:
        cdef Link link = self.link
        cdef Session s = link.session
        if self._stage == 2:
            return 0
        self._stage = 2
        if self.settled or link.state != L_ATTACHED or s.state != S_MAPPED:
            return 0            # pre-settled, or the link went away: nothing to say
        s._queue_settle(self.id, self.outcome, link.rcv_settle_mode != RCV_SECOND)
        return 0
