"""cypid.pyx.engine driven with bytes both ways: two engines (a client and a server) talking in memory,
and raw frames for a peer that breaks the rules.  Covers negotiation (SASL, open, close), sessions and
links (O(1) maps bounded by channel-max / handle-max), transfers both ways (batch and per-message links,
multi-frame, aborted), settlement (ranges, contexts, holds, settle modes), credit and drain, the session
window, max-message-size, delivery tags, the output bound and heartbeats."""
import pytest
from cypid.client.message import encode_message
from cypid.pyx import amqp
from cypid.pyx.codec import Described, decode_performative, uint, ulong
from cypid.pyx.engine import ConnectionState, Engine, EngineError, LinkState, SessionState

from tests.support.engine import Recorder, frame, make_pair, pump

TARGET = Described(ulong(0x29), ["q"])
SOURCE = Described(ulong(0x28), ["q"])
MSG = encode_message(b"x" * 100)


def _frames(data):
    """(channel, code, fields) of every frame in data (after any protocol headers)."""
    out = []
    while data.startswith(b"AMQP"):
        data = data[8:]
    while data:
        size = int.from_bytes(data[:4], "big")
        body = data[data[4] * 4:size]
        if body:
            code, fields, _ = decode_performative(body)
            out.append((int.from_bytes(data[6:8], "big"), code, fields))
        data = data[size:]
    return out


def _sender_pair(credit=100, snd_mode=amqp.SND_UNSETTLED, rcv_mode=amqp.RCV_FIRST, server_kw=None,
                 client_kw=None, **rec):
    """A client sender attached to a server receiver that grants ``credit``."""
    sh = Recorder(credit=credit, **rec)
    c, ch, s, sh = make_pair(client_kw=client_kw, server_kw=server_kw, server_handler=sh)
    sess = c.begin()
    link = sess.attach("snd", True, None, TARGET, snd_settle_mode=snd_mode, rcv_settle_mode=rcv_mode)
    pump(c, s)
    return c, ch, s, sh, link


def _receiver_pair(credit=0, client_kw=None, server_kw=None, **attach):
    """A client receiver (batch unless told) attached to a server sender."""
    c, ch, s, sh = make_pair(client_kw=client_kw, server_kw=server_kw)
    sess = c.begin()
    attach.setdefault("batch", True)
    auto_accept = attach.pop("auto_accept", True)
    rcv = sess.attach("rcv", False, SOURCE, None, **attach)
    rcv.auto_accept = auto_accept
    pump(c, s)
    slink = [e[1] for e in sh.events if e[0] == "attach"][0]
    if credit:
        rcv.flow(credit)
        pump(c, s)
    return c, ch, s, sh, rcv, slink


# -- negotiation -----------------------------------------------------------------------------------

def test_open_exchange_carries_limits_and_properties():
    c, ch, s, sh = make_pair(client_kw=dict(max_frame_size=4096, channel_max=7, idle_timeout=5),
                             server_kw=dict(max_frame_size=100000))
    assert c.opened and s.opened
    assert s.remote_container_id == "client" and c.remote_container_id == "server"
    assert s.remote_max_frame_size == 4096 and s.remote_channel_max == 7 and s.remote_idle_timeout == 5
    assert c.remote_max_frame_size == 100000
    assert ch.names() == ["open"] and sh.names() == ["open"]


@pytest.mark.parametrize("users,ok", [(None, True), ({"guest": "pw"}, True), ({"guest": "bad"}, False)])
def test_sasl_anonymous_and_plain(users, ok):
    server_users = {"guest": "pw"}
    ch = Recorder(sasl_users=users)
    sh = Recorder(sasl_users=server_users)
    c, ch, s, sh = make_pair(client_kw=dict(sasl=True), server_handler=sh, client_handler=ch,
                             server_kw=dict(sasl_mechanisms=["ANONYMOUS", "PLAIN"], require_sasl=True))
    assert ("sasl_init", "PLAIN" if users else "ANONYMOUS") in sh.events
    if ok:
        assert c.opened and s.opened
    else:
        assert c.finished and s.finished and not c.open_rcvd
        assert ch.events[-1][1][0] == amqp.UNAUTHORIZED_ACCESS
        assert sh.events[-1][1][0] == amqp.UNAUTHORIZED_ACCESS


