"""Fail-over through a list of brokers: what a client of an active-passive cluster needs.

A cluster's clients are given every broker's address (or one virtual IP). Backups refuse clients
(qpidd drops the TCP connection; cypid does too, except for clients that say they follow redirects
with the connection property ``cypid.follow-redirect``, as this one does: it closes their connection
with ``amqp:connection:redirect`` naming the primary when it knows it), so a client tries the addresses in turn until one accepts it, and does so again
when its connection is lost. Heartbeats find a dead peer that TCP does not report.

``parse_urls`` reads qpidd's URL grammar (``amqp:[user[/password]@]tcp:h1:p1,tcp:h2:p2``), a
comma-separated ``host:port`` list or ``amqp://`` URLs, or a Python list of any of those.

``await FailoverConnection.open(urls, heartbeat=10)`` gives a connection that reconnects by itself:
its senders resend, after a fail-over, every message whose outcome they had not yet received (at
least once: the broker may have had some of them, so duplicates are possible, as with qpidd's
clients), and its receivers attach again (messages delivered but not accepted come again).
"""
import asyncio
import logging
import time

from cypid.pyx import amqp

from .connection import connect
from .errors import ClientError, ConnectionClosed, LinkDetached, SessionEnded
from .message import Message

log = logging.getLogger("cypid.client")

REDIRECT = amqp.CONNECTION_REDIRECT
#: the connection property by which a client tells a cypid HA backup it follows redirects (ha/habroker.py)
FOLLOW_REDIRECT = "cypid.follow-redirect"
DEFAULT_PORT = 5672


def _split_host_port(addr):
    if addr.startswith("["):
        host, _, rest = addr[1:].partition("]")
        return host, rest[1:] if rest.startswith(":") else ""
    host, _, port = addr.partition(":")
    return host, port


def parse_urls(urls):
    """The list of ``connect()`` URLs in ``urls`` (see the module docstring), in order. Raises
    ValueError for an address this client cannot use (``ssl:``, ``rdma:``) or an empty list."""
    if isinstance(urls, (list, tuple)):
        out = [u for item in urls for u in parse_urls(item)]
    else:
        text = str(urls).strip()
        if "://" in text:
            out = [part.strip() for part in text.split(",") if part.strip()]
        else:
            if text.startswith("amqp:"):
                text = text[5:]
            user = ""
            if "@" in text:
                user, text = text.split("@", 1)
            out = []
            for addr in (a.strip() for a in text.split(",")):
                if not addr:
                    continue
                if addr.startswith("tcp:"):
                    addr = addr[4:]
                elif addr.split(":", 1)[0] in ("ssl", "rdma", "amqps"):
                    raise ValueError("unsupported transport in %r (this client speaks plain TCP)" % addr)
                host, port = _split_host_port(addr)
                if port and not port.isdigit():
                    raise ValueError("bad port in broker address %r" % addr)
                host = "[%s]" % host if ":" in host else (host or "127.0.0.1")
                hostport = "%s:%s" % (host, port or DEFAULT_PORT)
                if user:
                    name, _, password = user.partition("/")
                    hostport = "amqp://%s:%s@%s" % (name, password, hostport)
                out.append(hostport)
    if not out:
        raise ValueError("no broker address in %r" % (urls,))
    return out


def _redirect_target(error):
    """``host:port`` from an ``amqp:connection:redirect`` close, or None."""
    if not isinstance(error, ClientError) or error.condition != REDIRECT or not isinstance(error.info, dict):
        return None
    info = {str(k): v for k, v in error.info.items()}
    host = info.get("network-host") or info.get("hostname")
    if not host:
        return None
    return "%s:%s" % (host, info.get("port") or DEFAULT_PORT)


