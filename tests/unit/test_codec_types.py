"""AMQP 1.0 type codec: exact encodings, round trips, and interop with proton in both directions."""
import math
import struct
import uuid

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from cypid.pyx import codec as c
from cypid.pyx.codec import DecodeError, EncodeError, decode, decode_at, encode
from test_codec_helpers import (SCALARS, arrays, from_proton, proton_decode, proton_encode, proton_safe,
                                same, to_proton, values)

PROPS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# --- exact encodings: the compact form is chosen ---------------------------------------------

@pytest.mark.parametrize("value, hexed", [
    (None, "40"),
    (True, "41"),
    (False, "42"),
    (c.ubyte(7), "5007"),
    (c.ushort(0x1234), "601234"),
    (c.uint(0), "43"),
    (c.uint(255), "52ff"),
    (c.uint(256), "7000000100"),
    (c.ulong(0), "44"),
    (c.ulong(0x10), "5310"),
    (c.ulong(256), "800000000000000100"),
    (c.byte(-1), "51ff"),
    (c.short(-2), "61fffe"),
    (c.int32(-1), "54ff"),
    (c.int32(128), "7100000080"),
    (0, "5500"),
    (-128, "5580"),
    (128, "810000000000000080"),
    (c.float32(1.0), "723f800000"),
    (1.0, "823ff0000000000000"),
    (c.char("A"), "7300000041"),
    (c.char("\U0001f600"), "730001f600"),
    (c.timestamp(1), "830000000000000001"),
    (c.decimal32(b"\x01\x02\x03\x04"), "7401020304"),
    (c.decimal64(b"\x00" * 8), "84" + "00" * 8),
    (c.decimal128(b"\x11" * 16), "94" + "11" * 16),
    (uuid.UUID(int=1), "98" + "00" * 15 + "01"),
    (b"", "a000"),
    (b"ab", "a0026162"),
    (b"x" * 256, "b000000100" + "78" * 256),
    ("", "a100"),
    ("é", "a102c3a9"),
    (c.symbol("ab"), "a3026162"),
    (c.symbol("s" * 256), "b300000100" + "73" * 256),
    ([], "45"),
    ([None], "c0020140"),
    ({}, "c10100"),
    ({"a": None}, "c10502a1016140"),
    (c.Described(c.ulong(0x24), []), "00532445"),
    (c.Array(0xa3, [c.symbol("a")]), "e00401a30161"),
    (c.Array(0x70, [c.uint(1), c.uint(2)]), "e004025201" + "02"),
    (c.Array(0x70, [c.uint(1), c.uint(256)]), "e00a027000000001" + "00000100"),
    (c.Array(0x56, [True, False]), "e00402560100"),
    (c.Array(0x40, [None, None]), "e0020240"),
    (c.Array(0xa3, []), "e00200a3"),
    (c.Array(0x80, [c.ulong(1)], descriptor=c.symbol("d")), "e00701" + "00a30164" + "5301"),
    (c.Array(0xc0, [[], [None]]), "e00702c0" + "0100" + "020140"),
])
def test_exact_encoding(value, hexed):
    assert encode(value).hex() == hexed
    back = decode(bytes.fromhex(hexed))
    assert same(back, value), (back, value)


def test_wide_forms_chosen_when_needed():
    big = list(range(200))  # 200 smalllongs = 400 bytes > list8
    e = encode(big)
    assert e[0] == 0xd0 and struct.unpack(">II", e[1:9]) == (len(e) - 5, 200)
    m = {str(i): i for i in range(100)}
    e = encode(m)
    assert e[0] == 0xd1 and struct.unpack(">I", e[5:9])[0] == 200
    a = c.Array(0xa1, ["x" * 300])
    e = encode(a)
    assert e[0] == 0xf0 and e[9] == 0xb1
    a = c.Array(0xc0, [list(range(200))])
    e = encode(a)
    assert e[0] == 0xf0 and e[9] == 0xd0
    for v in (big, m, a):
        assert same(decode(encode(v)), v)


def test_wide_and_narrow_forms_decode_alike():
    assert decode(bytes.fromhex("7000000005")) == 5 and type(decode(bytes.fromhex("7000000005"))) is c.uint
    assert decode(bytes.fromhex("b1000000026162")) == "ab"
    assert decode(bytes.fromhex("b3000000026162")) == c.symbol("ab")
    assert decode(bytes.fromhex("d0000000050000000140")) == [None]
    assert decode(bytes.fromhex("d10000000400000000")) == {}
    assert decode(bytes.fromhex("5600")) is False and decode(bytes.fromhex("5601")) is True
    assert decode(bytes.fromhex("e0020241")) == c.Array(0x56, [True, True])
    assert decode(bytes.fromhex("e0020243")) == c.Array(0x70, [c.uint(0), c.uint(0)])


