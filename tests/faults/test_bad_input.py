"""FAULT TESTS: bad input on the wire.

Each test opens a python-qpid-proton bystander connection first (``bystander``), then sends the
broker something wrong on a raw connection (tests/support/rawclient.py) and reads back how the broker
ends it: the connection (close with a condition, or for a bad protocol header its own header and
EOF), the session (end with a condition) or the link (detach with a condition), as the spec scopes the
error. Then: the broker logged exactly one line about that connection, nothing in its log shows an
escaped exception, and the bystander still sends and receives.
"""
import pytest
from proton.utils import BlockingConnection

from cypid.pyx.codec import scan_message

from tests.support.faults import Bystander, assert_logged_once, assert_no_trouble, lines_about
from tests.support.rawclient import (
    AMQP_HEADER, ATTACH, BEGIN, CLOSE, DETACH, DISPOSITION, END, FLOW, OPEN, RECEIVER, SASL_FRAME,
    SASL_HEADER, SASL_INIT, SASL_MECHANISMS, SASL_OUTCOME, SASL_RESPONSE, SENDER, TRANSFER, Described,
    RawClient, encode_message, source, split_frames, symbol, target, ubyte, uint, ulong,
)
from tests.support.sasl import auth_args

@pytest.fixture
def broker(shared_broker):
    """One broker for the whole module (tests only add connections, never change broker state)."""
    return shared_broker


@pytest.fixture
def bystander(shared_bystander):
    return shared_bystander


FRAMING_ERROR = "amqp:connection:framing-error"
DECODE_ERROR = "amqp:decode-error"
NOT_ALLOWED = "amqp:not-allowed"
NOT_FOUND = "amqp:not-found"
UNATTACHED_HANDLE = "amqp:session:unattached-handle"
HANDLE_IN_USE = "amqp:session:handle-in-use"


def raw_frame(body: bytes, channel: int = 0, doff: int = 2, ftype: int = 0, size: int | None = None) -> bytes:
    """A frame with the given body and header fields (size defaults to the true size)."""
    header_len = 4 * doff if doff >= 2 else 8
    extended = b"\x00" * (header_len - 8)
    total = 8 + len(extended) + len(body)
    return ((total if size is None else size).to_bytes(4, "big") + bytes([doff, ftype])
            + channel.to_bytes(2, "big") + extended + body)


def bare(message: bytes) -> bytes:
    """A delivered message without the header the broker writes for each delivery."""
    return scan_message(message).bare_message()


def opened(broker, **kwargs) -> RawClient:
    """A raw connection through SASL ANONYMOUS and open."""
    c = RawClient.connect(broker, **kwargs)
    c.handshake()
    return c


def with_session(broker):
    c = opened(broker)
    return c, c.begin(0)


def queue_with_producer(c, ch, queue, handle=0):
    """Attach a sender (client end) to a new queue; returns after the broker's attach and credit."""
    reply = c.attach(ch, "producer-" + queue, handle, SENDER, src=source("me"),
                     tgt=target(queue, capabilities=["queue", "create-on-demand"]))
    assert reply.field(6) is not None, "target refused: %r" % (c.frames,)
    c.expect(FLOW, ch)
    return reply


# ---------------------------------------------------------------------------------------------------
# Protocol headers: the broker answers with the header it speaks and closes the socket (2.2)
# ---------------------------------------------------------------------------------------------------
BAD_HEADERS = {
    "garbage": b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage" * 4,
    "amqp-1.0.2": b"AMQP\x00\x01\x00\x02",
    "amqp-version-2": b"AMQP\x00\x02\x00\x00",
    "amqp-0-10": b"AMQP\x01\x01\x00\x0a",
    "tls": b"AMQP\x02\x01\x00\x00",
    "http": b"GET / HTTP/1.1\r\nHost: localhost\r\nUser-Agent: curl/8\r\n\r\n",
    "frame-instead-of-header": raw_frame(b"\x00\x53\x10\x45"),
}