async def connect_any(urls, *, reconnect_timeout=None, reconnect_limit=None, interval_min=0.05,
                      interval_max=2.0, timeout=10.0, first=None, **options):
    """Connect to the first broker of ``urls`` that accepts the connection, trying them in turn
    (round after round, waiting ``interval_min`` doubling up to ``interval_max`` between rounds) until
    ``reconnect_timeout`` seconds or ``reconnect_limit`` rounds have passed (None: for ever). A
    redirect is followed at once; ``first`` (an address) is tried before the list in the first
    round. Returns (connection, its url); raises the last failure."""
    addresses = parse_urls(urls)
    properties = dict(options.pop("properties", None) or {})
    properties.setdefault(FOLLOW_REDIRECT, True)
    options["properties"] = properties
    deadline = None if reconnect_timeout is None else time.monotonic() + reconnect_timeout
    interval = interval_min
    rounds = 0
    last = None
    while True:
        pending = list(addresses)
        if first and rounds == 0:
            pending = [first] + [a for a in pending if a != first]
        while pending:
            url = pending.pop(0)
            try:
                conn = await connect(url, timeout=timeout, **options)
                if not conn.is_open:        # a backup's open comes with its close (redirect)
                    raise conn.error or ConnectionClosed("connection to %s closed at once" % url)
                return conn, url
            except (OSError, ClientError) as e:
                last = e
                target = _redirect_target(e)
                if target and target not in pending and target != url:
                    pending.insert(0, target)
        rounds += 1
        if reconnect_limit is not None and rounds >= reconnect_limit:
            break
        if deadline is not None and time.monotonic() + interval > deadline:
            break
        await asyncio.sleep(interval)
        interval = min(interval * 2, interval_max)
    raise ConnectionClosed("no broker in %s accepted a connection (last: %s)" % (", ".join(addresses), last))


LOST = (ConnectionClosed, SessionEnded, LinkDetached)


class FailoverConnection:
    """A connection to whichever broker of a list accepts it, reconnecting when it is lost. Make it
    with ``await FailoverConnection.open(urls, heartbeat=None, reconnect_timeout=None, ...)``;
    other options are ``connect()``'s. ``failovers`` counts the reconnections."""

    def __init__(self, urls, *, heartbeat=None, reconnect_timeout=None, reconnect_limit=None, **options):
        self.urls = parse_urls(urls)
        if heartbeat:
            # qpidd's heartbeat: each side beats this often, a peer silent for twice as long is dead.
            options.setdefault("idle_timeout", 2 * float(heartbeat))
        self.options = options
        self.reconnect_timeout = reconnect_timeout
        self.reconnect_limit = reconnect_limit
        self.connection = None
        self.url = None
        self.failovers = 0
        self.links = []
        self.error = None
        self._closing = False
        self._watcher = None
        self._changed = None        # resolved (and replaced) whenever the connection or a link changes

    @classmethod
    async def open(cls, urls, **options):
        self = cls(urls, **options)
        self._changed = asyncio.get_running_loop().create_future()
        await self._connect()
        self._watcher = asyncio.ensure_future(self._watch())
        return self

    async def _connect(self, first=None):
        self.connection, self.url = await connect_any(
            self.urls, reconnect_timeout=self.reconnect_timeout, reconnect_limit=self.reconnect_limit,
            first=first, **self.options)

    def _notify(self):
        changed, self._changed = self._changed, asyncio.get_running_loop().create_future()
        if not changed.done():
            changed.set_result(None)

    async def _watch(self):
        """Reconnect whenever the connection is lost, until close() or the reconnect limits."""
        while not self._closing:
            await asyncio.shield(self.connection.closed)
            if self._closing:
                return
            lost = self.connection.error
            log.warning("connection to %s lost (%s): failing over", self.url, lost)
            try:
                await self._connect(first=_redirect_target(lost))
            except ClientError as e:
                self.error = e
                self._notify()
                return
            for link in list(self.links):
                try:
                    await link._reattach(self.connection)
                except ClientError as e:
                    # The connection went again meanwhile: the next round re-attaches it.
                    log.warning("re-attaching %s failed: %s", link.address, e)
            self.failovers += 1
            self._notify()

    async def _wait_change(self):
        await asyncio.shield(self._changed)

    async def sender(self, address, **options):
        return await self._add(FailoverSender(self, address, options))

    async def receiver(self, address, **options):
        return await self._add(FailoverReceiver(self, address, options))

    async def _add(self, link):
        while True:
            if self.error is not None:
                raise self.error
            conn = self.connection
            if conn.is_open:
                try:
                    await link._reattach(conn)
                    break
                except LOST:
                    if conn.is_open:
                        raise       # refused by a live broker: not a fail-over matter
            await self._wait_change()
        self.links.append(link)
        return link

    async def close(self, timeout=10.0):
        self._closing = True
        if self._watcher is not None:
            self._watcher.cancel()
        if self.connection is not None:
            await self.connection.close(timeout)

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        await self.close()