def test_python_types_and_wrappers():
    assert type(decode(encode(5))) is int
    assert type(decode(encode(5.5))) is float
    assert type(decode(encode("s"))) is str
    assert type(decode(encode(b"s"))) is bytes
    assert decode(encode((1, 2))) == [1, 2]
    assert decode(encode(bytearray(b"ab"))) == b"ab"
    assert c.uint(3) == 3 and c.symbol("a") == "a" and hash(c.symbol("a")) == hash("a")
    assert repr(c.symbol("a")) == "symbol('a')" and repr(c.ulong(3)) == "ulong(3)"
    assert c.Described(c.ulong(1), [1]) == c.Described(c.ulong(1), [1])
    assert c.Array(0xb3, ["a"]).code == 0xa3 and c.Array(0x52, []).code == 0x70
    with pytest.raises(ValueError):
        c.Array(0x00, [])


def test_decode_at():
    data = encode(1) + encode("ab") + encode([None])
    v, end = decode_at(data, 0)
    assert v == 1 and end == 2
    v, end = decode_at(data, end)
    assert v == "ab" and end == 6
    v, end = decode_at(data, end)
    assert v == [None] and end == len(data)
    with pytest.raises(DecodeError):
        decode_at(data, len(data))
    with pytest.raises(DecodeError):
        decode_at(data, len(data) + 1)


@pytest.mark.parametrize("value", [
    c.ubyte(256), c.ubyte(-1), c.ushort(65536), c.uint(2**32), c.uint(-1), c.ulong(2**64), c.byte(128),
    c.short(-32769), c.int32(2**31), 2**63, -(2**63) - 1, c.timestamp(2**63), c.symbol("é"),
    c.decimal32(b"123"), c.char("ab"), "\ud800", c.Array(0x70, [-1]), c.Array(0x56, [1]),
    c.Array(0x40, [1]), c.Array(0xc0, [1]), c.Array(0xe0, [[1]]), object(), {1, 2},
    c.Array(0x70, [1.5]), c.Array(0x71, [None]), c.Array(0x81, ["1"]), c.Array(0x72, ["x"]),
    c.Array(0x82, [None]), c.Array(0xa1, [1]), c.Array(0xa3, [b"x"]), c.Array(0xa0, ["x"]),
    c.Array(0x98, ["x"]), c.Array(0x73, [1]), c.Array(0x74, [b"12"]),
])
def test_encode_errors(value):
    with pytest.raises(EncodeError):
        encode(value)


def test_encode_refuses_cycles_and_depth():
    a = []
    a.append(a)
    with pytest.raises(EncodeError, match="nested deeper"):
        encode(a)
    deep = []
    for _ in range(150):
        deep = [deep]
    with pytest.raises(EncodeError):
        encode(deep)


@pytest.mark.parametrize("hexed, match", [
    ("", "truncated value constructor at offset 0"),
    ("4040", "1 trailing bytes after the value at offset 1"),
    ("ff", "invalid constructor 0xff at offset 0"),
    ("5602", "invalid boolean byte 0x02 at offset 1"),
    ("70000001", "truncated uint at offset 1"),
    ("a105616263", "string at offset 2 declares 5 bytes, only 3 left"),
    ("b1ffffffff61", "declares 4294967295 bytes"),
    ("a102c328", "invalid utf-8 in string at offset 2"),
    ("a301ff", "non-ascii byte in symbol at offset 2"),
    ("7300110000", "char code point 0x110000 out of range at offset 1"),
    ("c00503404040", "list at offset 0 declares 5 bytes, only 4 left"),
    ("c0020240", "list at offset 0: 2 items cannot fit in 1 bytes"),
    ("c0000140", "list at offset 0: size 0 is smaller than its count field"),
    ("c003014040", "1 unexpected bytes at the end of a list"),
    ("c1030140 40", "odd number of items"),
    ("c103024540", "map at offset 0 has an unhashable key of type list"),
    ("e00202ff", "invalid array element constructor 0xff at offset 3"),
    ("e00401004000", "array element constructor is described twice"),
    ("e0050270010203", "array of 2 elements of 4 bytes does not match its size"),
    ("f00000000cffffffff40", "array at offset 0 declares 12 bytes, only 5 left"),
    ("d000000004ffffffff", "list at offset 0: 4294967295 items cannot fit in 0 bytes"),
    ("005310", "truncated value constructor at offset 3"),
])
def test_decode_errors(hexed, match):
    with pytest.raises(DecodeError, match=match):
        decode(bytes.fromhex(hexed.replace(" ", "")))