@pytest.mark.parametrize("data", BAD_HEADERS.values(), ids=BAD_HEADERS.keys())
def test_wrong_protocol_header_is_answered_with_ours_then_eof(broker, bystander, data):
    with RawClient.connect(broker) as c:
        c.send(data)
        assert c.read_header() == AMQP_HEADER
        assert c.expect_eof() == []
        assert_logged_once(broker, c, bystander, "bad protocol header")


@pytest.fixture
def auth_broker(broker_factory, tmp_path):
    """A broker that requires SASL (PLAIN), and a bystander that logs in with it."""
    broker = broker_factory(*auth_args(tmp_path / "auth", {"guest": "guest"}))
    bystander = Bystander(broker, user="guest", password="guest", allowed_mechs="PLAIN")
    try:
        yield broker, bystander
    finally:
        bystander.close()


def test_amqp_header_when_sasl_is_required_is_answered_with_sasl_header(auth_broker):
    broker, bystander = auth_broker
    with RawClient.connect(broker) as c:
        c.send(AMQP_HEADER)
        assert c.read_header() == SASL_HEADER
        assert c.expect_eof() == []
        assert_logged_once(broker, c, bystander, "bad protocol header")


@pytest.mark.parametrize("stage", ["nothing", "sasl-header", "amqp-header"])
def test_silent_client_is_dropped_after_max_negotiate_time(broker_factory, stage):
    broker = broker_factory("--max-negotiate-time", "300")
    bystander = Bystander(broker)
    try:
        with RawClient.connect(broker) as c:
            if stage == "sasl-header":
                c.send(SASL_HEADER)
                assert c.read_header() == SASL_HEADER
                c.expect(SASL_MECHANISMS)
            elif stage == "amqp-header":
                assert c.sasl() == 0
                assert c.amqp_header() == AMQP_HEADER
            c.expect_eof()
            assert_logged_once(broker, c, bystander, "no open within the negotiation time")
    finally:
        bystander.close()


def test_silent_peer_is_closed_after_the_idle_timeout(broker, bystander):
    with RawClient.connect(broker) as c:
        assert c.sasl() == 0
        assert c.amqp_header() == AMQP_HEADER
        remote = c.open(idle_time_out=100)
        assert remote.field(4)                 # the broker advertises its own idle timeout
        close = c.expect_close("amqp:resource-limit-exceeded")
        assert "idle-timeout" in close.error.description
        assert_logged_once(broker, c, bystander, "resource-limit-exceeded")


def test_header_cut_short_by_eof(broker, bystander):
    with RawClient.connect(broker) as c:
        c.send(b"AMQ")
        c.shutdown_write()
        assert c.expect_eof() == []
        assert_logged_once(broker, c, bystander, "inside a protocol header")


# ---------------------------------------------------------------------------------------------------
# SASL: a failed or malformed exchange ends with a sasl-outcome that is not ok, then EOF (5.3)
# ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("mechanism, response", [
    ("KERBEROS-V99", None),
    ("", None),
    ("PLAIN", b"no-nul-separators"),
    ("PLAIN", b"\x00\x00password"),
], ids=["unknown-mechanism", "empty-mechanism", "plain-malformed", "plain-no-user"])
def test_bad_sasl_mechanism_or_response_fails_authentication(broker, bystander, mechanism, response):
    with RawClient.connect(broker) as c:
        c.send(SASL_HEADER)
        assert c.read_header() == SASL_HEADER
        c.expect(SASL_MECHANISMS)
        assert c.sasl_init(mechanism, response) == 1          # auth: authentication failed
        assert c.expect_eof() == []
        assert_logged_once(broker, c, bystander, "Authentication failed")


