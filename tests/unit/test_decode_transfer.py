"""codec.decode_transfer: the broker's one-call decode of a transfer frame body.

It must agree with the generic path it replaces -- decode_performative, then the broker's
check_fields (cypid.pyx.performatives, the engine's) -- on every input: the same values for a good transfer, the same error
text for a bad one (malformed bytes first, then the first field of the wrong type), and None only
where the generic path does not see a transfer (or raises).
"""
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cypid.pyx.engine_core import ProtocolViolation
from cypid.pyx.performatives import check_fields
from cypid.pyx import codec as c
from cypid.pyx.codec import (DecodeError, Described, decode_performative, decode_transfer, encode,
                             encode_frame, encode_transfer_frames, symbol, uint, ulong)
from test_codec_helpers import values

TRANSFER = 0x14
SETTINGS = settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def reference(body):
    """The generic path: None (not a transfer), ("error", text), or the tuple decode_transfer returns."""
    try:
        code, fields, payload = decode_performative(body)
    except DecodeError as e:
        return ("error", str(e))
    if code != TRANSFER:
        return None
    try:
        check_fields(code, fields)
    except ProtocolViolation as e:
        return ("error", e.description)

    def get(i):
        return fields[i] if i < len(fields) else None
    did = get(1)
    return (int(fields[0]), None if did is None else int(did), bool(get(4)), bool(get(5)), bool(get(9)),
            payload)


def fast(body):
    try:
        return decode_transfer(body)
    except DecodeError as e:
        return ("error", str(e))


def assert_agrees(body):
    got, want = fast(body), reference(body)
    if got is None:
        assert want is None or want[0] == "error", (body, want)
        return got
    assert got == want, body
    if got[0] != "error":
        handle, did, settled, more, aborted, payload = got
        assert type(handle) is int and (did is None or type(did) is int)
        assert type(settled) is bool and type(more) is bool and type(aborted) is bool
        assert type(payload) is bytes
    return got


def body(fields, payload=b"msg", code=TRANSFER):
    return encode_frame(0, code, fields, payload)[8:]


def test_a_transfer_frame_from_encode_transfer_frames():
    frames = encode_transfer_frames(3, 7, 70000, b"tag", True, b"hello", 65536)
    assert decode_transfer(frames[8:]) == (7, 70000, True, False, False, b"hello")
    assert decode_transfer(bytearray(frames[8:])) == (7, 70000, True, False, False, b"hello")
    assert decode_transfer(memoryview(frames)[8:]) == (7, 70000, True, False, False, b"hello")


def test_continuation_frames_of_a_split_delivery():
    frames = encode_transfer_frames(0, 1, 2, b"t", False, b"x" * 2000, 512)
    got = []
    while frames:
        size = int.from_bytes(frames[:4], "big")
        got.append(decode_transfer(frames[8:size]))
        frames = frames[size:]
    assert len(got) > 3
    middle = [(1, None, False, True, False)] * (len(got) - 2)
    assert [g[:5] for g in got] == [(1, 2, False, True, False)] + middle + [(1, None, False, False, False)]
    assert b"".join(g[5] for g in got) == b"x" * 2000


@pytest.mark.parametrize("code", [0x10, 0x11, 0x12, 0x13, 0x15, 0x16, 0x17, 0x18, 0x41])
def test_other_performatives_are_none(code):
    assert decode_transfer(body([uint(0), True], code=code)) is None


@pytest.mark.parametrize("raw", [b"", b"\x00", b"\x00\x53", b"\x45", b"\x00\x53\x13\x45",
                                 b"\x00\xa3\x03abc\x45", b"\x00\x40\x45", b"\x00\x44\x45"])
def test_not_a_transfer_is_none_and_the_generic_path_decides(raw):
    assert decode_transfer(raw) is None
    assert_agrees(raw)


GOOD = {
    "minimal": [uint(0)],
    "all-fields": [uint(1), uint(2), b"t", uint(0), True, False, c.ubyte(1), Described(ulong(0x24), []),
                   False, False, True],
    "null-fields": [uint(1), None, None, None, None, None, None, None, None, None, None],
    "handle-as-ulong": [ulong(5), ulong(6)],
    "handle-as-long": [5, 70000],
    "handle-as-smallint": [c.int32(5)],
    "handle-as-timestamp": [c.timestamp(5)],          # an int: check_fields lets it through
    "tag-as-decimal32": [uint(0), uint(0), c.decimal32(b"abcd")],
    "big-delivery-id": [uint(0), uint(0xFFFFFFFF)],
    "extension-fields": [uint(0)] + [None] * 10 + ["x", {"k": [1]}],
    "aborted": [uint(0), None, None, None, None, True, None, None, None, True],
    "state-symbolic": [uint(0), uint(1), b"", None, None, None, None,
                       Described(symbol("amqp:accepted:list"), [])],
}


@pytest.mark.parametrize("fields", GOOD.values(), ids=GOOD.keys())
def test_good_transfers(fields):
    got = assert_agrees(body(fields))
    assert got is not None and got[0] != "error"


def test_symbolic_and_wide_descriptors_and_list32():
    enc = encode([uint(9), uint(3), b"t", uint(0), True])
    count, items = enc[2], enc[3:]
    list8 = b"\xc0" + bytes([len(items) + 1, count]) + items
    list32 = b"\xd0" + (len(items) + 4).to_bytes(4, "big") + count.to_bytes(4, "big") + items
    for descriptor in (b"\x53\x14", b"\x80" + (0x14).to_bytes(8, "big"), b"\xa3\x12amqp:transfer:list"):
        for lst in (list8, list32):
            assert assert_agrees(b"\x00" + descriptor + lst + b"P") == (9, 3, True, False, False, b"P")


