"""python-qpid-proton's Container/MessagingHandler API in tests: a handler base class that fails the
test (instead of hanging) when its deadline passes or a link/connection/transport error arrives, and
``run()`` to drive it to completion.

    class Go(ClientHandler):
        def setup(self, event):
            conn = self.connect()
            ...
        def on_message(self, event):
            ...
            self.finish()          # cancels the deadline and closes every connection

    run(Go(broker.url))            # raises what a handler raised, or TimeoutError at the deadline
"""
from proton import Endpoint
from proton.handlers import MessagingHandler
from proton.reactor import Container


class HandlerError(AssertionError):
    """The broker closed a link, session or connection with an error the test did not expect."""


class _Deadline:
    def __init__(self, handler):
        self.handler = handler

    def on_timer_task(self, event):
        self.handler.timed_out = True
        raise TimeoutError(f"{type(self.handler).__name__} did not finish within {self.handler.timeout}s: "
                           f"{self.handler.progress()}")


class ClientHandler(MessagingHandler):
    """Base for test handlers. Override ``setup(event)`` (called on container start) and call
    ``finish()`` when done. ``expect_link_errors`` lets link refusals through to ``on_link_error``
    overrides instead of failing the test."""

    expect_link_errors = False

    def __init__(self, url, timeout=30.0, **kwargs):
        super().__init__(**kwargs)
        self.url = url
        self.timeout = timeout
        self.container = None
        self.connections = []
        self.timed_out = False
        self.finished = False
        self._deadline = None

    # -- driving -------------------------------------------------------------------
    def on_start(self, event):
        self.container = event.container
        self._deadline = event.container.schedule(self.timeout, _Deadline(self))
        self.setup(event)

    def setup(self, event):  # pragma: no cover - every test handler overrides it
        raise NotImplementedError

    def connect(self, **kwargs):
        conn = self.container.connect(self.url, **kwargs)
        self.connections.append(conn)
        return conn

    def finish(self):
        """Success: stop the deadline and close every connection still open."""
        if self.finished:
            return
        self.finished = True
        if self._deadline is not None:
            self._deadline.cancel()
        for conn in self.connections:
            if conn.state & Endpoint.LOCAL_ACTIVE:
                conn.close()

    def progress(self):
        """What the handler has got so far (shown when it times out); override for detail."""
        return ""

    # -- errors fail the test ----------------------------------------------------------
    def on_link_error(self, event):
        if not self.expect_link_errors:
            raise HandlerError(f"link {event.link.name!r} closed by the broker: "
                               f"{event.link.remote_condition}")

    def on_session_error(self, event):
        raise HandlerError(f"session closed by the broker: {event.session.remote_condition}")

    def on_connection_error(self, event):
        raise HandlerError(f"connection closed by the broker: {event.connection.remote_condition}")

    def on_transport_error(self, event):
        if not self.finished:
            raise HandlerError(f"transport error: {event.transport.condition}")


def run(handler):
    """Run ``handler`` on a fresh Container until it has finished; return it."""
    Container(handler).run()
    if not handler.finished:
        raise HandlerError(f"{type(handler).__name__}: the container stopped before the handler finished: "
                           f"{handler.progress()}")
    return handler


__all__ = ["ClientHandler", "HandlerError", "run"]