def test_anonymous_refused_when_auth_is_required(auth_broker):
    broker, bystander = auth_broker
    with RawClient.connect(broker) as c:
        c.send(SASL_HEADER)
        assert c.read_header() == SASL_HEADER
        offered = [str(m) for m in c.expect(SASL_MECHANISMS).field(0)]
        assert "ANONYMOUS" not in offered
        assert c.sasl_init("ANONYMOUS") == 1
        assert c.expect_eof() == []
        assert_logged_once(broker, c, bystander, "Authentication failed")


SASL_OUT_OF_ORDER = {
    # (frame bytes sent after the broker's sasl-mechanisms, condition in the log)
    "response-before-init": (lambda: raw_frame(_body(SASL_RESPONSE, [b"x"]), ftype=SASL_FRAME),
                             FRAMING_ERROR),
    "outcome-from-client": (lambda: raw_frame(_body(SASL_OUTCOME, [ubyte(0)]), ftype=SASL_FRAME),
                            FRAMING_ERROR),
    "mechanisms-from-client": (lambda: raw_frame(_body(SASL_MECHANISMS, [symbol("PLAIN")]),
                                                 ftype=SASL_FRAME), FRAMING_ERROR),
    "amqp-open-during-sasl": (lambda: raw_frame(_body(OPEN, ["c"])), FRAMING_ERROR),
    "init-without-mechanism": (lambda: raw_frame(_body(SASL_INIT, []), ftype=SASL_FRAME), DECODE_ERROR),
    "init-undecodable": (lambda: raw_frame(b"\x00\x53\x41\xc0\x10\x02\xa3", ftype=SASL_FRAME), DECODE_ERROR),
    "init-oversized": (lambda: raw_frame(b"", ftype=SASL_FRAME, size=1 << 20), FRAMING_ERROR),
}


def _body(code, fields):
    from cypid.pyx.codec import encode_frame
    return encode_frame(0, code, fields)[8:]


@pytest.mark.parametrize("make, condition", SASL_OUT_OF_ORDER.values(), ids=SASL_OUT_OF_ORDER.keys())
def test_sasl_frames_out_of_order_end_the_exchange(broker, bystander, make, condition):
    with RawClient.connect(broker) as c:
        c.send(SASL_HEADER)
        assert c.read_header() == SASL_HEADER
        c.expect(SASL_MECHANISMS)
        c.send(make())
        outcome = c.expect(SASL_OUTCOME)
        assert outcome.field(0) == 3            # sys-perm: no AMQP layer to carry a close
        assert c.expect_eof() == []
        assert_logged_once(broker, c, bystander, condition)


def test_sasl_frame_after_sasl_is_done(broker, bystander):
    with RawClient.connect(broker) as c:
        assert c.sasl() == 0
        assert c.amqp_header() == AMQP_HEADER
        c.send_frame(0, SASL_INIT, [symbol("ANONYMOUS")], frame_type=SASL_FRAME)
        c.expect_close(FRAMING_ERROR)
        assert_logged_once(broker, c, bystander, FRAMING_ERROR)


# ---------------------------------------------------------------------------------------------------
# Connection errors: close with the condition, then EOF
# ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("code, fields", [
    (BEGIN, [None, uint(0), uint(100), uint(100)]),
    (ATTACH, ["l", uint(0), False]),
    (CLOSE, []),
], ids=["begin", "attach", "close"])
def test_frames_before_open(broker, bystander, code, fields):
    with RawClient.connect(broker) as c:
        assert c.sasl() == 0
        assert c.amqp_header() == AMQP_HEADER
        c.send_frame(0, code, fields)
        c.expect_close(FRAMING_ERROR)
        # The broker sent its open first, so that the close is legal.
        assert [f.code for f in c.frames if f.type == 0] == [OPEN, CLOSE]
        assert_logged_once(broker, c, bystander, "expected open")


def test_open_sent_twice(broker, bystander):
    with opened(broker) as c:
        c.send_open()
        c.expect_close(FRAMING_ERROR)
        assert_logged_once(broker, c, bystander, "second open")