def test_server_requiring_sasl_refuses_a_plain_amqp_header():
    c, ch, s, sh = make_pair(server_kw=dict(sasl_mechanisms=["ANONYMOUS"], require_sasl=True))
    assert s.finished and not s.open_rcvd and c.finished
    assert sh.events[-1][0] == "close" and sh.events[-1][1][0] == amqp.FRAMING_ERROR


def test_close_both_ways_ends_sessions_and_links():
    c, ch, s, sh, link = _sender_pair()
    c.close()
    pump(c, s)
    assert c.finished and s.finished
    assert [e[0] for e in sh.events[-3:]] == ["detach", "end", "close"]
    assert sh.events[-1][2] is True                     # closed by the peer
    assert ch.events[-1] == ("close", None, False)      # our close answered


def test_connection_state_follows_the_negotiation():
    c = Engine(Recorder(), sasl=True)
    s = Engine(Recorder(), server=True, sasl_mechanisms=["ANONYMOUS"])
    assert c.state is ConnectionState.HEADER
    c.start()
    s.feed(c.take_output())
    assert s.state is ConnectionState.SASL
    c, ch, s, sh = make_pair()
    assert c.state is ConnectionState.OPENED and s.state is ConnectionState.OPENED
    c.close()
    assert c.state is ConnectionState.CLOSE_SENT
    pump(c, s)
    assert c.state is ConnectionState.CLOSED and s.state is ConnectionState.CLOSED


def test_who_detached_or_ended_first_is_recorded():
    c, ch, s, sh, link = _sender_pair()
    peer = [e[1] for e in sh.events if e[0] == "attach"][0]
    assert (link.state, peer.state) == (LinkState.ATTACHED, LinkState.ATTACHED)
    link.detach()
    assert link.state == LinkState.DETACH_SENT
    pump(c, s)
    assert link.state == peer.state == LinkState.DETACHED
    assert link.detached_here and not peer.detached_here
    sess = c.begin()
    pump(c, s)
    peer_sess = [e[1] for e in sh.events if e[0] == "begin"][-1]
    peer_sess.end()
    assert peer_sess.state == SessionState.END_SENT
    pump(c, s)
    assert sess.state == peer_sess.state == SessionState.ENDED
    assert peer_sess.ended_here and not sess.ended_here


def test_abort_ends_every_session_and_detaches_every_link():
    """The transport went: every endpoint reports ENDED / DETACHED, those whose detach or end of ours
    was waiting for the peer's and those the engine had detached for an error too; each is reported
    once."""
    c, ch, s, sh, link = _sender_pair(credit=1)
    sess = link.session
    waiting = sess.attach("waiting", True, None, TARGET)       # our attach, not answered
    other = c.begin()
    pump(c, s)
    closing = other.attach("closing", True, None, TARGET)
    pump(c, s)
    closing.detach()                                           # our detach out, no answer yet
    other.end()                                                # our end out, no answer yet
    assert (closing.state, other.state) == (LinkState.DETACH_SENT, SessionState.END_SENT)
    # The server detaches its receiver for a transfer beyond credit; the client's detach is not read.
    from cypid.pyx.codec import encode_transfer_frames
    failed = [e[1] for e in sh.events if e[0] == "attach"][0]
    s.feed(encode_transfer_frames(0, failed.remote_handle, 0, b"a", False, MSG, 65536) +
           encode_transfer_frames(0, failed.remote_handle, 1, b"b", False, MSG, 65536))
    assert failed.state == LinkState.DETACH_SENT
    c.abort()
    s.abort()
    assert c.state is ConnectionState.CLOSED and s.state is ConnectionState.CLOSED
    assert {l.state for l in (link, waiting, closing, failed)} == {LinkState.DETACHED}
    assert {x.state for x in (sess, other, failed.session)} == {SessionState.ENDED}
    assert sorted(e[1].name for e in ch.events if e[0] == "detach") == ["closing", "snd", "waiting"]
    assert sorted(e[1].name for e in sh.events if e[0] == "detach") == ["closing", "snd", "waiting"]
    assert [e[0] for e in ch.events if e[0] in ("end", "close")] == ["end", "end", "close"]


