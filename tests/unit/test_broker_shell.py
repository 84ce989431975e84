"""The broker connection's shell (issue 10): asyncio's BufferedProtocol calls per read
(get_buffer, buffer_updated), the output once per loop turn (_flush) and a consumer's flow
(on_flow) are C methods of BrokerHandler (cypid.pyx.broker_core), not Python functions, so a read
is decoded, dispatched and its output queued without a Python frame; on the standard library's
loop (which asks get_buffer(-1)) a real socket's header and open are read, answered and counted."""
import asyncio
import types

from cypid.broker.connection import Connection
from cypid.pyx import amqp
from cypid.pyx.broker_core import BrokerHandler
from cypid.pyx.frames import AMQP_HEADER, FrameReader, decode_performative, encode_frame
from tests.support.inprocess import inprocess_broker

PER_READ = ("get_buffer", "buffer_updated", "data_received", "want_flush", "_flush", "on_flow", "on_wake")


def test_per_read_calls_are_c_methods():
    for name in PER_READ:
        attr = getattr(Connection, name)
        assert not isinstance(attr, types.FunctionType), "%s is Python code: a frame per call" % name
        assert attr is getattr(BrokerHandler, name), name


def test_header_and_open_answered_and_counted_on_the_asyncio_loop():
    with inprocess_broker("--auth", "no") as broker:
        loop = broker.loop
        assert type(loop).__module__.startswith("asyncio")
        port = broker.port
        sent = AMQP_HEADER + encode_frame(0, amqp.OPEN, ["shell-test"])

        async def exchange():
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(sent)
            got = b""
            while True:       # until the broker's header and its open frame are both in
                chunk = await asyncio.wait_for(reader.read(65536), 10)
                assert chunk, "the broker closed the connection: %r" % got
                got += chunk
                if len(got) > 8:
                    frames = FrameReader(65536)
                    frames.feed(got[8:])
                    frame = frames.next_frame()
                    if frame is not None:
                        break
            conns = [c for c in broker.connections if isinstance(c, Connection)]
            writer.close()
            return got, frame, conns

        got, frame, conns = loop.run_until_complete(exchange())
        assert got[:8] == AMQP_HEADER
        code = decode_performative(frame[2])[0]    # (type, channel, body)
        assert code == amqp.OPEN
        assert len(conns) == 1
        assert conns[0].stats_bytes_in == len(sent)
        assert conns[0].stats_bytes_out == len(got)
