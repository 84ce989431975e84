"""The tools' one QMF v2 console, over AMQP 1.0 with python-qpid-proton.

Every tool (qpid-config, qpid-stat, qpid-tool, qpid-printevents) talks to a broker only through
this module, so they manage a stock qpidd as well as cypid (see ../shared/reference/qmf2.md):

* requests go to the exchange ``qmf.default.direct`` with subject ``broker``; replies come back on a
  dynamic receiver whose address is the requests' ``reply-to``;
* ``_query_request`` -> ``_query_response`` (possibly in several messages, all but the last marked
  ``partial``), ``_method_request`` -> ``_method_response`` or ``_exception``, matched on the
  correlation id; an ``_exception`` raises :class:`QmfError` carrying the agent's ``error_text``;
* events are read from ``qmf.default.topic`` with a topic binding filter (``agent.ind.event.#``).

Nothing here imports the broker: it is a plain AMQP client.
"""
from __future__ import annotations

import itertools
import os
import re
import socket
import time
import uuid
from typing import Any, Iterable

__all__ = [
    "BrokerURL", "QmfError", "QmfTimeout", "ConnectError", "QmfObject", "QmfEvent", "BrokerAgent",
    "Connection", "connect", "BROKER_OBJECT", "PACKAGE", "ref_name", "strip_ref",
]

#: The broker object's name, target of create/delete/... methods.
BROKER_OBJECT = "org.apache.qpid.broker:broker:amqp-broker"
PACKAGE = "org.apache.qpid.broker"
REQUEST_EXCHANGE = "qmf.default.direct"
TOPIC_EXCHANGE = "qmf.default.topic"
EVENT_KEY = "agent.ind.event.#"
#: qpidd's topic-binding filter descriptor (what qpid::messaging sends for "exchange/key").
TOPIC_FILTER = "apache.org:legacy-amqp-topic-binding:string"
DEFAULT_PORT = 5672
DEFAULT_SSL_PORT = 5671
#: the running tool's name (each tool's main sets it): the connection's container id and the
#: ``qpid.client_process`` property start with it, so the broker's listings say who is connected
PROGRAM = "qpid-tools"
_connection_count = itertools.count(1)


def container_id() -> str:
    """``<tool>.<host>.<pid>`` (``-N`` added from the second connection of a process on)."""
    n = next(_connection_count)
    base = "%s.%s.%d" % (PROGRAM, socket.gethostname() or "localhost", os.getpid())
    return base if n == 1 else "%s-%d" % (base, n)

# -- broker addresses -----------------------------------------------------------------------------

_URL_RE = re.compile(r"""
    ^ (?: ([^:/@]+) :// )?                      # scheme
      (?: ([^:/@]+) (?: / ([^:/@]+) )? @ )?     # user[/password]@
      (?: ([^@:/\[]+) | \[ ([a-f0-9:.]+) \] )   # host or [ipv6]
      (?: : ([0-9]+) )? $                       # :port
""", re.I | re.X)


class BrokerURL:
    """A tool's broker address: ``[scheme://][user[/password]@]host[:port]`` (qpid.util.URL's
    grammar, default port 5672, 5671 for amqps)."""

    def __init__(self, text: str):
        text = (text or "").strip()
        m = _URL_RE.match(text)
        if not m:
            raise ValueError("invalid broker address: %r (expected [username/password@] "
                             "hostname | ip-address [:<port>])" % text)
        scheme, user, password, host, ipv6, port = m.groups()
        self.scheme = scheme.lower() if scheme else None
        if self.scheme not in (None, "amqp", "amqps"):
            raise ValueError("invalid broker address: %r (unknown scheme %r)" % (text, scheme))
        self.user = user
        self.password = password
        self.host = host if host is not None else ipv6
        self.ipv6 = ipv6 is not None
        default = DEFAULT_SSL_PORT if self.scheme == "amqps" else DEFAULT_PORT
        self.port = int(port) if port else default
        if not 0 < self.port < 65536:
            raise ValueError("invalid broker address: %r (port out of range)" % text)

    @property
    def hostport(self) -> str:
        host = "[%s]" % self.host if self.ipv6 else self.host
        return "%s:%d" % (host, self.port)

    def proton_url(self) -> str:
        """The address proton connects to (credentials are passed separately)."""
        return "%s://%s" % (self.scheme or "amqp", self.hostport)

    def __str__(self) -> str:
        out = "%s://" % self.scheme if self.scheme else ""
        if self.user:
            out += self.user + ("/" + self.password if self.password else "") + "@"
        return out + self.hostport

    def __repr__(self) -> str:
        return "BrokerURL(%r)" % str(self)


