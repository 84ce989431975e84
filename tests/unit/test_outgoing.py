"""A broker's outgoing connections (broker/outgoing.py) and cypid.client's abandoned connect: a
connection given up before its transport came must not be left open, with a heartbeat timer, holding
itself alive (the HA leak audit's flaky ``connections=1``: a joining backup stopped while it retried)."""
import asyncio

import pytest
import uvloop

from cypid.broker.outgoing import Outgoing
from cypid.client import connect
from cypid.client.connection import Connection
from tests.support.broker import async_wait_until

LOOPS = {"uvloop": uvloop.new_event_loop, "asyncio": asyncio.new_event_loop}


class FakeTransport:
    aborted = False

    def abort(self):
        self.aborted = True

    def is_closing(self):
        return self.aborted

    def get_extra_info(self, name, default=None):
        return default

    def set_write_buffer_limits(self, high=None, low=None):
        pass

    def write(self, data):
        pass

    def close(self):
        self.aborted = True


@pytest.mark.parametrize("kind", sorted(LOOPS))
def test_a_connection_aborted_before_its_transport_came_drops_it_as_it_comes(kind):
    """uvloop calls connection_made on the transport of a create_connection cancelled after the
    socket connected, and never connection_lost: the connection, aborted by connect() meanwhile,
    must drop that transport and start nothing (before: it opened, with a heartbeat timer)."""
    loop = LOOPS[kind]()
    try:
        conn = Connection(loop, idle_timeout=10)
        conn.abort()                    # connect() gave up: no transport yet
        transport = FakeTransport()
        conn.connection_made(transport)
        assert transport.aborted
        assert conn.closed.done() and conn._timer is None
        conn.connection_lost(None)      # if it comes after all: nothing more happens
    finally:
        loop.close()


@pytest.mark.parametrize("kind", sorted(LOOPS))
def test_outgoing_close_drops_every_connection_and_waits_until_each_is_lost(kind):
    async def main():
        accepted = []
        server = await asyncio.start_server(lambda r, w: accepted.append(w), "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        outgoing = Outgoing()
        attempt = asyncio.ensure_future(connect("127.0.0.1:%d" % port, timeout=10, track=outgoing))
        # connected (the transport has come); waiting for an open that never comes
        await async_wait_until(lambda: accepted and len(outgoing) == 1
                               and next(iter(outgoing._conns)).transport is not None, 10,
                               message="the connection's transport")
        assert not attempt.done()
        (conn,) = list(outgoing._conns)
        await outgoing.close()
        assert conn.closed.done()       # connection_lost has run: nothing holds it now
        with pytest.raises(Exception):
            await attempt
        for w in accepted:
            w.close()
        server.close()
        await server.wait_closed()
    loop = LOOPS[kind]()
    try:
        loop.run_until_complete(main())
    finally:
        loop.close()


class ClosedTransport(FakeTransport):
    """uvloop's transport of a cancelled create_connection: closed by the loop before the protocol's
    connection_made ran; abort changes nothing and connection_lost never comes."""

    def abort(self):
        pass

    def is_closing(self):
        return False


@pytest.mark.parametrize("kind", sorted(LOOPS))
def test_a_connection_whose_transport_came_already_closed_ends_at_its_abort(kind):
    loop = LOOPS[kind]()
    try:
        conn = Connection(loop, idle_timeout=10)
        conn.connection_made(ClosedTransport())     # before connect() gave up: it starts
        assert conn._timer is not None
        conn.abort()                                # connect() gives up now
        assert conn.closed.done() and conn._timer is None and not conn.is_open
        conn.connection_lost(None)                  # should it come after all: nothing more happens
    finally:
        loop.close()
