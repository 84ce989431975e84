"""cypid.client against a real cypid broker: send/receive, settlement, credit, large messages,
heartbeats, errors and close. Each test runs its coroutine on a fresh loop (client.run)."""
import asyncio
import signal
import time

import pytest

from cypid.client import (
    BlockingConnection, ConnectionClosed, DeliveryFailed, LinkDetached, Message, connect, encode_message,
    run,
)
from cypid.pyx.engine import ConnectionState, LinkState, SessionState
from tests.support.broker import async_wait_until


def test_send_receive_message_fields(broker):
    async def main():
        conn = await connect(broker.url)
        snd = await conn.sender("q1", node="queue", create=True)
        assert snd.address == "q1"
        await snd.send(Message("hello", subject="greeting", message_id="m-1", correlation_id=7,
                               reply_to="back", application_properties={"colour": "red", "n": 3},
                               durable=True, priority=7))
        await snd.send(Message(b"\x00\x01binary"))
        await snd.send(Message({"k": [1, 2.5, None]}))
        await snd.wait_settled()
        assert snd.counts["accepted"] == 3 and snd.outstanding == 0
        rcv = await conn.receiver("q1", credit=10)
        m = await rcv.get(timeout=10)
        assert (m.body, m.subject, m.message_id, m.correlation_id, m.reply_to) == \
            ("hello", "greeting", "m-1", 7, "back")
        assert m.application_properties == {"colour": "red", "n": 3}
        assert m.durable and m.priority == 7
        assert (await rcv.get(timeout=10)).body == b"\x00\x01binary"
        assert (await rcv.get(timeout=10)).body == {"k": [1, 2.5, None]}
        await conn.close()
        assert not conn.is_open and conn.error is None
    run(main())


def test_many_messages_unsettled_and_settled(broker):
    async def main():
        conn = await connect(broker.url)
        snd = await conn.sender("q2", node="queue", create=True, window=300)
        data = encode_message(b"x" * 1024)
        await snd.send(data, 5000)
        await snd.wait_settled(timeout=30)
        assert snd.counts["accepted"] == 5000 and snd.sent == 5000
        fast = await conn.sender("q2", settled=True)
        await fast.send(data, 5000)
        assert fast.outstanding == 0 and not fast.counts       # pre-settled: no outcomes come back
        rcv = await conn.receiver("q2", credit=500, keep=False)
        assert await rcv.wait_for(10000, timeout=30) == 10000
        assert rcv.core.bytes_received >= 10000 * len(data)    # the broker may add a header
        await conn.close()
    run(main())


def test_sequence_stamping_and_check(broker):
    async def main():
        conn = await connect(broker.url)
        data = encode_message(b"y" * 64)
        snd = await conn.sender("q3", node="queue", create=True)
        await snd.send(data, 1000, seq_offset=len(data) - 8, seq=0)
        await snd.wait_settled()
        rcv = await conn.receiver("q3", credit=100, keep=False, settled=True)
        rcv.core.check_seq = True
        await rcv.wait_for(1000, timeout=30)
        assert rcv.core.seq_errors == 0 and rcv.core.next_seq == 1000
        await snd.send(data, 3, seq_offset=len(data) - 8, seq=5)     # 5 where 1000 was due
        await rcv.wait_for(1003, timeout=10)
        assert rcv.core.seq_errors == 1
        assert rcv.core.seq_error == "Sequence error: expected n==1000 but got 5"
        await conn.close()
    run(main())


def test_credit_window_and_limit(broker):
    async def main():
        conn = await connect(broker.url)
        snd = await conn.sender("q4", node="queue", create=True)
        await snd.send(encode_message("m"), 20)
        await snd.wait_settled()
        first = await conn.receiver("q4", credit=5, limit=5)
        await first.wait_for(5, timeout=10)
        assert first.credit == 0 and first.buffered == 5
        # The other 15 are still on the queue: a second receiver gets exactly them.
        second = await conn.receiver("q4", credit=100, keep=False)
        await second.wait_for(15, timeout=10)
        await second.drain(timeout=10)             # nothing more: the broker gives the credit back
        assert second.received == 15 and second.credit == 0
        assert first.received == 5
        assert [(await first.get()).body for _ in range(5)] == ["m"] * 5
        first.allow(1)                             # credit for one more, when it comes
        await snd.send(encode_message("late"))
        assert (await first.get(timeout=10)).body == "late"
        await conn.close()
    run(main())


def test_manual_accept_and_release(broker):
    async def main():
        conn = await connect(broker.url)
        snd = await conn.sender("q5", node="queue", create=True)
        await snd.send(encode_message("a"))
        await snd.send(encode_message("b"))
        await snd.wait_settled()
        rcv = await conn.receiver("q5", credit=1, limit=1, auto_accept=False)
        a = await rcv.get(timeout=10)
        assert a.body == "a" and a.delivery_id is not None
        rcv.release(a)                              # back on the queue, to be delivered again
        rcv.allow(1)
        again = await rcv.get(timeout=10)
        assert again.body == "a" and a.first_acquirer and not again.first_acquirer
        rcv.accept(again)
        rcv.allow(1)
        b = await rcv.get(timeout=10)
        assert b.body == "b"
        rcv.accept(b)
        await rcv.close()
        probe = await conn.receiver("q5", credit=10, keep=False)
        await probe.drain(timeout=10)
        assert probe.received == 0                  # both accepted: the queue is empty
        await conn.close()
    run(main())