# -- errors ---------------------------------------------------------------------------------------

class QmfError(Exception):
    """The agent answered ``_exception``: ``error_code`` and ``error_text`` as qpidd sends them.
    ``str()`` is qpidtoollibs' text: ``Exception from Agent: {'error_code': 7, 'error_text': ...}``."""

    def __init__(self, values: dict | None):
        values = dict(values or {})
        self.values = values
        self.error_code = values.get("error_code")
        self.error_text = str(values.get("error_text", ""))
        super().__init__(self.error_text)

    def __str__(self) -> str:
        shown = {}
        if "error_code" in self.values:
            shown["error_code"] = _plain(self.values["error_code"])
        if "error_text" in self.values:
            shown["error_text"] = str(self.values["error_text"])
        for k, v in self.values.items():
            shown.setdefault(str(k), _plain(v))
        return "Exception from Agent: %r" % (shown,)


class QmfTimeout(Exception):
    """No (complete) answer within the timeout: the broker has no QMF agent, or it is busy."""


class ConnectError(Exception):
    """The broker could not be reached, refused the connection, or it dropped."""


def _plain(value):
    """Proton's typed values (symbol, ulong, Described ...) as plain Python values, recursively."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, str):
        return str(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, dict):
        return {_plain(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (bytes, bytearray, memoryview)):
        data = bytes(value)
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            return data
    descr = getattr(value, "value", None)
    if descr is not None and hasattr(value, "descriptor"):
        return _plain(descr)
    return value


def settle_values(message):
    """Convert a received message's body, application properties and correlation id to plain Python
    values at once. python-qpid-proton hands AMQP binary back as a view into memory it reuses for
    later messages (qpidd sends QMF strings as binary), so a reply kept until the last partial reply
    arrives must not hold such views."""
    if message is None:
        return None
    message.body = _plain(message.body)
    if message.properties:
        message.properties = {str(k): _plain(v) for k, v in message.properties.items()}
    cid = message.correlation_id
    if isinstance(cid, (bytes, bytearray, memoryview)):
        message.correlation_id = _plain(cid)
    return message


def ref_name(value) -> str | None:
    """The object name in a reference value (``{'_object_name': ...}``), else None."""
    if isinstance(value, dict) and "_object_name" in value:
        return str(value["_object_name"])
    return None


def strip_ref(name: str) -> str:
    """What qpidtoollibs shows for a reference: the part after the second ':'
    (``org.apache.qpid.broker:exchange:amq.direct`` -> ``amq.direct``)."""
    parts = name.split(":", 2)
    return parts[2] if len(parts) == 3 else name


# -- objects and events -----------------------------------------------------------------------------

class QmfObject:
    """One entry of a ``_query_response``. Attribute access gives a value with references reduced
    to the referenced object's key (as qpidtoollibs does); ``raw(name)`` gives it as sent."""

    def __init__(self, data: dict, agent: BrokerAgent | None = None):
        data = _plain(data) if not isinstance(data, dict) else {str(k): _plain(v) for k, v in data.items()}
        self._data = data
        self._agent = agent
        oid = data.get("_object_id") or {}
        sid = data.get("_schema_id") or {}
        self.object_name = str(oid.get("_object_name", ""))
        self.epoch = oid.get("_agent_epoch", 0)
        self.package = str(sid.get("_package_name", ""))
        self.class_name = str(sid.get("_class_name", ""))
        self.schema_hash = sid.get("_hash")
        self.values: dict = dict(data.get("_values") or {})
        self.create_ts = int(data.get("_create_ts") or 0)
        self.update_ts = int(data.get("_update_ts") or 0)
        self.delete_ts = int(data.get("_delete_ts") or 0)

    @property
    def key(self) -> str:
        """The object name without ``package:class:`` (the index part)."""
        prefix = "%s:%s:" % (self.package, self.class_name)
        if self.object_name.startswith(prefix):
            return self.object_name[len(prefix):]
        return strip_ref(self.object_name)

    def raw(self, name: str, default=None):
        return self.values.get(name, default)

    def get(self, name: str, default=None):
        if name not in self.values:
            return default
        value = self.values[name]
        ref = ref_name(value)
        return strip_ref(ref) if ref is not None else value

    def ref(self, name: str) -> str | None:
        """A reference property's full object name (None if absent)."""
        return ref_name(self.values.get(name))

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            values = self.__dict__["values"]
        except KeyError:
            raise AttributeError(name) from None
        if name not in values:
            raise AttributeError("%s object %r has no attribute %r" % (self.class_name, self.object_name, name))
        return self.get(name)

    def __contains__(self, name: str) -> bool:
        return name in self.values

    def update(self) -> QmfObject:
        """Query the object again and take its new values (unchanged if it is gone)."""
        if self._agent is None:
            return self
        found = self._agent.query(object_name=self.object_name)
        if found:
            fresh = found[0]
            self.values = fresh.values
            self.create_ts, self.update_ts, self.delete_ts = fresh.create_ts, fresh.update_ts, fresh.delete_ts
        return self

    def call(self, method: str, arguments: dict | None = None, timeout: float | None = None) -> dict:
        if self._agent is None:
            raise RuntimeError("object not attached to an agent")
        return self._agent.call(self.object_name, method, arguments or {}, timeout=timeout)

    def __repr__(self) -> str:
        return "<QmfObject %s>" % self.object_name


