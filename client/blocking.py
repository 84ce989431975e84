"""A small blocking facade over the asyncio client.

Each ``BlockingConnection`` runs its own event loop (uvloop when available) in a daemon thread, so its
heartbeats flow while the caller does something else; each call hands a coroutine to that loop and
waits for its result. A call costs a thread hop: for bulk sends, use ``send(message, count=n)``.

    with BlockingConnection("127.0.0.1:5672") as conn:
        snd = conn.sender("q", node="queue", create=True)
        snd.send(b"hello")                     # waits for the outcome (sync=True)
        rcv = conn.receiver("q")
        print(rcv.receive(timeout=5).body)
"""
import asyncio
import concurrent.futures
import threading

from .connection import connect
from .errors import ConnectionClosed


class _LoopThread:
    def __init__(self):
        from . import new_event_loop
        self.loop = new_event_loop()
        self.thread = threading.Thread(target=self._run, name="cypid-client-loop", daemon=True)
        self.thread.start()

    def _run(self):
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def call(self, coro, timeout=None):
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise TimeoutError("no result within %ss" % timeout) from None

    def stop(self):
        if self.loop.is_closed():
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        if not self.thread.is_alive():
            self.loop.close()


class BlockingConnection:
    """``BlockingConnection(url, timeout=30, **connect options)``: see ``client.connect``."""

    def __init__(self, url="127.0.0.1:5672", timeout=30.0, **options):
        self.timeout = timeout
        self._lt = _LoopThread()
        try:
            self.connection = self._lt.call(connect(url, timeout=timeout, **options), timeout + 1)
        except BaseException:
            self._lt.stop()
            raise
        self._session = None

    def _call(self, coro, timeout=None):
        return self._lt.call(coro, self.timeout if timeout is None else timeout)

    def _default_session(self):
        if self._session is None or not self._session.is_open:
            self._session = self._call(self.connection.session())
        return self._session

    def sender(self, address, **options):
        """A BlockingSender (options as ``Session.sender``)."""
        session = self._default_session()
        return BlockingSender(self, self._call(session.sender(address, **options)))

    def receiver(self, address, **options):
        """A BlockingReceiver (options as ``Session.receiver``)."""
        session = self._default_session()
        return BlockingReceiver(self, self._call(session.receiver(address, **options)))

    def close(self, timeout=None):
        try:
            if not self._lt.loop.is_closed():
                self._call(self.connection.close(), timeout)
        finally:
            self._lt.stop()

    @property
    def is_open(self):
        return self.connection.is_open

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class BlockingSender:
    def __init__(self, conn, link):
        self.conn = conn
        self.link = link

    def send(self, message, count=1, sync=True, timeout=None):
        """Send ``count`` copies of ``message`` (a Message, an encoded message as bytes from
        ``encode_message``, or any other body, which becomes an amqp-value message). With ``sync``, wait for
        their outcomes (DeliveryFailed if not accepted); else only until they are written."""
        async def go():
            await self.link.send(message, count)
            if sync and not self.link.settled:
                await self.link.wait_settled()
        self.conn._call(go(), timeout)

    def sync(self, timeout=None):
        """Wait until everything sent is settled; DeliveryFailed if anything was not accepted."""
        self.conn._call(self.link.wait_settled(), timeout)

    @property
    def counts(self):
        return dict(self.link.counts)

    def close(self, timeout=None):
        self.conn._call(self.link.close(), timeout)


class BlockingReceiver:
    def __init__(self, conn, link):
        self.conn = conn
        self.link = link

    def receive(self, timeout=None):
        """The next Message; TimeoutError after ``timeout`` seconds (None: the connection's timeout)."""
        timeout = self.conn.timeout if timeout is None else timeout

        async def go():
            try:
                return await self.link.get(timeout)
            except TimeoutError:
                raise TimeoutError("no message within %ss" % timeout) from None
        return self.conn._call(go(), timeout + 1)

    def accept(self, message):
        self.conn._lt.loop.call_soon_threadsafe(self.link.accept, message)

    def release(self, message):
        self.conn._lt.loop.call_soon_threadsafe(self.link.release, message)

    def reject(self, message, condition=None, description=None):
        self.conn._lt.loop.call_soon_threadsafe(self.link.reject, message, condition, description)

    def drain(self, timeout=None):
        """Drain the credit; returns the messages that arrived meanwhile (decoded)."""
        async def go():
            await self.link.drain()
            out = []
            while True:
                msg = self.link.get_nowait()
                if msg is None:
                    return out
                out.append(msg)
        return self.conn._call(go(), timeout)

    def close(self, timeout=None):
        self.conn._call(self.link.close(), timeout)


__all__ = ["BlockingConnection", "BlockingSender", "BlockingReceiver", "ConnectionClosed"]