def test_large_multi_frame_message_both_ways(broker):
    async def main():
        # A small max-frame-size for what the broker sends us; our frames to it are split at its 64 KiB.
        conn = await connect(broker.url, max_frame_size=1024)
        body = bytes(range(256)) * 1200             # 300 KiB
        snd = await conn.sender("q6", node="queue", create=True)
        await snd.send(Message(body, subject="big"))
        await snd.wait_settled()
        assert snd.core.delivery_count == 1
        assert snd.session.core.next_outgoing_id >= 5   # several transfer frames for one delivery
        rcv = await conn.receiver("q6", credit=2)
        m = await rcv.get(timeout=20)
        assert m.body == body and m.subject == "big"
        assert conn.core.frames_in > 300
        await conn.close()
    run(main())


def test_heartbeats_keep_an_idle_connection_alive(broker):
    async def main():
        conn = await connect(broker.url, idle_timeout=1.0)
        assert conn.remote_idle > 0                 # the broker asks for heartbeats from us too
        start_frames = conn.core.frames_in
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        # We ask for a frame every 0.5 s (half our time-out); the broker asks for ours every second.
        # Four empty frames from the broker: the connection has been idle for well over a second.
        while conn.core.frames_in < start_frames + 4:
            assert loop.time() < deadline, "no heartbeats from the broker"
            assert conn.is_open, conn.error
            await asyncio.sleep(0.05)  # poll
        assert conn.is_open
        snd = await conn.sender("q7", node="queue", create=True)
        await snd.send(encode_message("still here"))
        await snd.wait_settled(timeout=10)
        await conn.close()
    run(main())


def test_refused_attach_and_rejected_delivery(broker):
    async def main():
        conn = await connect(broker.url)
        with pytest.raises(LinkDetached) as info:
            await conn.receiver("no-such-queue")
        assert info.value.condition == "amqp:not-found"
        snd = await conn.sender("q8", node="queue", create=True,
                                properties={"qpid.max_count": 2, "qpid.policy_type": "reject"})
        await snd.send(encode_message("m"), 3)
        with pytest.raises(DeliveryFailed) as info:
            await snd.wait_settled(timeout=10)
        assert info.value.counts == {"rejected": 1}
        assert info.value.condition == "amqp:resource-limit-exceeded"
        assert snd.counts["accepted"] == 2
        await conn.close()
    run(main())


def test_topic_subscription_with_subject_filter(broker):
    async def main():
        conn = await connect(broker.url)
        news = await conn.receiver("amq.topic", node="topic", subject="news.#", credit=10)
        other = await conn.receiver("amq.topic", node="topic", subject="sport.*", credit=10, keep=False)
        snd = await conn.sender("amq.topic", node="topic")
        for subject in ("news.today", "sport.football", "news.world.europe", "weather"):
            await snd.send(Message(subject, subject=subject))
        await snd.wait_settled(timeout=10)
        got = [(await news.get(timeout=10)).body for _ in range(2)]
        assert got == ["news.today", "news.world.europe"]
        await other.wait_for(1, timeout=10)
        await conn.close()
    run(main())


def test_sasl_plain_and_no_sasl(broker):
    async def main():
        conn = await connect("amqp://guest:secret@" + broker.url)
        assert conn.is_open
        await conn.close()
        bare = await connect(broker.url, sasl=False)
        assert bare.is_open
        await bare.close()
    run(main())


def test_close_link_session_connection(broker):
    async def main():
        conn = await connect(broker.url)
        session = await conn.session()
        snd = await session.sender("q9", node="queue", create=True)
        rcv = await session.receiver("q9")
        await snd.close()
        await rcv.close()
        assert snd.error is None and rcv.error is None
        with pytest.raises(LinkDetached):
            snd.send_nowait(b"")
        await session.close()
        assert session.error is not None and session.error.condition is None
        await conn.close()
        assert conn.closed.done() and not conn.is_open
        with pytest.raises(ConnectionClosed):
            await conn.session()
    run(main())


def test_broker_going_away_fails_waiters(broker):
    async def main():
        conn = await connect(broker.url)
        rcv = await conn.receiver("q10", node="queue", create=True)
        waiter = asyncio.ensure_future(rcv.get())
        await async_wait_until(lambda: rcv._get_waiters, message="the get() to be waiting")
        broker.kill()
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(waiter, 10)
        assert not conn.is_open
    run(main())