class QmfEvent:
    """One event (``_data_indication`` with ``qmf.content=_event``)."""

    def __init__(self, data: dict, agent_name: str | None = None):
        data = {str(k): _plain(v) for k, v in data.items()}
        sid = data.get("_schema_id") or {}
        self.package = str(sid.get("_package_name", ""))
        self.name = str(sid.get("_class_name", ""))
        self.values: dict = dict(data.get("_values") or {})
        self.timestamp = int(data.get("_timestamp") or 0)  # ns since the epoch
        self.severity = data.get("_severity")
        self.agent = agent_name

    def __repr__(self) -> str:
        return "<QmfEvent %s:%s %r>" % (self.package, self.name, self.values)


def parse_events(message) -> list[QmfEvent]:
    """The events in one indication message (qpidd sends one per message, in a list)."""
    props = message.properties or {}
    if props.get("qmf.content") not in (None, "_event") or \
            props.get("qmf.opcode") not in (None, "_data_indication"):
        return []
    body = message.body
    if isinstance(body, dict):
        body = [body]
    if not isinstance(body, (list, tuple)):
        return []
    agent = props.get("qmf.agent")
    return [QmfEvent(entry, agent) for entry in body if isinstance(entry, dict) and "_schema_id" in entry]


# -- the AMQP connection -----------------------------------------------------------------------------

