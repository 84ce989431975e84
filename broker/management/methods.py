"""QMF methods of the broker, queue and connection objects (qmf2.md section 3), with qpidd's
semantics and error texts.

A method is ``handler(obj, arguments) -> output arguments``; it raises :class:`MethodError` (a QMF
status code and text) or an ``AmqpError``, which the agent reports as qpidd reports a C++ exception
inside a method: status 7 and the exception text ``<0-10 prefix>: <description>``.
"""
import re

from .. import errors
from ..acl import AclError, create_props
from ..errors import AmqpError
from ..logs import RuleFilter, parse_rule

# QMF method status codes (qpid/management/Manageable.h)
STATUS_OK = 0
STATUS_UNKNOWN_OBJECT = 1
STATUS_UNKNOWN_METHOD = 2
STATUS_NOT_IMPLEMENTED = 3
STATUS_PARAMETER_INVALID = 4
STATUS_FEATURE_NOT_IMPLEMENTED = 5
STATUS_FORBIDDEN = 6
STATUS_EXCEPTION = 7
STATUS_TEXT = {
    0: "OK", 1: "UnknownObject", 2: "UnknownMethod", 3: "NotImplemented", 4: "InvalidParameter",
    5: "FeatureNotImplemented", 6: "Forbidden", 7: "Exception",
}

#: AMQP condition -> the prefix qpidd's 0-10 exception of that kind puts before its message
_PREFIXES = {
    errors.NOT_FOUND: "not-found",
    errors.INVALID_FIELD: "invalid-argument",
    errors.NOT_ALLOWED: "not-allowed",
    errors.PRECONDITION_FAILED: "precondition-failed",
    errors.RESOURCE_LOCKED: "resource-locked",
    errors.UNAUTHORIZED_ACCESS: "unauthorized-access",
    errors.RESOURCE_LIMIT_EXCEEDED: "resource-limit-exceeded",
    errors.NOT_IMPLEMENTED: "not-implemented",
    errors.INTERNAL_ERROR: "internal-error",
}


class MethodError(Exception):
    def __init__(self, code, text=None):
        super().__init__(text or STATUS_TEXT.get(code, "Exception"))
        self.code = code
        self.text = text or STATUS_TEXT.get(code, "Exception")


def exception_text(exc):
    """What qpidd's exception ``what()`` says for this error (its source location left out)."""
    if isinstance(exc, AmqpError):
        prefix = _PREFIXES.get(exc.condition)
        return "%s: %s" % (prefix, exc.description) if prefix else exc.description
    return str(exc)


def _not_found(text):
    return errors.NotFound(text)


def _bool(value):
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "y", "t", "on")
    return bool(value)


def _str(args, name):
    value = args.get(name)
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def _uint(args, name):
    value = args.get(name) or 0
    try:
        value = int(value)
    except (TypeError, ValueError):
        raise MethodError(STATUS_PARAMETER_INVALID, "invalid parameter to method call: %s" % name) from None
    if value < 0:
        raise MethodError(STATUS_PARAMETER_INVALID, "invalid parameter to method call: %s" % name)
    return value


def _map(args, name):
    value = args.get(name) or {}
    if not isinstance(value, dict):
        raise MethodError(STATUS_PARAMETER_INVALID, "invalid parameter to method call: %s" % name)
    return {(k.decode() if isinstance(k, bytes) else str(k)): v for k, v in value.items()}