def test_frame_before_open_and_garbage_close_with_errors():
    s = Engine(Recorder(), server=True)
    s.handler.engine = s
    s.feed(b"AMQP\x00\x01\x00\x00" + frame(0, amqp.BEGIN, [None, uint(0), uint(10), uint(10)]))
    assert s.finished and s.error[0] == amqp.FRAMING_ERROR
    out = _frames(s.take_output())
    assert [f[1] for f in out] == [amqp.OPEN, amqp.CLOSE]      # an open precedes the refusing close
    s2 = Engine(Recorder(), server=True)
    s2.handler.engine = s2
    s2.feed(b"AMQP\x00\x01\x00\x00" + b"\x00\x00\x00\x0c\x02\x00\x00\x00\x00\x53\x99\x45")
    assert s2.finished and s2.error[0] == amqp.DECODE_ERROR


# -- sessions and links: bounded, O(1) ---------------------------------------------------------------

def test_channel_max_bounds_sessions():
    c, ch, s, sh = make_pair(server_kw=dict(channel_max=2))
    for i in range(3):
        c.begin()
    pump(c, s)
    assert len(s.sessions) == 3 and not s.finished
    with pytest.raises(EngineError):
        c.begin()                                   # the client knows the server's channel-max
    raw = frame(9, amqp.BEGIN, [None, uint(0), uint(10), uint(10)])
    s.feed(raw)
    assert s.finished and s.error[0] == amqp.FRAMING_ERROR


def test_handle_max_bounds_links_and_handles_are_reused():
    c, ch, s, sh = make_pair(server_kw=dict(handle_max=3))
    sess = c.begin()
    pump(c, s)
    links = [sess.attach("l%d" % i, True, None, TARGET) for i in range(4)]
    pump(c, s)
    assert len(s.session(0).links) == 4
    raw = frame(0, amqp.ATTACH, ["l9", uint(4), False, None, None, None, TARGET])
    s.feed(raw)
    assert s.finished and s.error[0] == amqp.FRAMING_ERROR and "handle-max" in s.error[1]
    # On a fresh pair: a detached link's handle is taken by the next attach.
    c, ch, s, sh = make_pair()
    sess = c.begin()
    a = sess.attach("a", True, None, TARGET)
    pump(c, s)
    a.detach()
    pump(c, s)
    b = sess.attach("b", True, None, TARGET)
    assert b.handle == a.handle == 0


def test_attach_on_handle_in_use_ends_the_session():
    c, ch, s, sh = make_pair()
    c.begin()
    pump(c, s)
    s.feed(frame(0, amqp.ATTACH, ["a", uint(0), False, None, None, None, TARGET]))
    s.feed(frame(0, amqp.ATTACH, ["b", uint(0), False, None, None, None, TARGET]))
    end = [e for e in sh.events if e[0] == "end"]
    assert end[0][2][0] == amqp.HANDLE_IN_USE and not s.finished


def test_transfer_on_unattached_handle_ends_the_session():
    c, ch, s, sh = make_pair()
    c.begin()
    pump(c, s)
    from cypid.pyx.codec import encode_transfer_frames
    s.feed(encode_transfer_frames(0, 5, 0, b"t", False, MSG, 65536))
    end = [e for e in sh.events if e[0] == "end"]
    assert end[0][2][0] == amqp.UNATTACHED_HANDLE


def test_refused_attach_answers_null_terminus_then_detach():
    sh = Recorder(accept_links=False)
    c, ch, s, sh = make_pair(server_handler=sh)
    sess = c.begin()
    link = sess.attach("x", True, None, TARGET)
    pump(c, s)
    peer = [e[1] for e in sh.events if e[0] == "attach"][0]
    peer.refuse(amqp.NOT_FOUND, "no such node")
    pump(c, s)
    assert link.remote_target is None
    detach = [e for e in ch.events if e[0] == "detach"][0]
    assert detach[2][0] == amqp.NOT_FOUND and detach[2][1] == "no such node"


# -- transfers and settlement -------------------------------------------------------------------------

def test_batch_send_settles_in_ranges_and_credit_bounds():
    c, ch, s, sh, link = _sender_pair(credit=50)
    assert link.credit == 50
    assert link.send_batch(MSG, 80) == 50                   # credit bounds the batch
    assert link.send_batch(MSG, 1) == 0
    pump(c, s)
    assert len(sh.messages) == 50 and all(d.holds == 0 for _, d, _ in sh.messages)
    assert sum(n for _, n, _ in ch.settled) == 50 and link.unsettled == 0
    assert {o for _, _, o in ch.settled} == {amqp.ACCEPTED}
    assert link.session.outstanding == 0