class Connection:
    """A proton BlockingConnection to one broker, with the links the tools need.

    ``open_requests()`` gives the request sender (to ``qmf.default.direct``) and a dynamic reply
    receiver; ``open_events(key)`` a receiver on ``qmf.default.topic`` filtered by ``key``."""

    def __init__(self, url: str | BrokerURL, timeout: float | None = 10, *,
                 sasl_mechanisms: str | None = None, sasl_service: str | None = None,
                 ssl_certificate: str | None = None, ssl_key: str | None = None,
                 ssl_trustfile: str | None = None, ha_admin: bool = False, heartbeat: float | None = None,
                 properties: dict | None = None):
        from proton import SSLDomain, symbol
        from proton.utils import BlockingConnection

        self.url = url if isinstance(url, BrokerURL) else BrokerURL(url)
        if ssl_key and not ssl_certificate:
            raise ValueError("missing '--ssl-certificate' (required by '--ssl-key')")
        kwargs: dict[str, Any] = {}
        if self.url.user:
            kwargs["user"] = self.url.user
            kwargs["password"] = self.url.password or ""
            kwargs["allow_insecure_mechs"] = True
        if sasl_mechanisms:
            kwargs["allowed_mechs"] = sasl_mechanisms
        if sasl_service:
            kwargs["sasl_service"] = sasl_service  # ignored by proton builds without cyrus
        props = {symbol("product"): "cypid-tools", symbol("qpid.client_process"): PROGRAM,
                 symbol("qpid.client_pid"): os.getpid()}
        if ha_admin:
            props[symbol("qpid.ha-admin")] = 1
        if properties:
            props.update({symbol(k): v for k, v in properties.items()})
        kwargs["properties"] = props
        ssl_domain = None
        if ssl_certificate or self.url.scheme == "amqps":
            ssl_domain = SSLDomain(SSLDomain.MODE_CLIENT)
            if ssl_trustfile:   # the broker's certificate must chain to these CAs and name its host
                ssl_domain.set_trusted_ca_db(ssl_trustfile)
                ssl_domain.set_peer_authentication(SSLDomain.VERIFY_PEER_NAME, ssl_trustfile)
            else:               # as qpid-tools 1.36 (qpid.messaging verifies only given ssl_trustfile)
                ssl_domain.set_peer_authentication(SSLDomain.ANONYMOUS_PEER)
            if ssl_certificate:
                ssl_domain.set_credentials(ssl_certificate, ssl_key or ssl_certificate, None)
        kwargs.pop("sasl_service", None)
        kwargs["container_id"] = container_id()
        self.timeout = timeout
        try:
            self._conn = BlockingConnection(self.url.proton_url(), timeout=timeout,
                                            ssl_domain=ssl_domain, heartbeat=heartbeat, **kwargs)
        except Exception as e:  # ConnectionException, Timeout, SSL errors ...
            raise ConnectError(_connect_reason(self.url, e)) from None
        self.sender = None
        self.replies = None
        self.reply_to = None

    def open_requests(self, credit: int = 100):
        from proton import Message  # noqa: F401  (import check: proton is there)
        try:
            self.sender = self._conn.create_sender(REQUEST_EXCHANGE)
            self.replies = self._conn.create_receiver(None, dynamic=True, credit=credit, name="reply")
        except Exception as e:
            raise ConnectError("cannot open the QMF request links on %s: %s" % (self.url.hostport, _text(e))) \
                from None
        self.reply_to = self.replies.link.remote_source.address
        if not self.reply_to:
            raise ConnectError("the broker at %s gave the reply receiver no address" % self.url.hostport)
        return self

    def open_events(self, key: str = EVENT_KEY, credit: int = 100):
        from proton import Described, symbol
        from proton.reactor import Filter
        filt = Filter({symbol("subject-filter"): Described(symbol(TOPIC_FILTER), key)})
        try:
            return self._conn.create_receiver(TOPIC_EXCHANGE, credit=credit, options=[filt], name="events")
        except Exception as e:
            raise ConnectError("cannot subscribe to %s/%s on %s: %s" % (TOPIC_EXCHANGE, key, self.url.hostport,
                                                                         _text(e))) from None

    # the transport interface BrokerAgent uses
    def send(self, message, timeout: float | None = None) -> None:
        try:
            self.sender.send(message, timeout=timeout if timeout is not None else False)
        except Exception as e:
            raise _wrap(e, self.url) from None

    def receive(self, timeout: float):
        """The next reply, or None after ``timeout`` seconds."""
        return self.receive_on(self.replies, timeout)

    def receive_on(self, receiver, timeout: float):
        from proton import Timeout
        try:
            message = receiver.receive(timeout=max(timeout, 0.001))
        except Timeout:
            return None
        except Exception as e:
            raise _wrap(e, self.url) from None
        try:
            receiver.accept()
        except Exception:  # pragma: no cover - the connection dropped right after
            pass
        return settle_values(message)

    def ping(self) -> None:
        """Begin a session and wait for the broker's answer (qpid-ha ping): the broker is alive."""
        from proton import Endpoint
        try:
            session = self._conn.conn.session()
            session.open()
            self._conn.wait(lambda: session.state & Endpoint.REMOTE_ACTIVE or session.state & Endpoint.REMOTE_CLOSED,
                            timeout=self.timeout, msg="opening a session")
            if not session.state & Endpoint.REMOTE_ACTIVE:
                raise ConnectError("the broker at %s ended the session" % self.url.hostport)
        except ConnectError:
            raise
        except Exception as e:
            raise _wrap(e, self.url) from None

    def close(self) -> None:
        try:
            self._conn.close()
        except Exception:
            pass