class Methods:
    """The method handlers; ``find(class, method)`` gives one or None."""

    def __init__(self, agent):
        self.agent = agent
        self.broker = agent.broker
        self.nodes = agent.broker.nodes
        self.log_level = None          # last setLogLevel text
        self.log_hires = False

    def find(self, cls_name, method):
        if cls_name == "habroker":      # the HA module's own methods (ha/habroker.py)
            ha = self.broker.ha
            handler = getattr(ha, "qmf_" + method, None) if ha is not None else None
            return None if handler is None else (lambda obj, args: handler(args))
        return getattr(self, "%s_%s" % (cls_name, method), None)

    def _acl(self, action, obj, name, props=None):
        """The ACL check of what a method does, for the user who called it (UnauthorizedAccess)."""
        acl = self.broker.acl
        if acl.enabled:
            context = self.agent.current_context
            acl.check(context.user if context is not None else "", action, obj, name, props)

    # -- broker: create / delete / query ----------------------------------------------------------
    def broker_create(self, broker, args):
        kind, name, props = _str(args, "type"), _str(args, "name"), _map(args, "properties")
        if kind == "queue":
            self._acl("create", "queue", name, create_props("queue", props))
            self._create_queue(name, props)
        elif kind in ("exchange", "topic"):
            self._acl("create", "exchange", name, create_props("exchange", props))
            self._create_exchange(name, props)
        elif kind == "binding":
            ex, queue, key = self._binding(name)
            self._acl("bind", "exchange", ex.name, {"queuename": queue.name, "routingkey": key})
            props.pop("exchange-type", None)
            self.nodes.bind(ex, queue, key, props)
        elif kind in ("link", "bridge"):
            self._acl("create", "link", name)
            self._federation(self.broker.federation.create_link if kind == "link"
                             else self.broker.federation.create_bridge, name, props)
        elif kind in ("QueuePolicy", "TopicPolicy", "domain", "incoming", "outgoing"):
            raise MethodError(STATUS_NOT_IMPLEMENTED, "%s objects are not supported by cypid yet" % kind)
        else:
            raise MethodError(STATUS_EXCEPTION, "unknown object type: %s" % kind)
        return {}

    @staticmethod
    def _federation(call, *args):
        """A federation request; its refusal is the method's exception (qpidd's texts)."""
        from ..federation import FederationError
        try:
            return call(*args)
        except FederationError as e:
            raise MethodError(STATUS_EXCEPTION, str(e)) from None

    def _check_alternate(self, props):
        alt = props.get("alternate-exchange")
        if alt is not None and alt != "":
            alt = alt.decode() if isinstance(alt, bytes) else str(alt)
            if alt not in self.nodes.exchanges:
                raise _not_found("Alternate exchange does not exist: %s" % alt)

    def _create_queue(self, name, props):
        if not name:
            raise MethodError(STATUS_EXCEPTION, "invalid parameter to method call: name")
        if name in self.nodes.queues:
            raise MethodError(STATUS_EXCEPTION, "object already exists: %s" % name)
        self._check_alternate(props)
        self.nodes.declare_queue(name, props)

    def _create_exchange(self, name, props):
        if not name:
            raise MethodError(STATUS_EXCEPTION, "invalid parameter to method call: name")
        kind = props.get("exchange-type", "topic")
        kind = kind.decode() if isinstance(kind, bytes) else str(kind)
        from ..exchanges import EXCHANGE_TYPES
        if kind not in EXCHANGE_TYPES:
            raise MethodError(STATUS_EXCEPTION, "Invalid exchange type: %s" % kind)
        if name in self.nodes.exchanges:
            raise MethodError(STATUS_EXCEPTION, "object already exists: %s" % name)
        self._check_alternate(props)
        props["exchange-type"] = kind
        self.nodes.declare_exchange(name, props)

    def _binding(self, name, verb="Bind"):
        """(exchange, queue, key) named ``exchange/queue[/key]`` (a lone name: the default exchange)."""
        parts = name.split("/")
        if len(parts) > 3:
            raise MethodError(STATUS_EXCEPTION, "invalid binding: %s" % name)
        if len(parts) == 1:
            ex_name, q_name, key = "", parts[0], ""
        else:
            ex_name, q_name = parts[0], parts[1]
            key = parts[2] if len(parts) == 3 else ""
        if not ex_name:
            raise errors.InvalidArgument("%s not allowed for default exchange" % verb)
        queue = self.nodes.queues.get(q_name)
        if queue is None:
            raise _not_found("%s failed. No such queue: %s" % (verb, q_name))
        ex = self.nodes.exchanges.get(ex_name)
        if ex is None:
            raise _not_found("%s failed. No such exchange: %s" % (verb, ex_name))
        return ex, queue, key

    def broker_delete(self, broker, args):
        kind, name, options = _str(args, "type"), _str(args, "name"), _map(args, "options")
        if kind == "queue":
            queue = self.nodes.queues.get(name)
            if queue is None:
                raise _not_found("Delete failed. No such queue: %s" % name)
            self._acl("delete", "queue", name)
            from .objects import queue_depth
            if _bool(options.get("if_empty", False)) and queue_depth(queue):
                raise errors.PreconditionFailed("Cannot delete queue %s; queue not empty" % name)
            if _bool(options.get("if_unused", False)) and queue.consumers:
                raise errors.PreconditionFailed("Cannot delete queue %s; queue in use" % name)
            self.nodes.delete_queue(queue)
        elif kind in ("exchange", "topic"):
            if not name:
                raise errors.InvalidArgument("Delete not allowed for default exchange")
            if name not in self.nodes.exchanges:
                raise _not_found("Delete failed. No such exchange: %s" % name)
            self._acl("delete", "exchange", name)
            users = [q for q in self.nodes.queues.values() if q.alternate_exchange == name]
            users += [e for e in self.nodes.exchanges if e.alternate == name]
            if users:
                raise errors.NotAllowed("Cannot delete %s, in use as alternate-exchange." % name)
            self.nodes.delete_exchange(name)
        elif kind == "binding":
            ex, queue, key = self._binding(name, "Unbind")
            self._acl("unbind", "exchange", ex.name, {"queuename": queue.name, "routingkey": key})
            self.nodes.unbind(ex, queue, key)
        elif kind in ("link", "bridge"):
            self._acl("delete", "link", name)
            fed = self.broker.federation
            self._federation(fed.delete_link if kind == "link" else fed.delete_bridge, name)
        elif kind in ("QueuePolicy", "TopicPolicy", "domain", "incoming", "outgoing"):
            raise MethodError(STATUS_NOT_IMPLEMENTED, "%s objects are not supported by cypid yet" % kind)
        else:
            raise MethodError(STATUS_EXCEPTION, "unknown object type: %s" % kind)
        return {}

    def broker_connect(self, broker, args):
        """qpidd's (deprecated but used by qpid-route) way to make a federation link."""
        host = _str(args, "host")
        if not host:
            raise MethodError(STATUS_PARAMETER_INVALID, "invalid parameter to method call: host")
        self._acl("create", "link", host)
        self._federation(self.broker.federation.connect, host, _uint(args, "port") or 5672,
                         _bool(args.get("durable", False)), _str(args, "authMechanism"),
                         _str(args, "username"), _str(args, "password"), _str(args, "transport"))
        return {}

    # -- federation link and bridge ----------------------------------------------------------
    def link_close(self, link, args):
        self._acl("delete", "link", link.name)
        self.broker.federation.close_link(link)
        return {}

    def link_bridge(self, link, args):
        self._acl("create", "link", link.name)
        self._federation(self.broker.federation.bridge_on, link, args)
        return {}

    def bridge_close(self, bridge, args):
        self._acl("delete", "link", bridge.link.name)
        self.broker.federation.close_bridge(bridge)
        return {}

    def broker_query(self, broker, args):
        kind, name = _str(args, "type"), _str(args, "name")
        if kind == "queue":
            from .objects import Snapshot
            entry = Snapshot(self.agent).find_queue(name)
            if entry is None:
                raise MethodError(STATUS_UNKNOWN_OBJECT)
            return {"results": self.agent.encode_values("queue", entry.values)}
        if kind in ("exchange", "topic", "binding"):
            raise MethodError(STATUS_NOT_IMPLEMENTED)
        raise MethodError(STATUS_EXCEPTION, "unknown object type: %s" % kind)

    # -- broker: small ones -------------------------------------------------------------------------
    def broker_echo(self, broker, args):
        return {"sequence": self.agent.typed("uint32", args.get("sequence", 0)),
                "body": _str(args, "body")}

    def broker_getLogLevel(self, broker, args):
        if self.log_level is None:
            opts = self.broker.options
            self.log_level = ",".join(getattr(opts, "log_enable", None) or ["notice+"])
        return {"level": self.log_level}

    def broker_setLogLevel(self, broker, args):
        text = _str(args, "level")
        rules = [r for r in re.split(r"[\s,]+", text) if r]
        try:
            parsed = [parse_rule(r) for r in rules]
        except ValueError as e:     # qpidd: a C++ exception inside the method, status 7
            raise MethodError(STATUS_EXCEPTION, str(e)) from None
        if not parsed:
            raise MethodError(STATUS_EXCEPTION, "invalid parameter to method call: level")
        log = self.broker.log
        log.log(25, "Changing log level to %s", text)
        level = None
        for handler in getattr(log, "handlers", ()):
            for f in handler.filters:
                if isinstance(f, RuleFilter):
                    f.enable = list(parsed)
                    level = f.min_level
        if level is not None:
            log.setLevel(level)
        self.log_level = ",".join(rules)
        return {}

    def broker_getTimestampConfig(self, broker, args):
        return {"receive": bool(getattr(self.broker.options, "enable_timestamp", False))}

    def broker_setTimestampConfig(self, broker, args):
        value = _bool(args.get("receive", False))
        self.broker.options.enable_timestamp = value
        self.broker.log.log(25, "Receive message timestamping is %s", "ENABLED." if value else "DISABLED.")
        return {}

    def broker_getLogHiresTimestamp(self, broker, args):
        return {"logHires": self.log_hires}

    def broker_setLogHiresTimestamp(self, broker, args):
        self.log_hires = _bool(args.get("logHires", False))
        return {}

    def broker_shutdown(self, broker, args):
        stop = getattr(self.broker, "on_shutdown", None)
        if stop is None:
            raise MethodError(STATUS_NOT_IMPLEMENTED)
        self.broker.log.log(25, "Broker shutdown requested by management")
        self.agent.loop.call_soon(stop)
        return {}

    # -- queue -------------------------------------------------------------------------------
    def queue_purge(self, queue, args):
        request = _uint(args, "request")
        if _map(args, "filter"):
            raise MethodError(STATUS_NOT_IMPLEMENTED, "purge filters are not supported by cypid yet")
        self._acl("purge", "queue", queue.name)
        queue.purge(request)
        return {}

    def queue_reroute(self, queue, args):
        request = _uint(args, "request")
        if _map(args, "filter"):
            raise MethodError(STATUS_NOT_IMPLEMENTED, "reroute filters are not supported by cypid yet")
        self._acl("reroute", "queue", queue.name)
        if _bool(args.get("useAltExchange", False)):
            target = queue.alternate_exchange
            if not target:
                raise MethodError(STATUS_PARAMETER_INVALID, "No alternate-exchange defined")
        else:
            target = _str(args, "exchange")
            if target not in self.nodes.exchanges:
                raise MethodError(STATUS_PARAMETER_INVALID, "Exchange not found: %s" % target)
        queue.purge(request, target)
        return {}

    # -- acl (org.apache.qpid.acl) -----------------------------------------------------------
    def acl_reloadACLFile(self, acl, args):
        try:
            context = self.agent.current_context
            acl.reload(user=context.user if context is not None else "")
        except AclError as e:
            self.broker.log.error("ACL file not reloaded, the rules in force stay: %s", e)
            raise MethodError(STATUS_EXCEPTION, str(e)) from None
        return {}

    def acl_Lookup(self, acl, args):
        props = _map(args, "propertyMap")
        name = _str(args, "objectName")
        props["name"] = name
        permission, _ = acl.acl.decide(_str(args, "userId"), _str(args, "action"), _str(args, "object"),
                                       props)
        return {"result": permission}

    def acl_LookupPublish(self, acl, args):
        permission, _ = acl.acl.decide(_str(args, "userId"), "publish", "exchange", {
            "name": _str(args, "exchangeName"), "routingkey": _str(args, "routingKey")})
        return {"result": permission}

    # -- connection --------------------------------------------------------------------------
    def connection_close(self, conn, args):
        conn.fail(errors.CONNECTION_FORCED, "Closed by Management Request")
        return {}


__all__ = ["Methods", "MethodError", "exception_text", "STATUS_TEXT"]
