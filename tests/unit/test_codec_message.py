"""scan_message / MessageInfo / encode_header against messages built by cypid and by proton."""
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import proton
from cypid.pyx import codec as c
from cypid.pyx.codec import (DecodeError, Described, decode, encode, encode_header, scan_message, symbol,
                             uint, ulong)


def section(code, value, symbolic=False):
    d = symbol(c.DESCRIPTOR_NAMES[code]) if symbolic else ulong(code)
    return encode(Described(d, value))


def test_full_message():
    header = section(0x70, [True, c.ubyte(9), uint(30000), True, uint(3)])
    da = section(0x71, {symbol("x-opt-d"): 1})
    ma = section(0x72, {symbol("x-opt-m"): "v"})
    props = section(0x73, ["id", b"guest", "amq.topic", "news.uk", "replies", "corr", symbol("text/plain"),
                           None, c.timestamp(1700000000000), c.timestamp(1600000000000), "grp"])
    ap = section(0x74, {"colour": "red", "n": 3})
    body = section(0x75, b"hello")
    footer = section(0x78, {symbol("f"): 1})
    msg = header + da + ma + props + ap + body + footer
    i = scan_message(msg)
    assert (i.durable, i.priority, i.ttl, i.first_acquirer, i.delivery_count) == (True, 9, 30000, True, 3)
    assert (i.to, i.subject, i.reply_to, i.user_id) == ("amq.topic", "news.uk", "replies", b"guest")
    assert (i.absolute_expiry_time, i.creation_time) == (1700000000000, 1600000000000)
    assert i.size == len(msg) and i.data is msg
    assert i.bare_offset == len(header + da)
    assert i.annotations_offset == len(header + da)
    assert i.properties_offset == len(header + da + ma)
    assert i.body_offset == len(header + da + ma + props + ap)
    assert i.application_properties() == {"colour": "red", "n": 3}
    assert i.message_annotations() == {"x-opt-m": "v"}
    assert i.delivery_annotations() == {"x-opt-d": 1}
    assert i.footer() == {"f": 1}
    assert i.properties()[0] == "id" and i.properties()[5] == "corr"
    assert i.bare_message() == msg[i.bare_offset:]


def test_defaults_and_minimal_messages():
    for msg in (b"", section(0x77, None), section(0x75, b""), section(0x70, []) + section(0x76, [1])):
        i = scan_message(msg)
        assert (i.durable, i.priority, i.ttl, i.first_acquirer, i.delivery_count) == (False, 4, 0, False, 0)
        assert (i.to, i.subject, i.reply_to, i.user_id) == (None, None, None, None)
        assert i.application_properties() == {} and i.message_annotations() == {}
        assert i.annotations_offset == -1
    i = scan_message(section(0x70, []) + section(0x75, b"x"))
    assert i.bare_offset == 4 and i.properties_offset == 4 and i.body_offset == 4


def test_symbolic_descriptors_and_wide_forms():
    msg = (section(0x70, [None, c.ubyte(1)], True) + section(0x73, [None, None, "x" * 300, "s"], True)
           + section(0x74, {"k": "v" * 300}, True) + section(0x75, b"b" * 300, True))
    i = scan_message(msg)
    assert i.priority == 1 and i.to == "x" * 300 and i.subject == "s"
    assert i.application_properties() == {"k": "v" * 300}


def test_to_as_symbol_and_non_string():
    i = scan_message(section(0x73, [None, None, symbol("q"), 5, None]) + section(0x77, 1))
    assert i.to == "q" and i.subject is None


def test_multiple_data_and_sequence_sections():
    msg = section(0x75, b"a") + section(0x75, b"b") + section(0x78, {})
    assert scan_message(msg).body_offset == 0
    scan_message(section(0x76, [1]) + section(0x76, [2]))


@pytest.mark.parametrize("msg, match", [
    (b"\x40", "not a described value"),
    (b"\x00\x53\x79\x40", "unknown message section descriptor 0x79"),
    (b"\x00\xa3\x03abc\x40", "unknown message section descriptor at offset 1"),
    (b"\x00\x40\x40", "not a ulong or symbol"),
    (section(0x73, []) + section(0x70, []), "out of order"),
    (section(0x77, 1) + section(0x77, 1), "out of order"),
    (section(0x75, b"") + section(0x77, 1), "out of order"),
    (section(0x70, [1]), "header durable has constructor 0x55"),
    (section(0x70, [None, c.ushort(256)]), "header priority 256 out of range"),
    (section(0x70, "x"), "header is not a list"),
    (section(0x74, [1]), "application-properties is not a map"),
    (section(0x75, "text"), "data section is not binary"),
    (section(0x76, {}), "amqp-sequence section is not a list"),
    (section(0x73, [None, None, None, None, None, None, None, None, 5]), "expected a timestamp"),
    (b"\x00\x53\x75\xa0\x05ab", "declares 5 bytes"),
    (b"\x00\x53\x70\xc0\x02\x01", "declares 2 bytes"),
    (b"\x00\x53", "truncated section descriptor"),
    (b"\x00\x53\x73\xc0\x03\x01\xa1\x05",
     r"value at offset 6 \(constructor 0xa1\) declares 5 bytes, only 0 left"),
])
def test_scan_errors(msg, match):
    with pytest.raises(DecodeError, match=match):
        scan_message(msg)


