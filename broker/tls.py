"""TLS: the broker's certificate, its TLS listener, and who a client certificate says the peer is.

qpidd keeps its certificate in an NSS database (``--ssl-cert-db``, ``--ssl-cert-name``,
``--ssl-cert-password-file``); cypid reads PEM files, through Python's ``ssl`` module on the broker's
own event loop (uvloop's or asyncio's TLS). The options:

=====================================  ==========================================================
``--ssl-cert-file FILE``               the broker's certificate (PEM, chain allowed); TLS is on
                                       only when it is given, as qpidd's with ``--ssl-cert-db``
``--ssl-key-file FILE``                its private key (PEM; default: the certificate file)
``--ssl-cert-password-file FILE``      qpidd's name: here, the passphrase of an encrypted key
``--ssl-ca-file FILE``                 the CAs (PEM) a client certificate must chain to; without
                                       it clients are not asked for certificates
``--ssl-port PORT``                    (5671) where TLS connections are accepted; the same port
                                       as ``--port`` takes both plain and TLS connections, told
                                       apart by their first byte, as qpidd does
``--ssl-require-client-authentication``  a client without a valid certificate fails the handshake
``--ssl-sasl-no-dict``                 on TLS connections offer only SASL mechanisms that resist
                                       a passive dictionary attack: EXTERNAL
``--require-encryption``               plain (non-TLS) connections are offered no SASL mechanism
                                       and are closed after open with amqp:unauthorized-access
``--ssl-cert-db``, ``--ssl-cert-name``,  accepted with one notice each saying what to use instead
``--ssl-use-export-policy``
=====================================  ==========================================================

A verified client certificate gives the SASL EXTERNAL identity as qpidd's does: the subject's common
name, with ``@`` and its domain components joined by dots when the subject has any
(``CN=alice,DC=example,DC=com`` -> ``alice@example.com``); a name without ``@`` then gets the realm,
as Cyrus SASL gives it to qpidd (``CN=alice`` -> ``alice@QPID``).

Connections are accepted here rather than by ``loop.create_server(ssl=...)`` so that a failed
handshake is logged (one line naming the peer and the reason: the loops report none), so that the
handshakes under way are bounded (``--max-connections``; over it a new socket is closed at once), and
so that one port can serve both kinds of connection.
"""
from __future__ import annotations

import asyncio
import errno
import logging
import socket
import ssl

from .errors import UNAUTHORIZED_ACCESS

TLS_RECORD_HANDSHAKE = 0x16        # the first byte of a TLS ClientHello; an AMQP header starts 'A'
ACCEPT_RETRY = 1.0                 # seconds before accepting again after EMFILE/ENFILE


class TlsConfigError(ValueError):
    """A TLS option that cannot be used (the text names the option and the file)."""


def _read_password(path):
    try:
        with open(path, encoding="utf-8") as f:
            return f.readline().rstrip("\r\n")
    except OSError as e:
        raise TlsConfigError("--ssl-cert-password-file %s: %s" % (path, e.strerror)) from None


def server_context(options, log):
    """The broker's SSLContext, or None when TLS is off (no --ssl-cert-file). Notices for qpidd's
    NSS options; TlsConfigError for files that cannot be used."""
    for name, instead in (("ssl_cert_db", "--ssl-cert-file, --ssl-key-file and --ssl-ca-file (PEM files; "
                           "README shows how to export them from an NSS database with pk12util and openssl)"),
                          ("ssl_cert_name", "--ssl-cert-file: a PEM file holds the one certificate to use"),
                          ("ssl_use_export_policy", "nothing: cypid uses OpenSSL's defaults, TLS 1.2 and later")):
        if getattr(options, name, None):
            log.log(25, "SSL: --%s is qpidd's NSS option and is ignored: use %s", name.replace("_", "-"), instead)
    cert = getattr(options, "ssl_cert_file", None)
    ca = getattr(options, "ssl_ca_file", None)
    require_client = getattr(options, "ssl_require_client_authentication", False)
    if not cert:
        if getattr(options, "require_encryption", False):
            raise TlsConfigError("--require-encryption: no connection could be made: TLS needs --ssl-cert-file")
        unused = [flag for flag, on in (("--ssl-ca-file", ca), ("--ssl-key-file", getattr(options, "ssl_key_file", None)),
                                        ("--ssl-require-client-authentication", require_client),
                                        ("--ssl-sasl-no-dict", getattr(options, "ssl_sasl_no_dict", False)))
                  if on]
        if unused:
            log.log(25, "SSL: TLS is off (no --ssl-cert-file): %s ignored", ", ".join(unused))
        return None
    key = getattr(options, "ssl_key_file", None) or cert
    pw_file = getattr(options, "ssl_cert_password_file", None)
    password = _read_password(pw_file) if pw_file else None
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(cert, key, password)
    except (OSError, ssl.SSLError) as e:
        raise TlsConfigError("--ssl-cert-file %s / --ssl-key-file %s: cannot load the certificate and key: %s"
                             % (cert, key, getattr(e, "strerror", None) or e)) from None
    if ca:
        try:
            ctx.load_verify_locations(cafile=ca)
        except (OSError, ssl.SSLError) as e:
            raise TlsConfigError("--ssl-ca-file %s: %s" % (ca, getattr(e, "strerror", None) or e)) from None
        ctx.verify_mode = ssl.CERT_REQUIRED if require_client else ssl.CERT_OPTIONAL
    elif require_client:
        raise TlsConfigError("--ssl-require-client-authentication needs --ssl-ca-file: the CAs that client "
                             "certificates must chain to")
    return ctx


