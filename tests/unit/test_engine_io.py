"""The engine's byte paths without copies: reads go straight into the frame reader (get_buffer /
buffer_updated, asyncio's BufferedProtocol), and a handed-over output's storage is written again once
the transport has let it go -- never while someone still holds it."""
import tracemalloc

import pytest
from cypid.client.message import encode_message
from cypid.pyx import amqp
from cypid.pyx.codec import Described, ulong

from tests.support.engine import Recorder, make_pair, pump

TARGET = Described(ulong(0x29), ["q"])
SOURCE = Described(ulong(0x28), ["q"])


def _read_in_place(engine, data, chunk):
    """What a BufferedProtocol transport does: read at most ``chunk`` bytes into get_buffer()."""
    while data:
        view = engine.get_buffer(-1)
        assert len(view) > 0
        n = min(len(view), chunk, len(data))
        view[:n] = data[:n]
        view.release()
        engine.buffer_updated(n)
        data = data[n:]


@pytest.mark.parametrize("chunk", [1, 7, 1000, 20000, 1 << 20])
def test_reads_into_the_reader_deliver_what_feed_would(chunk):
    sh = Recorder(credit=1000)
    c, ch, s, sh = make_pair(server_handler=sh)
    link = c.begin().attach("snd", True, None, TARGET)
    pump(c, s)
    bodies = [encode_message(bytes([i % 251]) * (100 + 37 * i)) for i in range(60)]
    bodies.append(encode_message(b"B" * 200000))       # frames bigger than the space first offered
    for body in bodies:
        assert link.send(body) >= 0
    _read_in_place(s, c.take_output(), chunk)
    assert [bytes(d) for _, _, d in sh.messages] == bodies
    assert not s.finished
    pump(c, s)
    assert link.unsettled == 0


def test_input_after_the_end_is_dropped_in_place():
    c, ch, s, sh = make_pair()
    s.abort()
    for _ in range(50):
        _read_in_place(s, b"\0" * 100000, 1 << 20)
    assert s.finished and len(s.get_buffer(-1)) <= 256 * 1024


def _receiver_pair():
    c, ch, s, sh = make_pair()
    rcv = c.begin().attach("rcv", False, SOURCE, None, batch=True)
    rcv.auto_accept = True
    pump(c, s)
    slink = [e[1] for e in sh.events if e[0] == "attach"][0]
    rcv.flow(100000)
    pump(c, s)
    return c, s, slink


def test_handed_over_output_is_not_written_while_held():
    c, s, slink = _receiver_pair()
    msg = encode_message(b"a" * 1000)
    assert slink.send_batch(msg, 40, settled=True) == 40
    first = s.take_output()
    assert len(first) > 16384              # long enough to be handed over, not copied
    kept = bytearray(first)
    assert slink.send_batch(encode_message(b"b" * 1000), 40, settled=True) == 40
    second = s.take_output()
    assert first == kept and second != first
    c.feed(first)
    c.feed(second)
    assert not c.finished


def test_steady_outputs_reuse_the_storage_once_released():
    c, s, slink = _receiver_pair()
    msg = encode_message(b"x" * 1000)
    for _ in range(3):                      # the storage settles at its size
        slink.send_batch(msg, 40, settled=True)
        assert len(s.take_output()) > 40000
    tracemalloc.start()
    try:
        for _ in range(5):
            slink.send_batch(msg, 40, settled=True)
            assert len(s.take_output()) > 40000     # written, and let go (as the transport does)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 20000, "a new output storage was made: %d bytes traced" % peak