BAD = {
    "no-fields": [],
    "null-handle": [None, uint(0)],
    "handle-is-a-map": [{"a": 1}, uint(0)],
    "handle-is-a-string": ["0"],
    "handle-is-negative": [-1],
    "handle-too-big": [ulong(1 << 32)],
    "handle-is-a-boolean": [True],
    "delivery-id-is-a-string": [uint(0), "1"],
    "tag-is-a-string": [uint(0), uint(0), "t"],
    "format-is-a-double": [uint(0), uint(0), b"t", 0.0],
    "settled-is-a-number": [uint(0), uint(0), b"t", uint(0), 1],
    "more-is-a-string": [uint(0), uint(0), b"t", uint(0), False, "yes"],
    "rcv-settle-mode-too-big": [uint(0), None, None, None, None, None, uint(256)],
    "state-is-a-list": [uint(0), None, None, None, None, None, None, [1]],
    "resume-is-a-symbol": [uint(0), None, None, None, None, None, None, None, symbol("x")],
    "aborted-is-a-map": [uint(0), None, None, None, None, None, None, None, None, {}],
    "batchable-is-an-int": [uint(0), None, None, None, None, None, None, None, None, None, 1],
    "first-bad-field-wins": [uint(0), "a", "b", "c"],
    "missing-handle-wins": [None, "a"],
    "long-repr-is-cut": [uint(0), "x" * 100],
}


@pytest.mark.parametrize("fields", BAD.values(), ids=BAD.keys())
def test_bad_transfers_raise_what_check_fields_says(fields):
    got = assert_agrees(body(fields))
    assert got[0] == "error" and got[1].startswith("transfer: ")


def test_malformed_bytes_win_over_a_bad_field_type():
    # Field 1 has the wrong type, field 3 is not valid utf-8: the decode error comes first, as in
    # decode_performative (which decodes the whole list before anything is checked).
    good = body([uint(0), "x", b"t", "yy"])
    raw = good.replace(b"\xa1\x02yy", b"\xa1\x02\xff\xfe")
    got = assert_agrees(raw)
    assert got[0] == "error" and "utf-8" in got[1]


FIELD_VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**63), 2**63 - 1),
    st.integers(0, 2**32 + 5).map(uint), st.integers(0, 2**64 - 1).map(ulong),
    st.integers(0, 300).map(c.ubyte), st.integers(0, 2**16 - 1).map(c.ushort),
    st.integers(-(2**31), 2**31 - 1).map(c.int32), st.binary(max_size=40), st.text(max_size=5),
    st.builds(Described, st.integers(0, 0x30).map(ulong),
              st.one_of(st.none(), st.lists(st.integers(), max_size=3))),
    values(max_leaves=4),
)
UINTS = st.one_of(st.none(), st.integers(0, 2**32 - 1).map(uint), st.integers(0, 2**32 - 1).map(ulong),
                 st.integers(0, 255).map(c.ubyte), st.integers(0, 2**32 - 1).map(int))
BOOLS = st.one_of(st.none(), st.booleans())
# Each field of the spec's type most of the time, anything now and then.
GOOD_FIELD = [UINTS, UINTS, st.one_of(st.none(), st.binary(max_size=32)), UINTS, BOOLS, BOOLS,
              st.one_of(st.none(), st.integers(0, 256).map(c.ubyte), st.integers(0, 300).map(uint)),
              st.one_of(st.none(), st.builds(Described, st.just(ulong(0x24)), st.just([]))),
              BOOLS, BOOLS, BOOLS, FIELD_VALUES, FIELD_VALUES]


@st.composite
def field_lists(draw):
    n = draw(st.integers(0, len(GOOD_FIELD)))
    return [draw(st.one_of(GOOD_FIELD[i], GOOD_FIELD[i], GOOD_FIELD[i], FIELD_VALUES)) for i in range(n)]


FIELD_LISTS = st.one_of(st.lists(FIELD_VALUES, max_size=14), field_lists())


def _encodable(fields):
    try:
        return body(fields)
    except (c.EncodeError, OverflowError):
        return None


@SETTINGS
@given(FIELD_LISTS, st.binary(max_size=20))
def test_any_field_list_agrees(fields, payload):
    raw = _encodable(fields)
    if raw is not None:
        assert_agrees(raw[:-3] + payload if raw.endswith(b"msg") else raw)


@st.composite
def mutated(draw):
    fields = draw(FIELD_LISTS)
    raw = _encodable(fields) or body([uint(0), uint(1), b"t", uint(0), True])
    raw = bytearray(raw)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["set", "insert", "delete", "cut"]))
        if not raw:
            break
        i = draw(st.integers(0, len(raw) - 1))
        if op == "set":
            raw[i] = draw(st.integers(0, 255))
        elif op == "insert":
            raw[i:i] = bytes([draw(st.integers(0, 255))])
        elif op == "delete":
            del raw[i]
        else:
            del raw[i:]
    return bytes(raw)


@SETTINGS
@given(mutated())
def test_mutated_bodies_agree(raw):
    assert_agrees(raw)