def test_one_ranged_disposition_settles_a_burst():
    c, ch, s, sh, link = _sender_pair(credit=1000)
    link.send_batch(MSG, 1000)
    s.feed(c.take_output())
    out = _frames(s.take_output())
    dispositions = [f for f in out if f[1] == amqp.DISPOSITION]
    assert len(dispositions) == 1 and dispositions[0][2][1:3] == [0, 999]


def test_holds_defer_settlement_until_the_last_release():
    c, ch, s, sh, link = _sender_pair(hold=True)
    link.send_batch(MSG, 3)
    pump(c, s)
    assert len(sh.held) == 3 and s.held == 3 and ch.settled == []
    d0, d1, d2 = sh.held
    d1.hold()                                   # a second hold (an HA backup, say)
    d1.release()
    pump(c, s)
    assert ch.settled == [] and s.held == 3
    d1.release(amqp.rejected(amqp.NOT_FOUND, "gone"))
    d0.release()
    pump(c, s)
    assert s.held == 1
    assert sorted((n, o) for _, n, o in ch.settled) == [(1, amqp.ACCEPTED), (1, amqp.REJECTED)]
    d2.release()
    pump(c, s)
    assert s.held == 0 and link.unsettled == 0
    with pytest.raises(EngineError):
        d2.release()


def test_hold_released_after_the_link_went_settles_nothing():
    c, ch, s, sh, link = _sender_pair(hold=True)
    link.send_batch(MSG, 2)
    pump(c, s)
    link.detach()
    pump(c, s)
    for d in sh.held:
        d.release()
    assert s.held == 0
    assert [f for f in _frames(s.take_output()) if f[1] == amqp.DISPOSITION] == []


def test_per_delivery_contexts_come_back_with_their_outcomes():
    c, ch, s, sh, rcv, slink = _receiver_pair(credit=10, auto_accept=False)
    for i in range(4):
        assert slink.send(MSG, context="ctx%d" % i) == i
    pump(c, s)
    msgs, ids = rcv.take_messages()
    assert ids == [0, 1, 2, 3]
    sess = rcv.session
    sess.settle(0)
    sess.settle(2, amqp.RELEASED_STATE)
    sess.settle(1)
    pump(c, s)
    got = sorted((ctx, o) for _, ctx, o, _ in sh.outcomes)
    assert got == [("ctx0", amqp.ACCEPTED), ("ctx1", amqp.ACCEPTED), ("ctx2", amqp.RELEASED)]
    # The one left unsettled comes back to the handler when the link goes.
    assert slink.take_unsettled() == ["ctx3"]


def test_multi_frame_both_ways_and_aborted():
    c, ch, s, sh, rcv, slink = _receiver_pair(credit=10, client_kw=dict(max_frame_size=512))
    big = encode_message(b"y" * 5000)
    assert slink.send(big) == 0
    pump(c, s)
    msgs, _ = rcv.take_messages()
    assert msgs == [big]
    # An aborted delivery: its frames arrive, nothing is delivered.
    from cypid.pyx.codec import encode_transfer_frames
    frames = encode_transfer_frames(rcv.session.remote_channel, slink.handle, 1, b"t", False, big, 512)
    first = frames[:int.from_bytes(frames[:4], "big")]
    abort = frame(rcv.session.remote_channel, amqp.TRANSFER, [uint(slink.handle), None, None, None, None,
                                                             False, None, None, None, True])
    c.feed(first + abort)
    assert rcv.take_messages()[0] == [] and not rcv.in_partial


def test_max_message_size_counts_a_partial_delivery():
    c, ch, s, sh = make_pair(client_kw=dict(max_frame_size=512), server_kw=dict(max_message_size=2000))
    sess = c.begin()
    link = sess.attach("snd", True, None, TARGET)
    pump(c, s)
    peer = [e[1] for e in sh.events if e[0] == "attach"][0]
    peer.flow(10)
    pump(c, s)
    assert link.remote_max_message_size == 2000
    with pytest.raises(EngineError):
        link.send(encode_message(b"z" * 3000))              # we honour the peer's limit
    # A peer that does not: its never-finished delivery is refused before it completes.
    from cypid.pyx.codec import encode_transfer_frames
    frames = encode_transfer_frames(0, link.handle, 0, b"t", False, b"z" * 100000, 512)
    s.feed(frames[:512 * 6])                                 # 6 frames, still "more"
    detach = [e for e in sh.events if e[0] == "detach"]
    assert detach and detach[0][2][0] == amqp.MESSAGE_SIZE_EXCEEDED
    assert not s.finished


