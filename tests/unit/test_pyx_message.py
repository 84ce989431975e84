"""cypid.pyx.message.Message must behave as broker/message.py's Message (one test, two implementations)."""
import time

import pytest

from cypid.broker import message as pymessage
from cypid.pyx import message as cmessage
from cypid.pyx.codec import Described, encode, encode_header, scan_message, symbol, ulong

FIELDS = ("body", "durable", "priority", "ttl", "to", "subject", "user_id", "size", "delivery_count", "acquired_before", "seq")


def encoded(header=None, props=None, app=None, body=b"hello", annotations=None):
    out = b""
    if header is not None:
        out += encode_header(*header)
    if annotations is not None:
        out += encode(Described(ulong(0x71), annotations))
    if props is not None:
        out += encode(Described(ulong(0x73), props))
    if app is not None:
        out += encode(Described(ulong(0x74), app))
    return out + encode(Described(ulong(0x75), body))


CASES = {
    "bare": encoded(),
    "header": encoded(header=(True, 7, 0, True, 0)),
    "redelivered": encoded(header=(False, 4, 0, False, 3)),
    "ttl": encoded(header=(False, 2, 60000, True, 0)),
    "properties": encoded(props=[None, None, "q1", "subj"], app={"k": "v", "n": 3}),
    "user-id": encoded(props=[None, b"alice@QPID", "q1"]),
    "delivery-annotations": encoded(header=(True, 4, 0, True, 1), annotations={symbol("x-opt-a"): 1},
                                    app={"k": "v"}),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_same_fields_and_bytes(case):
    data = CASES[case]
    a, b = pymessage.Message(data), cmessage.Message(data)
    for name in FIELDS:
        assert getattr(a, name) == getattr(b, name), name
    assert abs(a.expires - b.expires) < 0.5
    assert a.application_properties() == b.application_properties()
    if not a.ttl:
        assert a.encoded() == b.encoded()
    for m in (a, b):
        m.delivery_count += 2
        m.acquired_before = True
    if not a.ttl:
        assert a.encoded() == b.encoded()
    c = b.copy()
    assert c is not b and c.body is b.body
    for name in FIELDS:
        assert getattr(c, name) == getattr(b, name), name
    assert c.application_properties() == b.application_properties()


def test_bytes_like_input_and_expiry():
    data = CASES["ttl"]
    m = cmessage.Message(bytearray(data))
    assert m.ttl == 60000 and m.expires > time.monotonic()
    assert not m.expired(time.monotonic()) and m.expired(m.expires)
    m.expires = 0.0
    assert not m.expired(1e12)


def test_header_bytes_are_not_kept_twice():
    """Only the bare message is held (broker/message.py also keeps the scanned input)."""
    data = CASES["header"]
    m = cmessage.Message(data)
    assert len(m.body) < len(data) and m.size == len(data)
    assert not hasattr(m, "_info")


@pytest.mark.parametrize("case", sorted(CASES))
def test_annotate_merges_message_annotations(case):
    """annotate() (an exchange's qpid.msg_sequence) adds the section or merges into it; both
    implementations give the same bytes, and the rest of the message is untouched."""
    with_ma = encode(Described(ulong(0x72), {symbol("x-opt-keep"): "yes", symbol("qpid.msg_sequence"): 0}))
    for data in (CASES[case], with_ma + CASES[case] if case in ("bare", "properties") else CASES[case]):
        a, b = pymessage.Message(data), cmessage.Message(data)
        copy = b.copy()
        before = scan_message(b.body)
        for m in (a, b):
            m.annotate({"qpid.msg_sequence": 7})
        assert a.body == b.body and a.size == b.size == len(data) + len(b.body) - len(copy.body)
        after = scan_message(b.body)
        ma = after.message_annotations()
        assert ma[symbol("qpid.msg_sequence")] == 7 and type(ma[symbol("qpid.msg_sequence")]) is int
        assert {k: v for k, v in ma.items() if k != "qpid.msg_sequence"} == \
            {k: v for k, v in before.message_annotations().items() if k != "qpid.msg_sequence"}
        assert after.properties() == before.properties()
        assert b.application_properties() == a.application_properties() == before.application_properties()
        assert b.body[after.properties_offset:] == copy.body[before.properties_offset:]
        assert copy.application_properties() == before.application_properties()   # the copy kept its bytes
        if not b.ttl:
            assert a.encoded() == b.encoded()
