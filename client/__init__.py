"""cypid.client: a fast AMQP 1.0 client on cypid's own Cython codec.

asyncio API::

    conn = await connect("127.0.0.1:5672", idle_timeout=30)
    snd = await conn.sender("q", node="queue", create=True)     # create-on-demand queue
    await snd.send(encode_message(b"x" * 1024), count=100000)   # encoded once, sent 100000 times
    await snd.wait_settled()                                     # every outcome back, all accepted
    rcv = await conn.receiver("q", credit=1000)
    msg = await rcv.get()
    await conn.close()

Blocking facade (its own loop in a background thread): ``BlockingConnection``. See docs/INTERFACES.md.
"""
import asyncio

from .blocking import BlockingConnection, BlockingReceiver, BlockingSender
from .connection import Connection, Session, connect, parse_url
from .errors import (
    AuthenticationError,
    ClientError,
    ConnectionClosed,
    DeliveryFailed,
    LinkDetached,
    SessionEnded,
)
from .failover import FailoverConnection, connect_any, parse_urls
from .links import Receiver, Sender
from .message import Message, decode_message, encode_message
from .terminus import make_source, make_target

try:
    import uvloop as _uvloop
except ImportError:  # pragma: no cover - uvloop is a dependency, but the client works without it
    _uvloop = None


def new_event_loop():
    """A uvloop loop when uvloop is installed, else asyncio's."""
    return _uvloop.new_event_loop() if _uvloop is not None else asyncio.new_event_loop()


def run(coro):
    """Run ``coro`` to completion on a fresh loop (uvloop when available)."""
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        return runner.run(coro)


__all__ = ["connect", "Connection", "Session", "Sender", "Receiver", "Message", "encode_message",
           "decode_message", "make_source", "make_target", "BlockingConnection", "BlockingSender",
           "BlockingReceiver", "ClientError", "ConnectionClosed", "AuthenticationError", "SessionEnded",
           "LinkDetached", "DeliveryFailed", "parse_url", "new_event_loop", "run", "FailoverConnection",
           "connect_any", "parse_urls"]