def auth_id(cert):
    """qpidd's identity of a certificate (``getpeercert()``'s dict): CN, then ``@dc1.dc2`` when the
    subject has domain components; None without a common name."""
    cn, dcs = None, []
    for rdn in (cert or {}).get("subject", ()):
        for key, value in rdn:
            if key == "commonName" and cn is None:
                cn = value
            elif key == "domainComponent":
                dcs.append(value)
    if not cn:
        return None
    # DER order is the root first (DC=com, DC=example, CN=alice); the name reads from the leaf
    return cn + ("@" + ".".join(reversed(dcs)) if dcs else "")


def peer_auth(transport):
    """(identity of the peer's verified certificate or None, the cipher's key bits) of a connection;
    (None, 0) for a plain one."""
    sslobj = transport.get_extra_info("ssl_object") if transport is not None else None
    if sslobj is None:
        return None, 0
    cipher = sslobj.cipher()
    try:
        cert = sslobj.getpeercert()     # {} / None unless a certificate was presented and verified
    except ValueError:                  # pragma: no cover - handshake not done
        cert = None
    return auth_id(cert), (cipher[2] if cipher else 0)


class Tls:
    """One broker's TLS: the context, the listener(s), and the --require-encryption check."""

    def __init__(self, options, log):
        self.log = log.getChild("Security") if hasattr(log, "getChild") else log
        self.options = options
        self.context = server_context(options, self.log)
        self.port = None                # where TLS connections are accepted, once listening
        self.require_encryption = bool(getattr(options, "require_encryption", False))
        self.refused_plain = 0
        ssl_port = getattr(options, "ssl_port", 5671)
        self.mux = self.context is not None and ssl_port == options.port   # qpidd: one port for both

    @property
    def enabled(self):
        return self.context is not None

    async def listen(self, broker, host, port, mux=False):
        """A listener on host:port: TLS connections (and plain ones too when ``mux``)."""
        listener = Listener(broker, self, host, port, mux)
        listener.start()
        return listener

    async def start(self, broker, hosts):
        """The TLS listeners on --ssl-port when it is not the plain port (those are made by the broker
        with listen(mux=True)); the servers made."""
        if self.context is None:
            return []
        if self.mux:
            self.port = broker.port
            self.log.log(25, "Listening for SSL connections on TCP port %d (plain ones too, as --ssl-port is "
                         "--port)", broker.port)
            return []
        servers, port = [], self.options.ssl_port
        for host in hosts:
            server = await self.listen(broker, host, port)
            servers.append(server)
            port = server.sockets[0].getsockname()[1]
        self.port = port
        self.log.log(25, "Listening for SSL connections on TCP port %d", port)
        return servers

    def refusal(self, conn):
        """(condition, text, log level) when --require-encryption refuses this plain connection."""
        if not self.require_encryption or conn.transport is None or \
                conn.transport.get_extra_info("ssl_object") is not None:
            return None
        self.refused_plain += 1
        level = logging.WARNING if self.refused_plain == 1 else logging.DEBUG
        return (UNAUTHORIZED_ACCESS, "encryption required (--require-encryption): connect with TLS "
                "(amqps) to port %s" % (self.port or self.options.ssl_port), level)