def _text(e: BaseException) -> str:
    text = str(e)
    m = re.search(r"Condition\('([^']*)', '([^']*)'\)", text)
    if m:
        return "%s: %s" % (m.group(1), m.group(2)) if m.group(1) not in ("proton.pythonio",) else m.group(2)
    return text or e.__class__.__name__


def _connect_reason(url: BrokerURL, e: BaseException) -> str:
    if e.__class__.__name__ == "Timeout":
        return "cannot connect to %s: timed out" % url.hostport
    return "cannot connect to %s: %s" % (url.hostport, _text(e))


def _wrap(e: BaseException, url: BrokerURL) -> Exception:
    if e.__class__.__name__ == "Timeout":
        return QmfTimeout("timed out talking to the broker at %s" % url.hostport)
    return ConnectError("connection to %s lost: %s" % (url.hostport, _text(e)))


# -- the console ------------------------------------------------------------------------------------

class BrokerAgent:
    """The broker's QMF agent, as a console sees it.

    ``transport`` is anything with ``send(message)``, ``receive(timeout) -> message | None`` and a
    ``reply_to`` attribute (a :class:`Connection`, or a fake in unit tests). Messages are
    ``proton.Message`` objects."""

    def __init__(self, transport, timeout: float | None = 10, address: str = "broker"):
        self.transport = transport
        self.timeout = timeout if timeout else None
        self.address = address
        self._cids = itertools.count(1)
        self._tag = uuid.uuid4().hex[:8]

    @classmethod
    def open(cls, url: str | BrokerURL = "localhost", timeout: float | None = 10, **options) -> BrokerAgent:
        """Connect to ``url`` and open the request/reply links."""
        conn = Connection(url, timeout=timeout or None, **options)
        try:
            conn.open_requests()
        except BaseException:
            conn.close()
            raise
        return cls(conn, timeout=timeout)

    def close(self) -> None:
        close = getattr(self.transport, "close", None)
        if close:
            close()

    def __enter__(self) -> BrokerAgent:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- requests --------------------------------------------------------------------------------
    def _message(self, opcode: str, body: dict, cid: str):
        from proton import Message
        return Message(
            body=body, subject=self.address, reply_to=self.transport.reply_to, correlation_id=cid,
            content_type="amqp/map",
            properties={"qmf.opcode": opcode, "x-amqp-0-10.app-id": "qmf2", "method": "request"})

    def _request(self, opcode: str, body: dict, timeout: float | None):
        """Send one request and return the list of (opcode, properties, body) answering it
        (several for a partial query response)."""
        cid = "%s-%d" % (self._tag, next(self._cids))
        timeout = self.timeout if timeout is None else timeout
        self.transport.send(self._message(opcode, body, cid))
        answers = []
        deadline = None if not timeout else time.monotonic() + timeout
        while True:
            remaining = 3600.0 if deadline is None else deadline - time.monotonic()
            if remaining <= 0:
                raise QmfTimeout(self._timeout_text(opcode, body, timeout))
            reply = settle_values(self.transport.receive(remaining))
            if reply is None:
                raise QmfTimeout(self._timeout_text(opcode, body, timeout))
            if str(reply.correlation_id) != cid:
                continue  # a late answer to an earlier request that timed out
            props = {str(k): v for k, v in (reply.properties or {}).items()}
            reply_op = str(props.get("qmf.opcode", ""))
            answers.append((reply_op, props, reply.body))
            if reply_op == "_exception":
                body = reply.body if isinstance(reply.body, dict) else {}
                raise QmfError(_plain(body.get("_values", body)))
            if reply_op == "_query_response" and "partial" in props:
                if timeout:
                    deadline = time.monotonic() + timeout  # each chunk restarts the clock
                continue
            return answers

    @staticmethod
    def _timeout_text(opcode, body, timeout) -> str:
        what = "query" if opcode == "_query_request" else "method '%s'" % body.get("_method_name")
        return ("no answer to the QMF %s within %ss (is management enabled on the broker?)"
                % (what, ("%g" % timeout) if timeout else "?"))

    def query(self, class_name: str | None = None, package: str | None = None,
              object_name: str | None = None, timeout: float | None = None) -> list[QmfObject]:
        """``_query_request`` for a class (optionally package-qualified) or one object by name."""
        body: dict[str, Any] = {"_what": "OBJECT"}
        if object_name is not None:
            body["_object_id"] = {"_object_name": object_name}
        elif class_name is not None:
            sid = {"_class_name": class_name}
            if package:
                sid["_package_name"] = package
            body["_schema_id"] = sid
        out = []
        for opcode, _props, answer in self._request("_query_request", body, timeout):
            if opcode != "_query_response":
                continue
            if isinstance(answer, dict):
                answer = [answer]
            for entry in answer or ():
                if isinstance(entry, dict):
                    out.append(QmfObject(entry, self))
        return out

    def call(self, object_name: str, method: str, arguments: dict | None = None,
             timeout: float | None = None) -> dict:
        """``_method_request``; returns the output arguments; an ``_exception`` raises QmfError."""
        body = {"_object_id": {"_object_name": object_name}, "_method_name": method,
                "_arguments": dict(arguments or {})}
        answers = self._request("_method_request", body, timeout)
        opcode, _props, answer = answers[-1]
        if isinstance(answer, dict):
            return _plain(answer.get("_arguments") or {})
        return {}

    def locate(self, timeout: float | None = None) -> dict:
        """``_agent_locate_request``: the agent's ``_values`` (``_name``, ``_vendor``, ``_epoch`` ...)."""
        answers = self._request("_agent_locate_request", {}, timeout)
        body = answers[-1][2]
        return dict(body.get("_values") or {}) if isinstance(body, dict) else {}

    # -- conveniences (the calls qpidtoollibs.BrokerAgent makes) ------------------------------------
    def get_objects(self, class_name: str, package: str | None = None) -> list[QmfObject]:
        return self.query(class_name=class_name, package=package)

    def get_object(self, class_name: str, key: str, package: str = PACKAGE) -> QmfObject | None:
        found = self.query(object_name="%s:%s:%s" % (package, class_name, key))
        return found[0] if found else None

    def get_broker(self) -> QmfObject | None:
        found = self.query(object_name=BROKER_OBJECT)
        if not found:  # an agent that names the broker differently still answers a class query
            found = self.query(class_name="broker")
        return found[0] if found else None

    def get_queue(self, name: str) -> QmfObject | None:
        return self.get_object("queue", name)

    def get_exchange(self, name: str) -> QmfObject | None:
        return self.get_object("exchange", name)

    def broker_call(self, method: str, arguments: dict | None = None, timeout: float | None = None) -> dict:
        return self.call(BROKER_OBJECT, method, arguments, timeout=timeout)

    def create(self, type: str, name: str, properties: dict | None = None, strict: bool = True) -> dict:
        return self.broker_call("create", {"type": type, "name": name,
                                           "properties": dict(properties or {}), "strict": strict})

    def delete(self, type: str, name: str, options: dict | None = None) -> dict:
        args: dict[str, Any] = {"type": type, "name": name}
        if options is not None:
            args["options"] = dict(options)
        return self.broker_call("delete", args)


def connect(url: str | BrokerURL = "localhost", timeout: float | None = 10, **options) -> BrokerAgent:
    """Open a :class:`BrokerAgent` on ``url`` (the tools call this; unit tests replace it)."""
    return BrokerAgent.open(url, timeout=timeout, **options)


def events(url: str | BrokerURL, key: str = EVENT_KEY, timeout: float | None = 10, **options):
    """A (connection, receiver) pair reading QMF events from ``url``."""
    conn = Connection(url, timeout=timeout, **options)
    try:
        receiver = conn.open_events(key)
    except BaseException:
        conn.close()
        raise
    return conn, receiver


def iter_values(objects: Iterable[QmfObject], name: str):
    for obj in objects:
        yield obj.get(name)
