"""The client's per-message path on the engine without a broker: batches of transfers written by
``Link.send_batch`` are read back by a batch receiving link (single and multi-frame, aborted, settled),
accepts come out as ranges, malformed transfers close the connection with amqp:decode-error; Message
encode/decode, termini and URLs."""
import pytest
from cypid.client import Message, make_source, make_target, parse_url
from cypid.pyx import amqp
from cypid.pyx.codec import Described, decode_performative, encode_frame, encode_transfer_frames, uint, ulong
from cypid.pyx.engine import frames_per_message

from tests.support.engine import make_pair, pump

SOURCE = Described(ulong(0x28), ["q"])


def _pipe(keep=True, auto_accept=True, credit=100):
    """(client engine, its batch receiving link, server engine, the server's sending link)."""
    c, _, s, sh = make_pair()
    rcv = c.begin().attach("r", False, SOURCE, None, batch=True)
    rcv.keep = keep
    rcv.auto_accept = auto_accept
    pump(c, s)
    rcv.flow(credit)
    pump(c, s)
    snd = next(e[1] for e in sh.events if e[0] == "attach")
    return c, rcv, s, snd


def _dispositions(data):
    out = []
    while data:
        size = int.from_bytes(data[:4], "big")
        code, fields, _ = decode_performative(data[8:size])
        if code == amqp.DISPOSITION:
            out.append((fields[1], fields[2] if len(fields) > 2 and fields[2] is not None else fields[1]))
        data = data[size:]
    return out


def test_batch_round_trip_counts_ids_and_accept_ranges():
    c, rcv, s, snd = _pipe()
    msg = Message(b"payload").encode()
    assert snd.send_batch(msg, 10) == 10
    assert (snd.credit, snd.delivery_count, snd.sent, snd.unsettled) == (90, 10, 10, 10)
    assert (snd.session.next_delivery_id, snd.session.next_outgoing_id) == (10, 10)
    data = s.take_output()
    for i in range(0, len(data), 7):            # in small pieces, as a socket may deliver them
        c.feed(data[i:i + 7])
    assert rcv.received == 10 and rcv.credit == 90 and rcv.delivery_count == 10
    assert rcv.session.next_incoming_id == 10
    msgs, ids = rcv.take_messages()
    assert msgs == [msg] * 10 and ids == []
    assert rcv.session.pending_settles == 10
    assert _dispositions(c.take_output()) == [(0, 9)]
    assert rcv.session.pending_settles == 0


def test_accept_ranges_break_on_gaps():
    c, rcv, s, snd = _pipe(auto_accept=False)
    for did in (1, 2, 3, 7, 8, 10):
        rcv.session.settle(did)
    assert _dispositions(c.take_output()) == [(1, 3), (7, 8), (10, 10)]


def test_settle_batch_holds_accepts_until_flushed():
    c, rcv, s, snd = _pipe()
    rcv.session.settle_batch = 5
    snd.send_batch(Message(b"m").encode(), 3)
    c.feed(s.take_output())
    assert _dispositions(c.take_output()) == []
    rcv.session.flush_settles()
    assert _dispositions(c.take_output()) == [(0, 2)]


def test_multi_frame_delivery_and_abort():
    c, rcv, s, snd = _pipe()
    body = bytes(range(256)) * 40
    c.feed(encode_transfer_frames(0, 0, 5, b"t", False, body, 600))
    assert rcv.received == 1 and rcv.take_messages()[0] == [body]
    assert _dispositions(c.take_output()) == [(5, 5)]
    # An aborted delivery: first frame with more=true, then a frame with aborted=true.
    first = encode_transfer_frames(0, 0, 6, b"u", False, body, 600)
    size = int.from_bytes(first[:4], "big")
    c.feed(first[:size])
    assert rcv.in_partial
    c.feed(encode_frame(0, 0x14, [uint(0), None, None, None, None, False, None, None, None, True]))
    assert rcv.received == 1 and not rcv.in_partial and not c.finished


def test_settled_transfers_need_no_accept_and_manual_mode_keeps_ids():
    c, rcv, s, snd = _pipe(auto_accept=False)
    c.feed(encode_transfer_frames(0, 0, 1, b"a", True, b"\x00Sw\xa1\x01x", 0))
    c.feed(encode_transfer_frames(0, 0, 2, b"b", False, b"\x00Sw\xa1\x01y", 0))
    msgs, ids = rcv.take_messages()
    assert ids == [None, 2]
    assert rcv.session.pending_settles == 0


def test_sequence_check_and_stamping():
    c, rcv, s, snd = _pipe(keep=False)
    msg = Message(b"z" * 16).encode()
    rcv.check_seq = True
    rcv.next_seq = 100
    assert snd.send_batch(msg, 5, None, len(msg) - 8, 100) == 5
    c.feed(s.take_output())
    assert rcv.received == 5 and rcv.seq_errors == 0 and rcv.next_seq == 105
    assert rcv.take_messages() == ([], [])
    with pytest.raises(ValueError):
        snd.send_batch(b"short", 1, None, 0, 0)


@pytest.mark.parametrize("body", [
    b"\x00\x53\x14\x45",                                     # empty list: no handle
    b"\x00\x53\x14\xc0\x05\x02\x52\x00\xa1\x01x",              # delivery-id as a string
    b"\x00\x53\x14\xc0\x20\x01\x43",                         # list size beyond the frame
    b"\x00\x53\x14\xa1\x01x",                                # not a list
])
def test_malformed_transfers_close_with_decode_error(body):
    c, rcv, s, snd = _pipe()
    c.feed((8 + len(body)).to_bytes(4, "big") + b"\x02\x00\x00\x00" + body)
    assert c.finished and c.error[0] == amqp.DECODE_ERROR


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
    """Random byte flips in transfer frames: each burst is either taken or closes the connection with
    an AMQP error; never an exception out of the engine."""
    import random
    rnd = random.Random(1234)
    good = (encode_transfer_frames(0, 0, 7, b"tag", False, b"\x00Sw\xa1\x05hello", 0)
            + encode_transfer_frames(0, 0, 8, b"t2", True, bytes(300), 128))
    for _ in range(1000):
        data = bytearray(good)
        for _ in range(rnd.randint(1, 4)):
            data[rnd.randrange(len(data))] = rnd.randrange(256)
        c, rcv, s, snd = _pipe()
        c.feed(bytes(data))
        assert rcv.received <= 10
        assert not c.finished or c.error[0].startswith("amqp:")