class Listener:
    """A listening socket whose connections are handed to the loop with TLS (``mux``: TLS or plain,
    by their first byte). Looks like an asyncio Server to the broker: ``sockets``, ``close()``,
    ``wait_closed()``."""

    def __init__(self, broker, tls, host, port, mux):
        self.broker = broker
        self.tls = tls
        self.loop = broker.loop
        self.log = tls.log
        self.host, self.port, self.mux = host, port, mux
        self.sock = None
        self.sockets = []
        self.sniffing = {}          # socket -> timer: waiting for the first byte (mux)
        self.tasks = set()          # handshakes under way
        self.full_logged = False
        self.closed = False

    def start(self):
        opts = self.broker.options
        family = socket.getaddrinfo(self.host, self.port, type=socket.SOCK_STREAM,
                                    flags=socket.AI_PASSIVE)[0][0]
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, self.port))
            sock.listen(max(opts.connection_backlog, 128))
        except OSError as e:
            sock.close()
            raise OSError(e.errno, "%s (%s:%s, --ssl-port)" % (e.strerror, self.host, self.port)) from None
        sock.setblocking(False)
        self.sock = sock
        self.sockets = [sock]
        self.loop.add_reader(sock.fileno(), self._accept)

    # -- accepting --------------------------------------------------------------------------------
    def _accept(self):
        limit = self.broker.options.max_connections or 1000     # sockets negotiating at once
        while not self.closed:
            try:
                conn, addr = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                if e.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    self.log.error("SSL listener: cannot accept (%s): retrying in %.0fs", e.strerror, ACCEPT_RETRY)
                    self.loop.remove_reader(self.sock.fileno())
                    self.loop.call_later(ACCEPT_RETRY, self._resume)
                return
            if len(self.sniffing) + len(self.tasks) >= limit:
                if not self.full_logged:
                    self.full_logged = True
                    self.log.warning("SSL listener: %d connections are negotiating; closing new ones "
                                     "(first: %s:%s)", limit, addr[0], addr[1])
                conn.close()
                continue
            self.full_logged = False
            conn.setblocking(False)
            try:
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:     # pragma: no cover
                pass
            if self.mux:
                self.loop.add_reader(conn.fileno(), self._sniffed, conn)
                self.sniffing[conn] = self.loop.call_later(self.broker.options.max_negotiate_time,
                                                           self._sniff_timeout, conn)
            else:
                self._hand_over(conn, True)

    def _resume(self):
        if not self.closed:
            self.loop.add_reader(self.sock.fileno(), self._accept)

    def _sniffed(self, conn):
        try:
            head = conn.recv(1, socket.MSG_PEEK)
        except (BlockingIOError, InterruptedError):
            return                  # spurious wake-up: keep waiting
        except OSError:
            head = b""
        self._stop_sniffing(conn)
        if not head:
            conn.close()
            return
        self._hand_over(conn, head[0] == TLS_RECORD_HANDSHAKE)

    def _sniff_timeout(self, conn):
        self.log.warning("Connection from %s closed: nothing received within the negotiation time",
                         _peer(conn))
        self._stop_sniffing(conn, cancel=False)
        conn.close()

    def _stop_sniffing(self, conn, cancel=True):
        timer = self.sniffing.pop(conn, None)
        if timer is not None and cancel:
            timer.cancel()
        try:
            self.loop.remove_reader(conn.fileno())
        except (ValueError, OSError):   # pragma: no cover - already closed
            pass

    def _hand_over(self, conn, tls):
        task = self.loop.create_task(self._connect(conn, tls))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _connect(self, conn, tls):
        from .connection import Connection
        peer = _peer(conn)
        kwargs = {"ssl": self.tls.context,
                  "ssl_handshake_timeout": self.broker.options.max_negotiate_time} if tls else {}
        try:
            await self.loop.connect_accepted_socket(lambda: Connection(self.broker), conn, **kwargs)
        except asyncio.CancelledError:
            conn.close()
            raise
        except (OSError, asyncio.TimeoutError, ssl.SSLError) as e:    # ssl.SSLError is an OSError
            conn.close()
            reason = getattr(e, "reason", None) or str(e) or type(e).__name__
            self.log.warning("SSL handshake with %s failed: %s", peer, reason)

    # -- the Server interface ------------------------------------------------------------------------
    def close(self):
        if self.closed:
            return
        self.closed = True
        if self.sock is not None:
            self.loop.remove_reader(self.sock.fileno())
            self.sock.close()
        for conn in list(self.sniffing):
            self._stop_sniffing(conn)
            conn.close()
        for task in list(self.tasks):
            task.cancel()

    async def wait_closed(self):
        if self.tasks:
            await asyncio.gather(*self.tasks, return_exceptions=True)


def _peer(conn):
    try:
        host, port = conn.getpeername()[:2]
        return "%s:%s" % (host, port)
    except OSError:
        return "?"


__all__ = ["Tls", "TlsConfigError", "auth_id", "peer_auth", "server_context"]
