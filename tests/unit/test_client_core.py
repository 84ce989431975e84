"""pyx/clientcore and the client's pure parts without a broker: batches of transfers encoded by
SenderCore are read back by InboundCore (single and multi-frame, aborted, settled), accepts come out
as ranges, malformed transfers raise DecodeError; Message encode/decode, termini and URLs."""
import pytest
from cypid.client import Message, make_source, make_target, parse_url
from cypid.pyx.clientcore import InboundCore, ReceiverCore, SenderCore, SessionCore, frames_per_message
from cypid.pyx.codec import DecodeError, decode_performative, encode_frame, encode_transfer_frames, uint


def _pipe(keep=True, auto_accept=True):
    inbound = InboundCore(1 << 20)
    session = SessionCore(0)
    inbound.add_session(0, session)
    rc = ReceiverCore(session, None, keep, auto_accept)
    inbound.add_receiver(0, 3, rc)
    return inbound, session, rc


def _drain(inbound):
    events = []
    while True:
        ev = inbound.next_event()
        if ev is None:
            return events
        events.append(ev)


def test_batch_round_trip_counts_ids_and_accept_ranges():
    sess_out = SessionCore(0)
    sess_out.remote_incoming_window = 100
    snd = SenderCore(3, False)
    snd.credit = 10
    msg = Message(b"payload").encode()
    data = snd.encode(sess_out, msg, 10, 65536)
    assert (snd.credit, snd.delivery_count, snd.sent) == (0, 10, 10)
    assert (sess_out.next_delivery_id, sess_out.next_outgoing_id) == (10, 10)
    assert sess_out.remote_incoming_window == 90
    inbound, session, rc = _pipe()
    rc.credit = 10
    for i in range(0, len(data), 7):            # in small pieces, as a socket may deliver them
        inbound.feed(data[i:i + 7])
        assert _drain(inbound) == []
    assert rc.received == 10 and rc.credit == 0 and rc.delivery_count == 10
    assert session.next_incoming_id == 10
    msgs, ids = rc.take_messages()
    assert msgs == [msg] * 10 and ids == []
    assert inbound.touched == [rc] and rc.touched
    assert session.pending_accepts == 10
    assert session.take_accepts() == [(0, 9)]
    assert session.pending_accepts == 0 and session.take_accepts() == []


def test_accept_ranges_break_on_gaps():
    session = SessionCore(0)
    for did in (1, 2, 3, 7, 8, 10):
        session.accept(did)
    assert session.take_accepts() == [(1, 3), (7, 8), (10, 10)]


def test_multi_frame_delivery_and_abort():
    inbound, session, rc = _pipe()
    body = bytes(range(256)) * 40
    frames = encode_transfer_frames(0, 3, 5, b"t", False, body, 600)
    inbound.feed(frames)
    assert _drain(inbound) == []
    assert rc.received == 1 and rc.take_messages()[0] == [body]
    assert session.take_accepts() == [(5, 5)]
    # An aborted delivery: first frame with more=true, then a frame with aborted=true.
    first = encode_transfer_frames(0, 3, 6, b"u", False, body, 600)
    size = int.from_bytes(first[:4], "big")
    inbound.feed(first[:size])
    inbound.feed(encode_frame(0, 0x14, [uint(3), None, None, None, None, False, None, None, None, True]))
    assert _drain(inbound) == []
    assert rc.received == 1 and not rc.in_partial


def test_settled_transfers_need_no_accept_and_manual_mode_keeps_ids():
    inbound, session, rc = _pipe(auto_accept=False)
    inbound.feed(encode_transfer_frames(0, 3, 1, b"a", True, b"\x00Sw\xa1\x01x", 0))
    inbound.feed(encode_transfer_frames(0, 3, 2, b"b", False, b"\x00Sw\xa1\x01y", 0))
    _drain(inbound)
    msgs, ids = rc.take_messages()
    assert ids == [None, 2]
    assert session.pending_accepts == 0


def test_sequence_check_and_stamping():
    sess_out = SessionCore(0)
    sess_out.remote_incoming_window = 1000
    snd = SenderCore(3, True)
    msg = Message(b"z" * 16).encode()
    data = snd.encode(sess_out, msg, 5, 0, len(msg) - 8, 100)
    inbound, session, rc = _pipe(keep=False)
    rc.check_seq = True
    rc.next_seq = 100
    inbound.feed(data)
    _drain(inbound)
    assert rc.received == 5 and rc.seq_errors == 0 and rc.next_seq == 105
    assert rc.take_messages() == ([], [])
    with pytest.raises(ValueError):
        snd.encode(sess_out, b"short", 1, 0, 0, 0)


