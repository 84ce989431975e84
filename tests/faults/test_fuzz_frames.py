"""FAULT TESTS: fuzzing the broker's frame reader and engine over the wire.

Hypothesis generates byte strings -- random, random after a valid handshake, and mutations of a
valid SASL/open/begin/attach/transfer/flow/disposition/detach/end/close sequence (frames dropped,
duplicated, swapped, cut, bytes changed mostly near frame and performative headers) -- and sends each
on a new connection to one live broker, then half-closes. For every example:

- the broker closes the connection (EOF) within a deadline;
- what it sent is well-formed (protocol headers and frames) and nothing follows a close frame;
- it is still running and its log shows no escaped exception or amqp:internal-error.

A python-qpid-proton bystander connection opened before the first example still sends and receives
at the end. Bounded: ~250 examples, a few seconds each at most, well under a minute in total.
"""
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cypid.pyx.codec import FrameReader, decode_performative, encode_frame, encode_transfer_frames
from tests.support.faults import TROUBLE, assert_no_trouble
from tests.support.rawclient import (
    ACCEPTED, AMQP_HEADER, ATTACH, BEGIN, CLOSE, DETACH, DISPOSITION, END, FLOW, OPEN, SASL_FRAME,
    SASL_HEADER, SASL_INIT, Described, RawClient, encode_message, outcome, source, symbol, target, uint,
    ulong, ushort,
)

QUEUE = "fuzzq"
EOF_DEADLINE = 5.0


def valid_chunks() -> list[bytes]:
    """A whole valid conversation, as the client would pipeline it: protocol headers and frames."""
    message = encode_message("hello", properties=["id-1", None, None, "subject"],
                             application_properties={"colour": "blue", "n": 7})
    return [
        SASL_HEADER,
        encode_frame(0, SASL_INIT, [symbol("ANONYMOUS"), b"anonymous"], frame_type=SASL_FRAME),
        AMQP_HEADER,
        encode_frame(0, OPEN, ["fuzzer", "localhost", uint(65536), ushort(10)]),
        encode_frame(0, BEGIN, [None, uint(0), uint(1000), uint(1000)]),
        encode_frame(0, ATTACH, ["p", uint(0), False, None, None, source("src"),
                                 target(QUEUE, capabilities=["queue", "create-on-demand"]), None, None,
                                 uint(0)]),
        encode_transfer_frames(0, 0, 0, b"\x00", False, message, 65536),
        *_split(encode_transfer_frames(0, 0, 1, b"\x01", True, encode_message(b"x" * 1200), 512)),
        # A headers-exchange subscription and a producer to it: routing decodes application-properties.
        encode_frame(0, ATTACH, ["hs", uint(2), True, None, None, source("amq.match"), target()]),
        encode_frame(0, ATTACH, ["hp", uint(3), False, None, None, source("src"), target("amq.match"),
                                 None, None, uint(0)]),
        encode_transfer_frames(0, 3, 2, b"\x02", True, message, 65536),
        encode_frame(0, DETACH, [uint(3), True]),
        encode_frame(0, DETACH, [uint(2), True]),
        encode_frame(0, ATTACH, ["c", uint(1), True, None, None, source(QUEUE), target()]),
        encode_frame(0, FLOW, [uint(3), uint(1000), uint(0), uint(1000), uint(1), uint(0), uint(5),
                               None, False, True]),
        encode_frame(0, DISPOSITION, [True, uint(0), uint(1), True, outcome(ACCEPTED)]),
        encode_frame(0, DETACH, [uint(1), True]),
        encode_frame(0, DETACH, [uint(0), True]),
        encode_frame(0, END, []),
        encode_frame(0, CLOSE, []),
    ]


def _split(data):
    out, i = [], 0
    while i < len(data):
        size = int.from_bytes(data[i:i + 4], "big")
        out.append(data[i:i + size])
        i += size
    return out


VALID = valid_chunks()
HANDSHAKE = b"".join(VALID[:4])            # through open
SESSION = b"".join(VALID[:5])              # through begin


values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-2**63, 2**64 - 1), st.text(max_size=8),
              st.binary(max_size=8), st.sampled_from([uint(0), uint(1), uint(2**32 - 1), ushort(0),
                                                      symbol("queue"), symbol("amqp:accepted:list"),
                                                      symbol("create-on-demand"), symbol("copy")])),
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.one_of(st.text(max_size=6), st.sampled_from([symbol("durable"),
                        symbol("exclusive"), symbol("x-match")])), children, max_size=3),
        st.builds(Described, st.sampled_from([ulong(0x24), ulong(0x25), ulong(0x27), ulong(0x28),
                                              ulong(0x29), ulong(0x1d), symbol("amqp:source:list")]),
                  st.lists(children, max_size=5) | children)),
    max_leaves=6)


def _replace_field(draw, chunk: bytes) -> bytes:
    """Decode the frame's performative, put a random value in one field, encode it again."""
    if len(chunk) < 12 or chunk[:4] == b"AMQP":
        return chunk
    reader = FrameReader(1 << 24)
    reader.feed(chunk)
    try:
        ftype, channel, body = reader.next_frame()
        code, fields, payload = decode_performative(body)
    except (ValueError, TypeError):   # an earlier mutation broke it already
        return chunk
    fields = list(fields) + [None] * max(0, 11 - len(fields))
    fields[draw(st.integers(0, 10))] = draw(values)
    try:
        return encode_frame(channel, code, fields, payload, ftype)
    except ValueError:          # not encodable (e.g. an int out of every range): leave it
        return chunk