class _FailoverLink:
    def __init__(self, owner, address, options):
        self.owner = owner
        self.address = address
        self.options = options
        self.link = None
        self.attaches = 0

    async def _reattach(self, conn):
        self.link = await self._attach(conn)
        self.attaches += 1

    async def _current(self):
        """The link on the live connection, waiting through a fail-over. A link the live broker
        detached raises its error."""
        owner = self.owner
        while True:
            if owner.error is not None:
                raise owner.error
            conn, link = owner.connection, self.link
            if conn.is_open and link is not None and link.connection is conn:
                if link.is_attached:
                    return link
                raise link.error or LinkDetached("link to %r detached" % self.address)
            await owner._wait_change()

    async def close(self):
        if self in self.owner.links:
            self.owner.links.remove(self)
        if self.link is not None and self.link.is_attached:
            try:
                await self.link.close()
            except ClientError:
                pass


class FailoverSender(_FailoverLink):
    """``await send(message)`` then ``await wait_settled()``: every message is accepted by some broker
    of the list at least once. Messages whose outcome has not come back are kept (at most ``window``,
    then send waits) and sent again on the next connection after a fail-over; ``resent`` counts them."""

    def __init__(self, owner, address, options):
        super().__init__(owner, address, options)
        self.window = int(options.get("window", 5000))
        self._unsettled = []        # encoded messages sent since everything was last settled
        self.resent = 0

    async def _attach(self, conn):
        link = await conn.sender(self.address, **self.options)
        if self._unsettled:
            for data in self._unsettled:
                link.send_nowait(data)
            self.resent += len(self._unsettled)
        return link

    async def send(self, message):
        if not isinstance(message, (bytes, bytearray, memoryview)):
            message = message.encode() if isinstance(message, Message) else Message(message).encode()
        data = bytes(message)
        if len(self._unsettled) >= self.window:
            await self.wait_settled()
        self._unsettled.append(data)
        while True:
            link = await self._current()
            try:
                link.send_nowait(data)
                return
            except LOST:
                continue        # the fail-over resends it with the others

    async def wait_settled(self, timeout=None):
        """Wait until every message sent has its outcome, across fail-overs (DeliveryFailed if one
        was not accepted)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            link = await self._current()
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                await link.wait_settled(remaining, check=False)
            except LOST:
                continue
            if link is self.link and link.is_attached and not link.outstanding:
                self._unsettled.clear()
                link.check_outcomes()
                return


class FailoverReceiver(_FailoverLink):
    """``await get(timeout)`` across fail-overs. Messages a lost link had buffered are handed out
    first; those not yet accepted when a broker went come again from the next one."""

    def __init__(self, owner, address, options):
        super().__init__(owner, address, options)
        self._old = []

    async def _attach(self, conn):
        if self.link is not None and self.link.buffered:
            self._old.append(self.link)
        return await conn.receiver(self.address, **self.options)

    async def get(self, timeout=None):
        while self._old:
            msg = self._old[0].get_nowait()
            if msg is not None:
                return msg
            self._old.pop(0)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            link = await self._current()
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                return await link.get(remaining)
            except LOST:
                if link.buffered:
                    return link.get_nowait()


__all__ = ["parse_urls", "connect_any", "FailoverConnection", "FailoverSender", "FailoverReceiver"]