def test_other_frames_and_unknown_handles_come_back():
    inbound, session, rc = _pipe()
    flow = encode_frame(0, 0x13, [uint(0), uint(10), uint(0), uint(10)])
    other = encode_transfer_frames(0, 9, 1, b"x", False, b"m", 0)
    inbound.feed(flow + other + b"\x00\x00\x00\x08\x02\x00\x00\x00")
    events = _drain(inbound)
    assert [e[0:2] for e in events] == [(0, 0), (0, 0), (0, 0)]
    assert decode_performative(events[0][2])[0] == 0x13
    assert decode_performative(events[1][2])[0] == 0x14     # handle 9: not ours
    assert events[2][2] == b""                               # heartbeat
    assert inbound.frames == 3


@pytest.mark.parametrize("body", [
    b"\x00\x53\x14\x45",                                     # empty list: no handle
    b"\x00\x53\x14\xc0\x08\x02\x52\x03\x71\x00\x00\x00\x01",  # delivery-id as an int
    b"\x00\x53\x14\xc0\x20\x01\x43",                         # list size beyond the frame
    b"\x00\x53\x14\xa1\x01x",                                # not a list
])
def test_malformed_transfers_raise_decode_error(body):
    inbound, _, _ = _pipe()
    frame = (8 + len(body)).to_bytes(4, "big") + b"\x02\x00\x00\x00" + body
    inbound.feed(frame)
    with pytest.raises(DecodeError):
        _drain(inbound)


def test_frames_per_message_is_an_upper_bound():
    for size in (0, 100, 1000, 5000, 70000, 300000):
        for max_frame in (512, 1024, 65536):
            data = encode_transfer_frames(0, 0, 0xFFFFFFFF, b"1234", False, b"x" * size, max_frame)
            frames, off = 0, 0
            while off < len(data):
                off += int.from_bytes(data[off:off + 4], "big")
                frames += 1
            assert frames <= frames_per_message(size, max_frame)


def test_message_round_trip():
    m = Message(["a", 1], sequence=True, subject="s", to="q", user_id="u", content_type="text/plain",
                creation_time=1700000000000, group_id="g", group_sequence=3, ttl=5000, priority=9,
                annotations={"x-opt-a": 1})
    back = Message.decode(m.encode())
    assert back.body == ["a", 1] and back.sequence
    assert (back.subject, back.to, back.user_id, back.content_type) == ("s", "q", b"u", "text/plain")
    assert (back.creation_time, back.group_id, back.group_sequence) == (1700000000000, "g", 3)
    assert (back.ttl, back.priority, back.annotations) == (5000, 9, {"x-opt-a": 1})
    assert Message.decode(Message(None).encode()).body is None
    assert Message.decode(Message(b"").encode()).body == b""
    with pytest.raises(TypeError):
        Message("x", colour="red")


def test_termini_and_urls():
    src = make_source("amq.topic", node="topic", subject="a.#", durable=1, expiry_policy="never")
    fields = src.value
    assert fields[0] == "amq.topic" and fields[1] == 1 and fields[2] == "never"
    assert list(fields[7].values())[0].value == "a.#"
    assert [str(c) for c in fields[10]] == ["topic"]
    tgt = make_target("q", node="queue", create=True, properties={"durable": True})
    assert [str(c) for c in tgt.value[6]] == ["queue", "create-on-demand"]
    assert make_target(None).value == []
    with pytest.raises(ValueError):
        make_target("q", node="exchange")
    assert parse_url("h:1") == ("h", 1, None, None)
    assert parse_url("amqp://u:p@h:2/vhost") == ("h", 2, "u", "p")
    assert parse_url("[::1]:3") == ("::1", 3, None, None)
    assert parse_url("h") == ("h", 5672, None, None)


def test_mutated_transfers_never_crash():
    """Random byte flips in transfer frames: each burst either decodes or raises DecodeError."""
    import random
    rnd = random.Random(1234)
    good = (encode_transfer_frames(0, 3, 7, b"tag", False, b"\x00Sw\xa1\x05hello", 0)
            + encode_transfer_frames(0, 3, 8, b"t2", True, bytes(300), 128))
    for _ in range(3000):
        data = bytearray(good)
        for _ in range(rnd.randint(1, 4)):
            data[rnd.randrange(len(data))] = rnd.randrange(256)
        inbound, _, rc = _pipe()
        inbound.feed(bytes(data))
        try:
            _drain(inbound)
        except DecodeError:
            pass
        assert rc.received <= 10
