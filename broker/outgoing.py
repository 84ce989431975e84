"""The connections a broker opens to other brokers (federation links; an HA backup's or replica's
link to its primary or source, and its status probes): each is remembered here from the moment
cypid.client makes it (``connect(track=broker.outgoing)``), so that the broker's stop can end
every one and wait until it is gone.

A dropped connection (``abort``) is not gone at once: the event loop holds its transport, and the
transport its protocol, until the socket's close completes and ``connection_lost`` has run, a loop
turn or more later (more under load; a connect cancelled half way is aborted inside cypid.client,
out of its caller's sight). A stop that returned before that would leave a connection still
closing when the leak audit counts (broker/audit.py), and one that ran while a backup was retrying
could fail a test at random. Connections that are already garbage fall out of the weak set.
"""
import asyncio
import weakref

#: how long a stop waits for its outgoing connections to be told they are lost (seconds)
CLOSE_TIMEOUT = 5.0


class Outgoing:
    def __init__(self):
        self._conns = weakref.WeakSet()

    def add(self, conn):
        """cypid.client's connect calls this with each connection it makes (before it connects)."""
        self._conns.add(conn)

    def __len__(self):
        return len(self._conns)

    async def close(self, timeout=CLOSE_TIMEOUT):
        """Drop every outgoing connection still here and wait until each has been told it is lost
        (at most ``timeout``). The links that own them are stopped first (their tasks ended), so no
        new one is made meanwhile."""
        conns = list(self._conns)
        for conn in conns:
            conn.abort()
        # connection_lost sets ``closed``; a transport aborted before its connection_made never
        # calls it, but then the connection has no transport and nothing but that transport holds it.
        waiting = [c.closed for c in conns if c.transport is not None and not c.closed.done()]
        if waiting:
            await asyncio.wait(waiting, timeout=timeout)
        for _ in range(2):      # the loop lets go of a transport closed without a protocol
            await asyncio.sleep(0)


__all__ = ["CLOSE_TIMEOUT", "Outgoing"]
