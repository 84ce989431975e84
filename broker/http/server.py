"""The broker's HTTP listener (``--http-port``, ``--http-interface``): aiohttp's server in the
broker's own event loop, off unless asked for.

Routes: ``/healthz``, ``/readyz`` (never ask for credentials: load balancers call them),
``/metrics`` (Prometheus), ``/`` and ``/static/...`` (the web console, files shipped in the
package), ``/api/...`` (the console's JSON, api.py). With ``--auth yes`` everything but the two
health checks needs HTTP Basic credentials of a broker user (auth.py).

Nothing on the message path waits on it: the listener is one more server on the loop; a scrape
reads counters and yields to the loop between metric families; password checks run in a thread.
A client cannot pile work or descriptors on it: at most ``--http-max-connections`` are open (more
are answered 503 at once and closed; one log line per episode), and ``--http-timeout`` closes a
connection that has not sent a request's headers that long after it opened or after its last
answer (idle, or a slowloris sending them a byte at a time; aiohttp's keep-alive timer), and a
request whose body has not come within it.
An action (POST) must carry a JSON body (``Content-Type: application/json``, which a page of
another site cannot send without the CORS preflight this server never grants) and, if the browser
sends an ``Origin``, come from this listener's own origin.
"""
import asyncio
import json
import os

from aiohttp import web

from . import metrics
from .api import Api, ApiError, action_error
from .auth import BasicAuth
from .health import readiness

STATIC_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")
OPEN_PATHS = ("/healthz", "/readyz")
USER = web.RequestKey("user", str)    # the identity a request acts as (auth.py)
MAX_BODY = 64 * 1024                 # largest request body (the console's actions are small)
SHUTDOWN_SECONDS = 1.0               # how long stop() lets requests under way finish
BUSY_TEXT = b"too many HTTP connections: try later\n"
BUSY = b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Type: text/plain\r\n" \
    b"Content-Length: %d\r\n\r\n%s" % (len(BUSY_TEXT), BUSY_TEXT)


class _Busy(asyncio.Protocol):
    """A connection over --http-max-connections: answered 503 and closed, nothing read."""

    def connection_made(self, transport):
        transport.write(BUSY)
        transport.close()


class _Counted(asyncio.Protocol):
    """aiohttp's protocol for one connection, counted in the listener's open connections."""

    def __init__(self, listener, handler):
        self.listener = listener
        self.handler = handler

    def connection_made(self, transport):
        self.handler.connection_made(transport)

    def data_received(self, data):
        self.handler.data_received(data)

    def eof_received(self):
        return self.handler.eof_received()

    def pause_writing(self):
        self.handler.pause_writing()

    def resume_writing(self):
        self.handler.resume_writing()

    def connection_lost(self, exc):
        self.listener.closed()
        self.handler.connection_lost(exc)