def test_decode_depth_cap():
    data = bytes.fromhex("45")
    for _ in range(200):
        data = b"\xd0" + struct.pack(">II", len(data) + 4, 1) + data
    with pytest.raises(DecodeError, match="nested deeper than 100"):
        decode(data)
    described = b"\x00\x53\x01" * 300 + b"\x40"
    with pytest.raises(DecodeError, match="nested deeper than 100"):
        decode(described)
    ok = bytes.fromhex("45")
    for _ in range(99):
        ok = b"\xc0" + bytes([len(ok) + 1, 1]) + ok if len(ok) < 250 else \
            b"\xd0" + struct.pack(">II", len(ok) + 4, 1) + ok
    assert decode(ok) is not None


def test_zero_width_array_bomb_is_refused():
    # An array32 of 2**32-1 nulls takes 10 bytes: the decoder must not build that list.
    bomb = b"\xf0" + struct.pack(">II", 5, 0xFFFFFFFF) + b"\x40"
    with pytest.raises(DecodeError, match="zero-width"):
        decode(bomb)


def test_decode_accepts_buffers():
    e = encode(["a", 1])
    for buf in (e, bytearray(e), memoryview(e), memoryview(b"xx" + e)[2:]):
        assert decode(buf) == ["a", 1]


# --- property tests -----------------------------------------------------------------------

@PROPS
@given(values())
def test_roundtrip(v):
    e = encode(v)
    back = decode(e)
    assert same(back, v), (v, back, e.hex())
    assert encode(back) == e
    assert decode_at(b"\x40" + e, 1) [1] == len(e) + 1


@PROPS
@given(values())
def test_cypid_encode_proton_decode(v):
    assume(proton_safe(v))
    e = encode(v)
    pv, n = proton_decode(e)
    assert n == len(e)
    back = pv
    assert same(back, v), (v, back, e.hex())


@PROPS
@given(values())
def test_proton_encode_cypid_decode(v):
    assume(proton_safe(v))
    e = proton_encode(v)
    back = decode(e)
    assert same(back, v), (v, back, e.hex())
    # and our encoding of it is never longer than proton's
    assert len(encode(back)) <= len(e)


@PROPS
@given(st.one_of(*SCALARS.values()))
def test_scalars_match_proton_bytes_exactly(v):
    """For scalars both encoders should choose the same compact form."""
    if isinstance(v, float) and not isinstance(v, c.float32) and math.isnan(v):
        return  # NaN payloads may be canonicalised
    assert encode(v) == proton_encode(v)


@PROPS
@given(arrays(children=st.integers(-5, 5)))
def test_arrays_roundtrip_with_proton(a):
    e = encode(a)
    assert same(proton_decode(e)[0], a)
    assert same(decode(proton_encode(a)), a)


def test_float32_rounding_and_nan():
    v = c.float32(0.1)
    back = decode(encode(v))
    assert type(back) is c.float32 and back == struct.unpack(">f", struct.pack(">f", 0.1))[0]
    n = decode(encode(float("nan")))
    assert math.isnan(n)
    assert math.isnan(decode(encode(c.float32(float("nan")))))
    assert decode(encode(c.float32(float("inf")))) == float("inf")
    assert math.copysign(1, decode(encode(-0.0))) == -1


def test_described_described_value():
    """00 44 00 44 40 is Described(0, Described(0, null)) (proton 0.40 misreads this one)."""
    v = [c.Described(c.ulong(0), c.Described(c.ulong(0), None)), None]
    assert encode(v).hex() == "c00702004400444040"
    assert same(decode(encode(v)), v)


def test_to_proton_converter_covers_all_types():
    v = [c.decimal32(b"\x00\x00\x00\x01"), c.decimal64(b"\x00" * 7 + b"\x02"), c.decimal128(b"\x03" * 16)]
    assert same(from_proton(to_proton(v)), v)
    assert same(decode(proton_encode(v)), v)
