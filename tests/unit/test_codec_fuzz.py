"""Fuzz: random, garbage and mutated bytes into every decoding entry point of the codec.

Only DecodeError may come out: never another exception, a hang, or a crash."""
import struct

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cypid.pyx import codec as c
from cypid.pyx.codec import (DecodeError, Described, FrameReader, decode, decode_at, decode_performative,
                             encode, encode_frame, encode_transfer_frames, scan_message, symbol, uint, ulong)
from test_codec_helpers import values
from test_frames import PERFORMATIVES

FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _section(code, value):
    return encode(Described(ulong(code), value))


MESSAGE = b"".join([
    _section(0x70, [True, c.ubyte(7), uint(5000), None, uint(2)]),
    _section(0x71, {symbol("x-opt-d"): 1}),
    _section(0x72, {symbol("x-opt-m"): "v", symbol("x-opt-n"): [1, 2]}),
    _section(0x73, ["id-1", b"user", "q1", "subj", "reply", None, symbol("text/plain"), None,
                    c.timestamp(1), c.timestamp(2), "g", uint(1), "rg"]),
    _section(0x74, {"k": 1, "s": "v", "f": 1.5}),
    _section(0x75, b"body" * 10),
    _section(0x78, {symbol("f"): 1}),
])

SEEDS = [
    MESSAGE,
    encode([1, "a", {symbol("k"): c.Array(0xA3, [symbol("x")])}, Described(ulong(1), None)]),
    encode(c.Array(0xC0, [[1, 2], [c.Array(0x70, [uint(1)])]], descriptor=symbol("d"))),
    encode({"m": {"n": [None, True, 1.0, c.float32(2.0), c.char("x"), c.timestamp(5)]}}),
] + [encode_frame(0, code, fields)[8:] for code, fields in PERFORMATIVES.items()]

STREAM = (b"AMQP\x00\x01\x00\x00"
          + b"".join(encode_frame(1, code, fields) for code, fields in PERFORMATIVES.items())
          + encode_transfer_frames(1, 0, 0, b"t", False, MESSAGE, 512))


def check_all(data):
    """Every decoder on data: DecodeError or success only."""
    for fn in (decode, decode_performative, scan_message):
        try:
            fn(data)
        except DecodeError:
            pass
    try:
        v, end = decode_at(data, 0)
        assert 0 < end <= len(data)
    except DecodeError:
        pass
    try:
        info = scan_message(data)
    except DecodeError:
        pass
    else:
        assert 0 <= info.bare_offset <= info.size == len(data)
        for getter in (info.application_properties, info.message_annotations, info.properties):
            try:
                getter()
            except DecodeError:
                pass
    r = FrameReader(max_frame_size=4096)
    try:
        r.feed(data)
        r.read_protocol_header()
        while (f := r.next_frame()) is not None:
            try:
                decode_performative(f[2])
            except DecodeError:
                pass
    except DecodeError:
        pass


@st.composite
def mutated(draw, seeds=SEEDS):
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate", "dup"]))
        if not data:
            break
        i = draw(st.integers(0, len(data) - 1))
        if op == "flip":
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "set":
            data[i] = draw(st.sampled_from([0x00, 0xFF, 0x40, 0x45, 0xA1, 0xB0, 0xC0, 0xD0, 0xE0, 0xF0,
                                            0x7F, 0x80, draw(st.integers(0, 255))]))
        elif op == "insert":
            data[i:i] = draw(st.binary(min_size=1, max_size=4))
        elif op == "delete":
            del data[i:i + draw(st.integers(1, 4))]
        elif op == "truncate":
            del data[i:]
        else:
            data[i:i] = data[i:i + draw(st.integers(1, 16))]
    return bytes(data)


@FUZZ
@given(st.binary(max_size=200))
def test_garbage(data):
    check_all(data)


@FUZZ
@given(mutated())
def test_mutated_seeds(data):
    check_all(data)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(values(max_leaves=8), st.data())
def test_mutated_random_values(v, data):
    check_all(data.draw(mutated(seeds=[encode(v)])))


@FUZZ
@given(st.binary(min_size=1, max_size=60).map(lambda b: bytes([b[0] | 0xC0]) + b[1:]))
def test_compound_headers(data):
    """Garbage after a compound constructor: the interesting case for size/count checks."""
    check_all(data)


@settings(max_examples=200, deadline=None)
@given(mutated(seeds=[STREAM]), st.lists(st.integers(1, 300), max_size=10))
def test_frame_stream_mutations(data, chunks):
    r = FrameReader(max_frame_size=2048)
    pos = 0
    header = None
    try:
        for n in chunks + [len(data)]:
            r.feed(data[pos:pos + n])
            pos += n
            if header is None:
                header = r.read_protocol_header()
                if header is None:
                    continue
            while (f := r.next_frame()) is not None:
                try:
                    decode_performative(f[2])
                except DecodeError:
                    pass
    except DecodeError:
        pass


def test_deep_nesting_of_every_compound():
    for opener in (b"\xc0\xff\x01", b"\xe0\xff\x01\xe0", b"\x00\x53\x00", b"\xc1\xff\x02\x40"):
        data = opener * 1000 + b"\x40" * 10
        check_all(data)
    # Deep but valid-length nesting: every level's size matches
    data = b"\x45"
    for _ in range(2000):
        data = b"\xd0" + struct.pack(">II", len(data) + 4, 1) + data
    check_all(data)