@pytest.mark.parametrize("make, text", [
    (lambda max_frame: raw_frame(b"\x00" * 100, size=max_frame + 1), "exceeds max-frame-size"),
    (lambda max_frame: raw_frame(b"", size=4), "below the minimum of 8"),
    (lambda max_frame: raw_frame(b"", size=0), "below the minimum of 8"),
    (lambda max_frame: raw_frame(b"\x00\x53\x13\x45", doff=1), "data offset 1"),
    (lambda max_frame: raw_frame(b"\x00\x53\x13\x45", doff=0), "data offset 0"),
    (lambda max_frame: (12).to_bytes(4, "big") + bytes([4, 0, 0, 0]) + b"\x00" * 4, "beyond the frame size"),
    (lambda max_frame: raw_frame(b"\x00\x53\x13\x45", ftype=7), "unknown frame type 7"),
], ids=["oversized", "size-4", "size-0", "doff-1", "doff-0", "doff-beyond-size", "frame-type-7"])
def test_bad_frame_header_is_a_framing_error(broker, bystander, make, text):
    with opened(broker) as c:
        max_frame = c.remote_open.field(2)
        assert max_frame, "the broker advertises its max-frame-size"
        c.send(make(max_frame))
        close = c.expect_close(FRAMING_ERROR)
        assert text in close.error.description
        assert_logged_once(broker, c, bystander, FRAMING_ERROR)


def test_frame_exactly_max_frame_size_is_fine(broker, bystander):
    with opened(broker) as c:
        max_frame = c.remote_open.field(2)
        ch = c.begin(0)
        queue_with_producer(c, ch, "maxframe")
        # One transfer frame of exactly max-frame-size bytes.
        head = raw_frame(_body(TRANSFER, [uint(0), uint(0), b"t", uint(0), True]))
        body = encode_message(b"")
        filler = max_frame - len(head) - len(body)
        message = encode_message(b"x" * (filler - 3))   # binary body: vbin32 header grows by 3
        frame = raw_frame(_body(TRANSFER, [uint(0), uint(0), b"t", uint(0), True]) + message)
        assert len(frame) == max_frame, (len(frame), max_frame)
        c.send(frame)
        c.flow(ch, echo=True)
        c.expect(FLOW, ch, skip=(DISPOSITION,))
        c.close_cleanly()
    assert lines_about(broker, c) == []
    bystander.check()