def test_delivery_tag_over_32_bytes_is_a_decode_error():
    c, ch, s, sh, link = _sender_pair()
    with pytest.raises(EngineError):
        link.send(MSG, tag=b"t" * 33)
    from cypid.pyx.codec import encode_transfer_frames
    s.feed(encode_transfer_frames(0, link.handle, 0, b"t" * 32, False, MSG, 65536))
    assert len(sh.messages) == 1 and not s.finished
    s.feed(encode_transfer_frames(0, link.handle, 1, b"t" * 33, False, MSG, 65536))
    assert s.finished and s.error[0] == amqp.DECODE_ERROR and "delivery-tag" in s.error[1]


def test_transfer_beyond_credit_detaches_the_link():
    c, ch, s, sh, link = _sender_pair(credit=1)
    from cypid.pyx.codec import encode_transfer_frames
    s.feed(encode_transfer_frames(0, link.handle, 0, b"a", False, MSG, 65536) +
           encode_transfer_frames(0, link.handle, 1, b"b", False, MSG, 65536))
    assert len(sh.messages) == 1
    detach = [e for e in sh.events if e[0] == "detach"]
    assert detach[0][2][0] == amqp.TRANSFER_LIMIT_EXCEEDED


# -- settle modes -------------------------------------------------------------------------------------

def _settled_flags(data):
    return [f[2][4] if len(f[2]) > 4 else False for f in _frames(data) if f[1] == amqp.TRANSFER]


def test_snd_settle_mode_is_followed_as_announced():
    c, ch, s, sh, rcv, slink = _receiver_pair(credit=10, snd_settle_mode=amqp.SND_UNSETTLED)
    slink.send(MSG, settled=True)                       # asked for settled: mode unsettled wins
    assert _settled_flags(s.take_output()) == [False]
    c, ch, s, sh, rcv, slink = _receiver_pair(credit=10, snd_settle_mode=amqp.SND_SETTLED)
    slink.send(MSG)
    slink.send_batch(MSG, 2)
    assert _settled_flags(s.take_output()) == [True, True, True]
    assert slink.unsettled == 0
    c, ch, s, sh, rcv, slink = _receiver_pair(credit=10, snd_settle_mode=amqp.SND_MIXED)
    slink.send(MSG, settled=True)
    slink.send(MSG)
    assert _settled_flags(s.take_output()) == [True, False]


def test_rcv_settle_mode_second_both_ways():
    # We receive in mode second: our disposition is unsettled; the sender's settlement follows.
    c, ch, s, sh, link = _sender_pair(rcv_mode=amqp.RCV_SECOND)
    peer = [e[1] for e in sh.events if e[0] == "attach"][0]
    assert peer.rcv_settle_mode == amqp.RCV_SECOND
    link.send_batch(MSG, 2)
    s.feed(c.take_output())
    out = s.take_output()
    disp = [f for f in _frames(out) if f[1] == amqp.DISPOSITION]
    assert disp and disp[0][2][3] is False               # not settled yet
    c.feed(out)
    back = [f for f in _frames(c.take_output()) if f[1] == amqp.DISPOSITION]
    assert back and back[0][2][0] is False and back[0][2][3] is True   # the sender settles
    assert sum(n for _, n, _ in ch.settled) == 2


# -- credit, drain, windows, output bound --------------------------------------------------------------

def test_drain_uses_the_credit_up():
    c, ch, s, sh, rcv, slink = _receiver_pair()
    rcv.flow(5, drain=True)
    pump(c, s)
    assert slink.drain and slink.credit == 5
    slink.drained()
    pump(c, s)
    assert slink.credit == 0 and slink.delivery_count == 5
    assert rcv.credit == 0 and rcv.delivery_count == 5


def test_session_window_is_honoured_and_reopened():
    c, ch, s, sh, link = _sender_pair(credit=100, server_kw=dict(incoming_window=8))
    assert link.session.remote_incoming_window == 8
    sent = link.send_batch(MSG, 100)
    assert sent == 8
    pump(c, s)
    assert link.session.remote_incoming_window > 0       # our peer re-announced its window
    total = sent
    while total < 100:
        n = link.send_batch(MSG, 100 - total)
        assert 0 < n <= 8
        total += n
        pump(c, s)
    assert len(sh.messages) == 100