def test_a_dropped_socket_ends_every_link_and_session_in_the_engine(broker):
    """The client keeps no endpoint states of its own: when the socket drops, the engine's links and
    sessions are all DETACHED / ENDED (those whose detach or end was waiting for the broker's too),
    the client reports the engine's state, and what waited fails with the loss."""
    async def main():
        conn = await connect(broker.url)
        session = await conn.session()
        snd = await session.sender("q10b", node="queue", create=True)
        rcv = await session.receiver("q10b")
        other = await conn.session()
        closing = await other.sender("q10b")
        broker.signal(signal.SIGSTOP)           # no answer to the detach and end below, no settlements
        await snd.send(encode_message("unsettled"), 5)
        detach = asyncio.ensure_future(closing.close())
        end = asyncio.ensure_future(other.close())
        await async_wait_until(lambda: closing.core.state == LinkState.DETACH_SENT and
                               other.core.state == SessionState.END_SENT, message="our detach and end out")
        waiter = asyncio.ensure_future(rcv.get())
        broker.kill()
        await asyncio.wait_for(asyncio.shield(conn.closed), 10)
        await asyncio.wait_for(asyncio.gather(detach, end), 10)
        with pytest.raises(ConnectionClosed):
            await waiter
        assert conn.state is ConnectionState.CLOSED and not conn.is_open
        for link in (snd, rcv, closing):
            assert link.core.state == LinkState.DETACHED and link.state == LinkState.DETACHED
            assert not link.is_attached and isinstance(link.error, ConnectionClosed)
        for s in (session, other):
            assert s.core.state == SessionState.ENDED and s.state == SessionState.ENDED
            assert not s.is_open and isinstance(s.error, ConnectionClosed)
        with pytest.raises(ConnectionClosed):
            snd.send_nowait(b"")
        assert snd.outstanding == 5                 # never settled: the engine has forgotten them, we have not
        with pytest.raises(ConnectionClosed):
            await snd.wait_settled(timeout=10)
    run(main())


def test_blocking_facade(broker):
    with BlockingConnection(broker.url, idle_timeout=5) as conn:
        snd = conn.sender("q11", node="queue", create=True)
        snd.send("one")
        snd.send(encode_message(b"two"), count=2, sync=False)      # bytes: an encoded message
        snd.sync()
        assert snd.counts["accepted"] == 3
        rcv = conn.receiver("q11", credit=5)
        assert rcv.receive(timeout=10).body == "one"
        assert [rcv.receive(timeout=10).body for _ in range(2)] == [b"two", b"two"]
        with pytest.raises(TimeoutError):
            rcv.receive(timeout=0.2)
        rcv.close()
    assert not conn.is_open


def test_connect_refused_is_an_oserror():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    start = time.monotonic()
    with pytest.raises(OSError):
        run(connect("127.0.0.1:%d" % port, timeout=5))
    assert time.monotonic() - start < 5


def test_plain_asyncio_loop(broker):
    """Without uvloop too (asyncio's own loop and transports)."""
    async def main():
        conn = await connect(broker.url, idle_timeout=5)
        snd = await conn.sender("q12", node="queue", create=True)
        await snd.send(encode_message(b"z" * 2000), 300)
        await snd.wait_settled(timeout=10)
        rcv = await conn.receiver("q12", credit=50, keep=False)
        await rcv.wait_for(300, timeout=10)
        await conn.close()
    asyncio.run(main())


def test_silent_peer_trips_the_idle_timeout():
    """A peer that opens and then says nothing: the connection closes with resource-limit-exceeded."""
    from cypid.pyx.codec import AMQP_HEADER, encode_frame

    async def main():
        received = []

        async def silent_peer(reader, writer):
            await reader.readexactly(8)
            writer.write(AMQP_HEADER + encode_frame(0, 0x10, ["silent-peer"]))
            received.append(await reader.read(65536))      # our open
            received.append(await reader.read(65536))      # our close, when the time-out expires
            writer.close()

        server = await asyncio.start_server(silent_peer, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        conn = await connect("127.0.0.1:%d" % port, sasl=False, idle_timeout=0.3)
        start = asyncio.get_running_loop().time()
        await asyncio.wait_for(asyncio.shield(conn.closed), 10)
        assert asyncio.get_running_loop().time() - start >= 0.25
        assert conn.error.condition == "amqp:resource-limit-exceeded"
        assert b"local-idle-timeout expired" in received[-1]
        server.close()
        await server.wait_closed()
    run(main())


def test_two_senders_share_a_session(broker):
    """Interleaved batches from two links on one session: each sender gets exactly its own outcomes."""
    async def main():
        conn = await connect(broker.url)
        session = await conn.session()
        a = await session.sender("q13a", node="queue", create=True, window=700)
        b = await session.sender("q13b", node="queue", create=True, window=300)
        data = encode_message(b"m" * 100)
        await asyncio.gather(a.send(data, 6000), b.send(data, 4000))
        await asyncio.gather(a.wait_settled(timeout=30), b.wait_settled(timeout=30))
        assert (a.counts["accepted"], b.counts["accepted"]) == (6000, 4000)
        assert session.core.outstanding == 0
        await conn.close()
    run(main())