def test_proton_messages():
    m = proton.Message(body="hello", address="q2", subject="sub", reply_to="rq", durable=True, priority=7,
                       ttl=1.5, delivery_count=2, first_acquirer=True, id="mid", user_id=b"bob",
                       properties={"a": 1, "b": "x"}, creation_time=1.0)
    m.annotations = {symbol("x-opt-a"): "b"}
    m.instructions = {symbol("x-opt-i"): 2}
    data = m.encode()
    i = scan_message(data)
    assert (i.durable, i.priority, i.ttl, i.first_acquirer, i.delivery_count) == (True, 7, 1500, True, 2)
    assert (i.to, i.subject, i.reply_to, i.user_id) == ("q2", "sub", "rq", b"bob")
    assert i.creation_time == 1000
    assert i.application_properties() == {"a": 1, "b": "x"}
    assert i.message_annotations() == {"x-opt-a": "b"}
    assert i.delivery_annotations() == {"x-opt-i": 2}
    # Rebuilt with a new header: proton reads the same message back with the new header fields.
    out = i.rebuild(encode_header(False, 3, 0, False, 5))
    m2 = proton.Message()
    m2.decode(out)
    assert (m2.durable, m2.priority, m2.ttl, m2.delivery_count, m2.first_acquirer) == (False, 3, 0, 5, False)
    assert (m2.body, m2.address, m2.id, m2.properties) == ("hello", "q2", "mid", {"a": 1, "b": "x"})
    assert m2.instructions is None and m2.annotations == {"x-opt-a": "b"}


def test_rebuild_with_annotations():
    m = proton.Message(body=b"payload", address="q")
    i = scan_message(m.encode())
    out = i.rebuild(b"", {"x-opt-qpid.msg_sequence": ulong(42)})
    j = scan_message(out)
    assert j.message_annotations() == {"x-opt-qpid.msg_sequence": 42}
    assert type(list(j.message_annotations())[0]) is symbol
    m.annotations = {symbol("x-opt-a"): 1}
    i = scan_message(m.encode())
    j = scan_message(i.rebuild(encode_header(True, 4, 0, False, 0), {symbol("x-opt-b"): 2}))
    assert j.message_annotations() == {"x-opt-a": 1, "x-opt-b": 2} and j.durable and j.to == "q"
    m2 = proton.Message()
    m2.decode(i.rebuild(b"", {"x-opt-b": 2}))
    assert m2.body == b"payload" and m2.annotations == {"x-opt-a": 1, "x-opt-b": 2}


@pytest.mark.parametrize("args, fields", [
    ((False, 4, 0, False, 0), None),
    ((True, 4, 0, False, 0), [True]),
    ((False, 9, 0, False, 0), [None, c.ubyte(9)]),
    ((False, 4, 1000, False, 0), [None, None, uint(1000)]),
    ((False, 4, 0, True, 0), [None, None, None, True]),
    ((False, 4, 0, False, 1), [None, None, None, None, uint(1)]),
    ((True, 0, 2**32 - 1, True, 2**32 - 1), [True, c.ubyte(0), uint(2**32 - 1), True, uint(2**32 - 1)]),
])
def test_encode_header(args, fields):
    h = encode_header(*args)
    if fields is None:
        assert h == b""
        return
    v = decode(h)
    assert v == Described(ulong(0x70), fields)
    assert type(v.value[1]) is type(fields[1]) if len(fields) > 1 and fields[1] is not None else True
    i = scan_message(h)
    assert (i.durable, i.priority, i.ttl, i.first_acquirer, i.delivery_count) == args


def test_encode_header_range():
    with pytest.raises(ValueError):
        encode_header(False, 256, 0, False, 0)
    with pytest.raises((ValueError, OverflowError)):
        encode_header(False, 4, 2**32, False, 0)


@settings(max_examples=100, deadline=None)
@given(st.booleans(), st.integers(0, 255), st.integers(0, 2**32 - 1), st.booleans(),
       st.integers(0, 2**32 - 1))
def test_encode_header_property(durable, priority, ttl, first, count):
    h = encode_header(durable, priority, ttl, first, count)
    i = scan_message(h + encode(Described(ulong(0x77), None)))
    expected = (durable, priority, ttl, first, count)
    assert (i.durable, i.priority, i.ttl, i.first_acquirer, i.delivery_count) == expected
    if h:
        m = proton.Message()
        m.decode(h + encode(Described(ulong(0x77), None)))
        assert (m.durable, m.priority, m.delivery_count, m.first_acquirer) == (durable, priority, count,
                                                                               first)