@pytest.mark.parametrize("when", ["before-open", "after-open", "mid-transfer"])
def test_truncated_frame_then_half_close(broker, bystander, when):
    with RawClient.connect(broker) as c:
        assert c.sasl() == 0
        assert c.amqp_header() == AMQP_HEADER
        if when == "before-open":
            c.send(raw_frame(b"\x00" * 992, size=1000)[:100])
        else:
            c.open()
            if when == "after-open":
                c.send(raw_frame(b"\x00" * 992, size=1000)[:100])
            else:
                ch = c.begin(0)
                queue_with_producer(c, ch, "truncated")
                frames = split_frames(c.transfer_frames(ch, 0, encode_message(b"y" * 200000)))
                assert len(frames) > 2
                c.send(frames[0] + frames[1][:len(frames[1]) // 2])
        c.shutdown_write()
        close = c.expect_close(FRAMING_ERROR)
        assert "ended inside a frame" in close.error.description
        assert_logged_once(broker, c, bystander, FRAMING_ERROR)
    # The half-sent message was never delivered.
    if when == "mid-transfer":
        with opened(broker) as r:
            ch = r.begin(0)
            r.attach(ch, "check", 0, RECEIVER, src=source("truncated"), tgt=target())
            assert r.receive_all(ch, 0, credit=10) == []
            r.close_cleanly()


UNDECODABLE = {
    "list-size-beyond-body": b"\x00\x53\x13\xc0\xff\x05",
    "list-count-beyond-body": b"\x00\x53\x13\xc0\x03\x09\x43\x43",
    "not-described": b"\x45",
    "bad-constructor": b"\x00\x53\x13\xc0\x02\x01\xff",
    "descriptor-cut-short": b"\x00\x80\x00\x00",
    "unknown-symbol-descriptor": b"\x00\xa3\x0eamqp:bogus:list\x45",
    "unknown-numeric-descriptor": b"\x00\x53\x77\x45",
    "sasl-performative-in-amqp-frame": b"\x00\x53\x41\xc0\x03\x01\xa3\x00",
    "body-not-a-list": b"\x00\x53\x13\xa1\x03abc",
    "string-length-beyond-body": b"\x00\x53\x11\xc0\x06\x01\xa1\xf0abc",
    "invalid-utf8": b"\x00\x53\x12\xc0\x08\x03\xa1\x02\xff\xfe\x43\x42",
    "map-odd-count": b"\x00\x53\x10\xc0\x0a\x0a" + b"\x40" * 9 + b"\xc1\x03\x01\x40",
}


@pytest.mark.parametrize("body", UNDECODABLE.values(), ids=UNDECODABLE.keys())
def test_undecodable_performative_is_a_decode_error(broker, bystander, body):
    with opened(broker) as c:
        c.begin(0)
        c.send(raw_frame(body))
        c.expect_close(DECODE_ERROR)
        assert_logged_once(broker, c, bystander, DECODE_ERROR)


MALFORMED_FIELDS = {
    "attach-without-handle": (ATTACH, ["link"]),
    "attach-handle-is-a-string": (ATTACH, ["link", "zero", False]),
    "attach-handle-is-a-list": (ATTACH, ["link", [1], False]),
    "attach-role-missing": (ATTACH, ["link", uint(0)]),
    "attach-name-is-a-number": (ATTACH, [5, uint(0), False]),
    "attach-source-is-a-string": (ATTACH, ["link", uint(0), True, None, None, "q"]),
    "attach-source-durable-is-a-string": (ATTACH, ["link", uint(0), True, None, None,
                                                   Described(ulong(0x28), ["q", "very"])]),
    "flow-without-windows": (FLOW, [uint(0)]),
    "flow-handle-is-negative": (FLOW, [uint(0), uint(1), uint(0), uint(1), -1]),
    "disposition-empty": (DISPOSITION, []),
    "disposition-first-is-a-string": (DISPOSITION, [True, "0"]),
    "disposition-role-is-a-number": (DISPOSITION, [1, uint(0)]),
    "transfer-without-handle": (TRANSFER, []),
    "transfer-handle-is-a-map": (TRANSFER, [{"a": 1}, uint(0)]),
    "transfer-more-is-a-string": (TRANSFER, [uint(0), uint(0), b"t", uint(0), False, "yes"]),
    "detach-without-handle": (DETACH, []),
    "detach-closed-is-a-number": (DETACH, [uint(0), 1]),
    "end-error-is-a-string": (END, ["oops"]),
    "begin-without-next-outgoing-id": (BEGIN, [None, None, uint(10), uint(10)]),
    "begin-window-too-large": (BEGIN, [None, uint(0), 1 << 40, uint(10)]),
}


@pytest.mark.parametrize("code, fields", MALFORMED_FIELDS.values(), ids=MALFORMED_FIELDS.keys())
def test_malformed_performative_fields_are_a_decode_error(broker, bystander, code, fields):
    with opened(broker) as c:
        ch = c.begin(0)
        c.send_frame(1 if code == BEGIN else ch, code, fields)
        close = c.expect_close(DECODE_ERROR)
        assert close.error.description
        assert_logged_once(broker, c, bystander, DECODE_ERROR)


def test_malformed_open_is_a_decode_error(broker, bystander):
    with RawClient.connect(broker) as c:
        assert c.sasl() == 0
        assert c.amqp_header() == AMQP_HEADER
        c.send_frame(0, OPEN, [None, None, "big"])
        close = c.expect_close(DECODE_ERROR)
        assert "container-id" in close.error.description
        assert_logged_once(broker, c, bystander, DECODE_ERROR)


@pytest.mark.parametrize("code, fields", [
    (FLOW, [uint(0), uint(100), uint(0), uint(100)]),
    (ATTACH, ["l", uint(0), False, None, None, source("a"), target("b")]),
    (TRANSFER, [uint(0), uint(0), b"t", uint(0), True]),
    (DISPOSITION, [True, uint(0), None, True]),
    (DETACH, [uint(0), True]),
    (END, []),
], ids=["flow", "attach", "transfer", "disposition", "detach", "end"])
def test_frame_on_unknown_channel(broker, bystander, code, fields):
    with opened(broker) as c:
        c.begin(0)
        c.send_frame(7, code, fields, payload=encode_message("x") if code == TRANSFER else b"")
        close = c.expect_close(NOT_ALLOWED)
        assert "unknown channel 7" in close.error.description
        assert_logged_once(broker, c, bystander, NOT_ALLOWED)


def test_begin_on_a_channel_in_use(broker, bystander):
    with opened(broker) as c:
        c.begin(3)
        c.send_frame(3, BEGIN, [None, uint(0), uint(100), uint(100)])
        close = c.expect_close(FRAMING_ERROR)
        assert "already in use" in close.error.description
        assert_logged_once(broker, c, bystander, FRAMING_ERROR)


# ---------------------------------------------------------------------------------------------------
# Session errors: end with the condition; the connection (and a new session on it) carries on
# ---------------------------------------------------------------------------------------------------
def _session_still_usable(c, channel):
    """After an error end: answer it, begin again on the same channel, use it, close cleanly."""
    c.end(channel)
    ch = c.begin(channel)
    queue_with_producer(c, ch, "after-end-%d" % c.local_port)
    c.transfer(ch, 0, encode_message("fine"))
    c.close_cleanly()


@pytest.mark.parametrize("code, fields", [
    (TRANSFER, [uint(42), uint(0), b"t", uint(0), False]),
    (FLOW, [uint(0), uint(100), uint(0), uint(100), uint(42), uint(0), uint(10)]),
    (DETACH, [uint(42), True]),
], ids=["transfer", "flow", "detach"])
def test_unattached_handle_ends_the_session(broker, bystander, code, fields):
    with opened(broker) as c:
        ch = c.begin(0)
        queue_with_producer(c, ch, "unattached", handle=0)   # handle 0 is attached, 42 is not
        c.send_frame(0, code, fields, payload=encode_message("x") if code == TRANSFER else b"")
        end = c.expect_end(UNATTACHED_HANDLE, channel=ch)
        assert "42" in end.error.description
        assert_logged_once(broker, c, bystander, UNATTACHED_HANDLE)
        _session_still_usable(c, 0)
    assert len(lines_about(broker, c)) == 1


def test_transfer_on_a_receiving_links_handle_ends_the_session(broker, bystander):
    with opened(broker) as c:
        ch = c.begin(0)
        queue_with_producer(c, ch, "wrongway", handle=0)
        c.attach(ch, "consumer", 1, RECEIVER, src=source("wrongway"), tgt=target())
        # Handle 1 is a link on which the broker sends: a transfer from the client is not allowed.
        c.send_frame(0, TRANSFER, [uint(1), uint(0), b"t", uint(0), True], encode_message("x"))
        c.expect_end(UNATTACHED_HANDLE, channel=ch)
        assert_logged_once(broker, c, bystander, UNATTACHED_HANDLE)
        _session_still_usable(c, 0)


def test_attach_reusing_a_live_handle_ends_the_session(broker, bystander):
    with opened(broker) as c:
        ch = c.begin(0)
        queue_with_producer(c, ch, "handles", handle=5)
        c.attach(ch, "second", 5, SENDER, src=source("me"), tgt=target("handles"), wait=False)
        end = c.expect_end(HANDLE_IN_USE, channel=ch)
        assert "5" in end.error.description
        assert_logged_once(broker, c, bystander, HANDLE_IN_USE)
        _session_still_usable(c, 0)


def test_disposition_for_unknown_deliveries_is_ignored(broker, bystander):
    """Dispositions name deliveries, not handles: settling ids the broker never sent is a no-op (2.6.12)."""
    with opened(broker) as c:
        ch = c.begin(0)
        c.disposition(ch, 1000, 2000)
        c.disposition(ch, 0xFFFFFFF0, 5)       # a range that wraps around
        c.flow(ch, echo=True)
        c.expect(FLOW, ch)
        c.close_cleanly()
    assert lines_about(broker, c) == []
    bystander.check()
    assert_no_trouble(broker)


def test_frames_for_a_session_the_broker_ended_are_ignored_until_end(broker, bystander):
    with opened(broker) as c:
        ch = c.begin(0)
        c.send_frame(0, DETACH, [uint(9), True])
        c.expect_end(UNATTACHED_HANDLE, channel=ch)
        # The peer has not seen our end yet: its frames in flight are dropped, not errors.
        c.send_frame(0, FLOW, [uint(0), uint(100), uint(0), uint(100), uint(9), uint(0), uint(1)])
        c.send_frame(0, TRANSFER, [uint(9), uint(0), b"t", uint(0), True], encode_message("x"))
        _session_still_usable(c, 0)
    assert len(lines_about(broker, c)) == 1
    bystander.check()


# ---------------------------------------------------------------------------------------------------
# Link errors: the broker answers the attach and detaches with the condition; the session carries on
# ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("role", [RECEIVER, SENDER], ids=["consumer", "producer"])
def test_attach_to_unknown_node_is_detached_with_not_found(broker, bystander, role):
    with opened(broker) as c:
        ch = c.begin(0)
        if role == RECEIVER:
            reply = c.attach(ch, "ghost", 0, RECEIVER, src=source("no-such-queue"), tgt=target())
            assert reply.field(5) is None                         # null source: refused
        else:
            reply = c.attach(ch, "ghost", 0, SENDER, src=source("me"), tgt=target("no-such-queue"))
            assert reply.field(6) is None                         # null target: refused
        detach = c.expect_detach(NOT_FOUND, handle=reply.field(1), channel=ch)
        assert "no-such-queue" in detach.error.description
        # Frames the client sent before it saw the detach are dropped, not errors.
        c.flow(ch, 0, credit=10, drain=True)
        if role == SENDER:
            c.transfer(ch, 0, encode_message("lost"))
        c.detach(ch, 0)
        # The session is fine: the same handle can be used again.
        queue_with_producer(c, ch, "found")
        c.close_cleanly()
    assert_logged_once(broker, c, bystander, NOT_FOUND)


def test_undecodable_message_is_rejected_not_fatal(broker, bystander):
    with opened(broker) as c:
        ch = c.begin(0)
        queue_with_producer(c, ch, "garbled")
        bad = c.transfer(ch, 0, b"\x00\x53\x77\xc0\xff")       # not a message
        good = c.transfer(ch, 0, encode_message("fine"))
        outcomes = {}
        while len(outcomes) < 2:
            d = c.expect(DISPOSITION, ch, skip=(FLOW,))
            for did in range(d.field(1), d.field(2, d.field(1)) + 1):
                outcomes[did] = d.field(4)
        assert outcomes[bad].descriptor == 0x25                 # rejected
        assert str(outcomes[bad].value[0].value[0]) == DECODE_ERROR
        assert outcomes[good].descriptor == 0x24                # accepted
        c.attach(ch, "check", 1, RECEIVER, src=source("garbled"), tgt=target())
        got = c.receive_all(ch, 1, credit=10)
        assert [bare(m) for _, m in got] == [encode_message("fine")]
        c.close_cleanly()
    assert lines_about(broker, c) == []
    bystander.check()
    assert_no_trouble(broker)


def test_message_with_undecodable_application_properties_is_rejected(broker, bystander):
    """scan_message accepts a map with a list as a key; it only fails when a headers exchange
    decodes the application-properties. That message is rejected; the link goes on."""
    with opened(broker) as c:
        ch = c.begin(0)
        c.attach(ch, "headers-sub", 1, RECEIVER, src=source("amq.match"), tgt=target())
        c.attach(ch, "headers-pub", 0, SENDER, src=source("me"), tgt=target("amq.match"))
        c.expect(FLOW, ch)
        bad = c.transfer(ch, 0, b"\x00\x53\x74\xc1\x03\x02\x45\x41" + encode_message("bad"))
        good = c.transfer(ch, 0, encode_message("good"))
        outcomes = {}
        while len(outcomes) < 2:
            d = c.expect(DISPOSITION, ch, skip=(FLOW,))
            for did in range(d.field(1), d.field(2, d.field(1)) + 1):
                outcomes[did] = d.field(4)
        assert outcomes[bad].descriptor == 0x25                 # rejected
        assert str(outcomes[bad].value[0].value[0]) == DECODE_ERROR
        assert outcomes[good].descriptor == 0x24
        got = c.receive_all(ch, 1, credit=10)
        assert [bare(m) for _, m in got] == [encode_message("good")]
        c.close_cleanly()
    assert lines_about(broker, c) == []
    bystander.check()
    assert_no_trouble(broker)


def test_aborted_multi_frame_delivery_never_appears(broker, bystander):
    with opened(broker) as c:
        ch = c.begin(0)
        queue_with_producer(c, ch, "aborted")
        frames = split_frames(c.transfer_frames(ch, 0, encode_message(b"z" * 200000)))
        c.send(b"".join(frames[:2]))
        c.send_frame(ch, TRANSFER, [uint(0), None, None, None, None, False, None, None, None, True])
        c.transfer(ch, 0, encode_message("after"))
        c.attach(ch, "check", 1, RECEIVER, src=source("aborted"), tgt=target())
        got = c.receive_all(ch, 1, credit=10)
        assert [bare(m) for _, m in got] == [encode_message("after")]
        c.close_cleanly()
    assert lines_about(broker, c) == []
    bystander.check()
    assert_no_trouble(broker)


# The transfer's descriptor as the specification allows it besides 00 53 14: a ulong (00 80 + 8 bytes)
# or the symbol amqp:transfer:list. The message must arrive as with the short form.
LONG_DESCRIPTORS = {
    "ulong": b"\x00\x80" + (0x14).to_bytes(8, "big"),
    "sym8": b"\x00\xa3\x12amqp:transfer:list",
}


@pytest.mark.parametrize("descriptor", LONG_DESCRIPTORS.values(), ids=LONG_DESCRIPTORS.keys())
def test_transfer_with_a_long_descriptor_is_delivered(broker, bystander, descriptor):
    queue = "long-descriptor-%d" % len(descriptor)
    with opened(broker) as c:
        ch = c.begin(0)
        queue_with_producer(c, ch, queue)
        frames = c.transfer_frames(ch, 0, encode_message("via " + queue), settled=True)
        size = int.from_bytes(frames[:4], "big")
        doff = frames[4] * 4
        body = frames[doff:size]
        assert body[:3] == b"\x00\x53\x14"
        body = descriptor + body[3:]
        c.send((doff + len(body)).to_bytes(4, "big") + frames[4:doff] + body)
        bystander.check()
    conn = BlockingConnection(broker.url, timeout=10)
    try:
        receiver = conn.create_receiver(queue)
        assert receiver.receive(timeout=10).body == "via " + queue
    finally:
        conn.close()
    assert_no_trouble(broker)