class HttpServer:
    def __init__(self, broker):
        self.broker = broker
        self.log = broker.log.getChild("HTTP")
        self.auth = BasicAuth(broker)
        self.api = Api(broker)
        self.labels = metrics.LabelCache()
        self.runner = None
        self.server = None
        self.port = None
        self.open = 0                   # connections open
        self.refused = 0                # refused in the current episode of --http-max-connections

    def app(self):
        app = web.Application(middlewares=[self._guard], client_max_size=MAX_BODY)
        r = app.router
        r.add_get("/healthz", self.healthz)
        r.add_get("/readyz", self.readyz)
        r.add_get("/metrics", self.metrics)
        r.add_get("/", self.index)
        r.add_static("/static/", STATIC_DIR, append_version=False)
        r.add_get("/api/overview", self._read(lambda request: self.api.overview()))
        r.add_get("/api/queues", self._read(lambda request: self.api.queues(
            request.query.get("filter", ""), _int(request.query.get("limit"), 200))))
        r.add_get("/api/exchanges", self._read(lambda request: self.api.exchanges()))
        r.add_get("/api/connections", self._read(lambda request: self.api.connections()))
        r.add_get("/api/ha", self._read(lambda request: self.api.ha()))
        r.add_post("/api/{action:.+}", self.action)
        return app

    async def start(self):
        opts = self.broker.options
        timeout = max(float(getattr(opts, "http_timeout", 10.0)), 0.05)
        self.max_connections = getattr(opts, "http_max_connections", 64)
        self.body_timeout = timeout
        self.runner = web.AppRunner(self.app(), access_log=None, handle_signals=False,
                                    shutdown_timeout=SHUTDOWN_SECONDS, keepalive_timeout=timeout)
        await self.runner.setup()
        try:
            self.server = await asyncio.get_running_loop().create_server(
                self._accept, opts.http_interface, opts.http_port, reuse_address=True)
        except OSError:
            await self.runner.cleanup()
            self.runner = None
            raise
        self.port = self.server.sockets[0].getsockname()[1]
        self.log.log(25, "HTTP listening on %s port %d (/metrics, /healthz, /readyz, console /)%s",
                     opts.http_interface, self.port,
                     "; HTTP Basic over the broker's users" if self.auth.required else "")
        return self

    async def stop(self):
        if self.server is not None:
            self.server.close()
        if self.runner is not None:
            await self.runner.cleanup()      # closes the connections open
            self.runner = None
        if self.server is not None:
            await self.server.wait_closed()
            self.server = None
        self.auth.close()

    def _accept(self):
        if self.open >= self.max_connections:
            if self.refused == 0:
                self.log.warning("HTTP: %d connections open (--http-max-connections): answering more "
                                 "with 503 until some close", self.open)
            self.refused += 1
            return _Busy()
        self.open += 1
        return _Counted(self, self.runner.server())

    def closed(self):
        self.open -= 1
        if self.refused and self.open < self.max_connections:
            self.log.warning("HTTP: accepting connections again (%d refused meanwhile)", self.refused)
            self.refused = 0

    # -- every request -----------------------------------------------------------------------------
    @web.middleware
    async def _guard(self, request, handler):
        if request.path in OPEN_PATHS:
            return await handler(request)
        peer = request.transport.get_extra_info("peername") if request.transport is not None else None
        peer = "%s:%s" % peer[:2] if peer else "?"
        user = await self.auth.user(request.headers.get("Authorization"), peer)
        if user is None:
            return web.Response(status=401, text="authentication required: a user of the broker\n",
                                headers={"WWW-Authenticate": 'Basic realm="cypid", charset="UTF-8"'})
        request[USER] = user
        if request.method == "POST":
            if request.content_type != "application/json":
                return _json({"error": "an action needs Content-Type: application/json"}, 415)
            origin = request.headers.get("Origin")
            if origin is not None and origin != "%s://%s" % (request.scheme, request.host):
                return _json({"error": "cross-origin action refused (Origin %s)" % origin}, 403)
        return await handler(request)

    # -- handlers ---------------------------------------------------------------------------------------
    async def healthz(self, request):
        return web.Response(text="ok\n")

    async def readyz(self, request):
        ready, reason = readiness(self.broker)
        return web.Response(status=200 if ready else 503, text=reason + "\n")

    async def metrics(self, request):
        ready, _ = readiness(self.broker)
        chunks = []
        for chunk in metrics.render(self.broker, ready, self.labels):
            chunks.append(chunk)
            await asyncio.sleep(0)          # let the loop serve clients between families
        return web.Response(body=b"".join(chunks),
                            headers={"Content-Type": metrics.CONTENT_TYPE})

    async def index(self, request):
        return web.FileResponse(os.path.join(STATIC_DIR, "index.html"),
                                headers={"Cache-Control": "no-cache"})

    def _read(self, reader):
        async def handler(request):
            try:
                return _json(reader(request))
            except ApiError as e:
                return _json(action_error(e), e.http_status)
        return handler

    async def action(self, request):
        try:
            async with asyncio.timeout(self.body_timeout):
                body = await request.json()
        except TimeoutError:
            return _json({"error": "the request body did not come in time (--http-timeout)"}, 408)
        except (ValueError, UnicodeDecodeError):
            return _json({"error": "the request body is not JSON"}, 400)
        action = request.match_info["action"]
        try:
            out = await self.api.act(action, request[USER], body)
        except ApiError as e:
            self.log.info("HTTP action %s by %s refused: %s", action, request[USER], e.text)
            return _json(action_error(e), e.http_status)
        self.log.log(25, "HTTP action %s by %s: %s", action, request[USER], _describe(body))
        return _json(out)


def _describe(body):
    if not isinstance(body, dict):
        return "?"
    return ", ".join("%s=%s" % (k, body[k]) for k in sorted(body) if k != "properties")


def _int(text, default):
    try:
        return int(text)
    except (TypeError, ValueError):
        return default


def _json(value, status=200):
    return web.Response(status=status, text=json.dumps(value), content_type="application/json",
                        headers={"Cache-Control": "no-store"})


async def start_http(broker):
    """Start the listener the broker's options ask for; returns the HttpServer (``.port``,
    ``.stop()``). Raises OSError if it cannot listen."""
    return await HttpServer(broker).start()


__all__ = ["STATIC_DIR", "HttpServer", "start_http"]
