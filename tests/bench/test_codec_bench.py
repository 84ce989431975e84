"""Codec micro-benchmarks: the per-message paths of the broker.

Run with figures:  .venv/bin/python -m pytest tests/bench/test_codec_bench.py --benchmark-enable
(the default run, with --benchmark-disable from pyproject, just executes each once as a test).

The message: header, properties (message-id, to, subject), application-properties with four keys,
and a 1 KiB data body, sent as one transfer frame.
"""
import pytest

from cypid.pyx.codec import (Described, FrameReader, decode, decode_performative, decode_transfer, encode,
                             encode_frame, encode_header, encode_transfer_frames, scan_message, symbol, ubyte,
                             uint, ulong)

BODY = bytes(range(256)) * 4


def build_message():
    return b"".join([
        encode(Described(ulong(0x70), [True, ubyte(5)])),
        encode(Described(ulong(0x73), ["msg-000001", None, "orders", "order.created"])),
        encode(Described(ulong(0x74), {"customer": "acme", "amount": 1250, "priority": "high",
                                       "region": "eu-west"})),
        encode(Described(ulong(0x75), BODY)),
    ])


MESSAGE = build_message()
TRANSFER = encode_transfer_frames(1, 0, 12345, b"\x00\x00\x30\x39", False, MESSAGE, 65536)
TRANSFER_BODY = TRANSFER[8:]


def test_message_size():
    assert 1100 < len(MESSAGE) < 1300
    assert len(TRANSFER) == len(MESSAGE) + 8 + len(TRANSFER_BODY) - len(MESSAGE)


def test_encode_transfer_frame(benchmark):
    out = benchmark(encode_transfer_frames, 1, 0, 12345, b"\x00\x00\x30\x39", False, MESSAGE, 65536)
    assert out == TRANSFER


def test_encode_transfer_frame_split_512(benchmark):
    out = benchmark(encode_transfer_frames, 1, 0, 12345, b"\x00\x00\x30\x39", False, MESSAGE, 512)
    assert len(out) > len(MESSAGE)


def test_encode_transfer_frame_generic(benchmark):
    """The same transfer through the generic encode_frame (Python field list)."""
    fields = [uint(0), uint(12345), b"\x00\x00\x30\x39", uint(0), False, False]
    out = benchmark(encode_frame, 1, 0x14, fields, MESSAGE)
    assert decode_performative(out[8:]) == decode_performative(TRANSFER_BODY)


def test_encode_message(benchmark):
    """Encoding the whole message from Python values (what a client-side producer would do)."""
    out = benchmark(build_message)
    assert out == MESSAGE


def test_decode_transfer_frame(benchmark):
    """Frame reader + performative decode: the per-transfer receive path."""
    reader = FrameReader(max_frame_size=65536)

    def receive():
        reader.feed(TRANSFER)
        t, ch, body = reader.next_frame()
        return decode_performative(body)

    code, fields, payload = benchmark(receive)
    assert code == 0x14 and fields[1] == 12345 and payload == MESSAGE


def test_decode_performative_only(benchmark):
    code, fields, payload = benchmark(decode_performative, TRANSFER_BODY)
    assert payload == MESSAGE


def test_decode_transfer_frame_fast(benchmark):
    """Frame reader + decode_transfer: the broker's per-transfer receive path (fields checked in C)."""
    reader = FrameReader(max_frame_size=65536)

    def receive():
        reader.feed(TRANSFER)
        t, ch, body = reader.next_frame()
        return decode_transfer(body)

    assert benchmark(receive) == (0, 12345, False, False, False, MESSAGE)


def test_decode_transfer_only(benchmark):
    assert benchmark(decode_transfer, TRANSFER_BODY)[5] == MESSAGE


def test_scan_message(benchmark):
    info = benchmark(scan_message, MESSAGE)
    assert info.to == "orders" and info.subject == "order.created" and info.durable and info.priority == 5


def test_scan_message_and_app_properties(benchmark):
    def scan():
        return scan_message(MESSAGE).application_properties()
    assert benchmark(scan)["amount"] == 1250


def test_rebuild_with_new_header(benchmark):
    info = scan_message(MESSAGE)

    def out():
        return info.rebuild(encode_header(True, 5, 0, False, 1))
    data = benchmark(out)
    assert scan_message(data).delivery_count == 1


def test_decode_full_message(benchmark):
    """Decoding every section into Python values (what the broker avoids doing)."""
    def full():
        pos, out = 0, []
        from cypid.pyx.codec import decode_at
        while pos < len(MESSAGE):
            v, pos = decode_at(MESSAGE, pos)
            out.append(v)
        return out
    assert len(benchmark(full)) == 4


@pytest.mark.parametrize("n", [1, 100])
def test_frame_reader_burst(benchmark, n):
    """n transfer frames arriving in one read."""
    burst = TRANSFER * n
    reader = FrameReader(max_frame_size=65536)

    def receive():
        reader.feed(burst)
        k = 0
        while reader.next_frame() is not None:
            k += 1
        return k
    assert benchmark(receive) == n


def test_decode_roundtrip_values(benchmark):
    v = {"a": [1, 2, 3], "b": {"c": "d"}, symbol("e"): 1.5}
    data = encode(v)
    assert benchmark(decode, data) == v