def test_window_violation_ends_the_session():
    c, ch, s, sh, link = _sender_pair(credit=100, server_kw=dict(incoming_window=4))
    from cypid.pyx.codec import encode_transfer_frames
    s.feed(b"".join(encode_transfer_frames(0, link.handle, i, b"t", False, MSG, 65536) for i in range(5)))
    end = [e for e in sh.events if e[0] == "end"]
    assert end[0][2][0] == amqp.WINDOW_VIOLATION and not s.finished


def test_multi_frame_delivery_cut_by_the_window_continues_as_it_opens():
    c, ch, s, sh = make_pair(client_kw=dict(max_frame_size=512, incoming_window=3))
    sess = c.begin()
    rcv = sess.attach("rcv", False, SOURCE, None, batch=True)
    pump(c, s)
    slink = [e[1] for e in sh.events if e[0] == "attach"][0]
    rcv.flow(2)
    pump(c, s)
    big = encode_message(b"w" * 4000)
    assert slink.send(big) == 0
    assert not slink.can_send                            # the rest waits for the window
    pump(c, s)
    assert rcv.take_messages()[0] == [big]


def test_output_bound_stops_encoding_and_reports_writable():
    c, ch, s, sh, rcv, slink = _receiver_pair(credit=1000, server_kw=dict(output_limit=10000))
    n = slink.send_batch(MSG, 1000)
    assert 0 < n < 100
    assert not s.writable and not slink.can_send and slink.send(MSG) == -1
    assert sh.writable == 0
    pump(c, s)
    assert sh.writable == 1 and s.writable


# -- heartbeats --------------------------------------------------------------------------------------

def test_heartbeats_and_idle_timeout():
    c, ch, s, sh = make_pair(client_kw=dict(idle_timeout=1.0), server_kw=dict(idle_timeout=2.0))
    assert c.tick(0.0) == 0.5 and s.tick(0.0) > 0
    c.take_output(0.0)
    c.tick(0.6)                                          # quiet for half the peer's 2 s... not yet
    assert c.take_output(0.6) == b""
    c.tick(1.1)
    assert c.take_output(1.1) == b"\x00\x00\x00\x08\x02\x00\x00\x00"
    c.feed(b"\x00\x00\x00\x08\x02\x00\x00\x00", 1.2)     # the peer's heartbeat
    c.tick(3.0)
    assert not c.finished
    c.tick(3.3)                                          # nothing read for more than 2 x 1 s
    assert c.finished and c.error[0] == amqp.RESOURCE_LIMIT_EXCEEDED


def test_a_link_failing_before_its_answer_gets_our_attach_first():
    sh = Recorder(accept_links=False)
    c, ch, s, sh = make_pair(server_handler=sh)
    sess = c.begin()
    link = sess.attach("x", True, None, TARGET)
    pump(c, s)
    from cypid.pyx.codec import encode_transfer_frames
    s.feed(encode_transfer_frames(0, link.handle, 0, b"t", False, MSG, 65536))   # no credit was given
    codes = [f[1] for f in _frames(s.take_output())]
    assert codes == [amqp.ATTACH, amqp.DETACH]
    assert next(e for e in sh.events if e[0] == "detach")[2][0] == amqp.TRANSFER_LIMIT_EXCEEDED


def test_close_during_sasl_reports_once():
    ch = Recorder()
    c = Engine(ch, sasl=True)
    ch.engine = c
    c.start()
    c.close()
    assert c.finished and [e[0] for e in ch.events] == ["close"]


class _ChallengeServer(Recorder):
    """A toy mechanism with one round of challenge and response (as SCRAM has)."""

    def on_sasl_init(self, mechanism, response, hostname):
        return b"nonce-" + response

    def on_sasl_response(self, response):
        return (0, b"welcome") if response == b"nonce-hi!" else 1


class _ChallengeClient(Recorder):
    def on_sasl_mechanisms(self, offered):
        return ("X-TEST", b"hi")

    def on_sasl_challenge(self, challenge):
        self.events.append(("challenge", challenge))
        return challenge + b"!"


def test_sasl_challenge_and_response_rounds():
    c, ch, s, sh = make_pair(client_kw={"sasl": True}, client_handler=_ChallengeClient(),
                             server_handler=_ChallengeServer(),
                             server_kw={"sasl_mechanisms": ["X-TEST"], "require_sasl": True})
    assert ("challenge", b"nonce-hi") in ch.events
    assert c.opened and s.opened and s.sasl_mechanism == "X-TEST"