@st.composite
def mutations(draw):
    chunks = list(VALID)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["byte", "byte", "field", "field", "field", "drop", "dup", "swap", "insert",
                                   "replace", "cut"]))
        i = draw(st.integers(0, len(chunks) - 1))
        chunk = bytearray(chunks[i])
        if op == "byte" and chunk:
            # Mostly the frame header and the performative's first bytes.
            limit = min(len(chunk), draw(st.sampled_from([8, 24, 64, len(chunk)])))
            pos = draw(st.integers(0, limit - 1))
            chunk[pos] = draw(st.sampled_from([0, 1, 2, 0x40, 0x45, 0x53, 0x7f, 0x80, 0xa1, 0xc0, 0xd0, 0xff])
                              | st.integers(0, 255))
            chunks[i] = bytes(chunk)
        elif op == "field":
            chunks[i] = _replace_field(draw, chunks[i])
        elif op == "drop" and len(chunks) > 1:
            del chunks[i]
        elif op == "dup":
            chunks.insert(i, chunks[i])
        elif op == "swap":
            j = draw(st.integers(0, len(chunks) - 1))
            chunks[i], chunks[j] = chunks[j], chunks[i]
        elif op == "insert":
            chunks.insert(i, draw(st.binary(min_size=1, max_size=24)))
        elif op == "replace":
            chunks[i] = draw(st.binary(max_size=64))
        elif op == "cut":
            data = b"".join(chunks)
            return data[:draw(st.integers(0, len(data)))]
    return b"".join(chunks)


inputs = st.one_of(
    st.binary(max_size=256),                                  # garbage from the first byte
    st.binary(max_size=512).map(lambda b: HANDSHAKE + b),     # garbage after open
    st.binary(max_size=512).map(lambda b: SESSION + b),       # garbage after begin
    mutations(), mutations(), mutations(),
)


def parse_output(data: bytes) -> list:
    """The broker's output as [header bytes | (type, channel, code)]; AssertionError if malformed."""
    out, i = [], 0
    reader = FrameReader(1 << 24)
    while i < len(data):
        if data[i:i + 4] == b"AMQP":
            assert len(data) - i >= 8, "cut protocol header %r" % data[i:]
            out.append(data[i:i + 8])
            i += 8
            continue
        assert len(data) - i >= 8, "cut frame header %r" % data[i:]
        size = int.from_bytes(data[i:i + 4], "big")
        assert 8 <= size <= len(data) - i, "bad or cut frame (size %d, %d left)" % (size, len(data) - i)
        reader.feed(data[i:i + size])
        ftype, channel, body = reader.next_frame()
        code = decode_performative(body)[0] if body else None
        out.append((ftype, channel, code))
        i += size
    return out


def converse(broker, data: bytes) -> bytes:
    """Send data on a new connection, half-close, return all the broker sent until its EOF."""
    c = RawClient(broker.host, broker.port, timeout=EOF_DEADLINE)
    try:
        c.send(data)
        c.shutdown_write()
        received = bytearray()
        deadline = time.monotonic() + EOF_DEADLINE
        while True:
            remaining = deadline - time.monotonic()
            assert remaining > 0, "the broker did not close the connection within %ss; sent %r" \
                % (EOF_DEADLINE, bytes(received[:200]))
            c.sock.settimeout(remaining)
            try:
                chunk = c.sock.recv(65536)
            except ConnectionResetError:
                chunk = b""
            except TimeoutError:
                continue
            if not chunk:
                return bytes(received)
            received += chunk
    finally:
        c.close()


@pytest.fixture
def fuzz_broker(broker, bystander):
    yield broker
    bystander.check()
    assert_no_trouble(broker)


@settings(max_examples=250, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.data_too_large])
@given(data=inputs)
def test_fuzzed_input_never_hurts_the_broker(fuzz_broker, data):
    broker = fuzz_broker
    start = len(broker.log_text())
    output = converse(broker, data)
    frames = parse_output(output)
    closes = [i for i, f in enumerate(frames) if isinstance(f, tuple) and f[0] == 0 and f[2] == CLOSE]
    if closes:
        assert closes[0] == len(frames) - 1, "frames after the close: %r" % frames
    assert broker.is_running(), "the broker died"
    new_log = broker.log_text()[start:]
    bad = [line for line in new_log.splitlines() if TROUBLE.search(line)]
    assert not bad, "input %r made the broker log:\n%s" % (data, "\n".join(bad))


def test_valid_sequence_is_valid(broker, bystander):
    """The fuzzer's seed conversation works as is: the mutations start from something meaningful."""
    output = converse(broker, b"".join(VALID))
    frames = [f for f in parse_output(output) if isinstance(f, tuple)]
    codes = [f[2] for f in frames if f[0] == 0]
    assert codes[:3] == [OPEN, BEGIN, ATTACH]
    assert codes[-1] == CLOSE
    assert codes.count(0x14) >= 2             # both messages came back on the consumer link
    assert broker.log_lines(r"warning|error") == []
    bystander.check()
