"""The web console's JSON: reads through the QMF agent's object readers (broker/management/objects.py,
so the console shows what qpid-stat shows) and actions through the agent's ``invoke`` (the same QMF
method code as qpid-config's requests: the same checks, errors and ACL decisions, for the HTTP user).

Reads (GET): ``/api/overview``, ``/api/queues?filter=&limit=``, ``/api/exchanges``,
``/api/connections``, ``/api/ha``. Actions (POST, a JSON object, answered ``{"ok": true}`` or
``{"error": text, "status": QMF status code, "status_text": ...}`` with an HTTP error status):
``/api/queue/create`` {name, durable, properties}, ``/api/queue/delete`` {name, if_empty, if_unused},
``/api/queue/purge`` {name, request}, ``/api/bind`` and ``/api/unbind`` {exchange, queue, key,
properties}. With management disabled (``--mgmt-enable no``) every /api answer is 503.
"""
import asyncio
import os
import time

from ..management import schema
from ..management.methods import STATUS_PARAMETER_INVALID, STATUS_TEXT, MethodError
from ..management.objects import Snapshot
from .health import ha_status, readiness
from .metrics import journal_usage

DEFAULT_LIMIT = 200
MAX_LIMIT = 5000
MAX_BINDINGS = 2000

#: QMF method status -> HTTP status of the answer
HTTP_STATUS = {1: 404, 2: 404, 3: 501, 4: 400, 5: 501, 6: 403, 7: 400}


class ApiError(Exception):
    def __init__(self, http_status, text, code=None):
        super().__init__(text)
        self.http_status = http_status
        self.text = text
        self.code = code


def jsonable(value):
    """Values as JSON has them: bytes as text, mappings and lists through, anything else as str."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode("utf-8", "replace")
    if isinstance(value, dict):
        return {str(jsonable(k)): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return str(value)


def _key(ref):
    """The key of an object name (``org.apache.qpid.broker:queue:q1`` -> ``q1``)."""
    return schema.split_object_name(ref)[1] if ref else ref


class Api:
    def __init__(self, broker):
        self.broker = broker

    def _agent(self):
        agent = self.broker.management
        if agent is None:
            raise ApiError(503, "management is disabled (--mgmt-enable no): the console has nothing to show")
        return agent

    # -- reads ---------------------------------------------------------------------------------------
    def overview(self):
        broker = self.broker
        snap = Snapshot(self._agent())
        values = snap.cls_broker()[0].values
        connections = list(broker.connections)
        sessions = links = 0
        for conn in connections:
            for session in list(conn.local_sessions.values()):
                sessions += 1
                links += len(session.local_handles)
        journals, files, size = journal_usage(broker.nodes.store)
        times = getattr(getattr(broker.nodes.store, "writer", None), "sync_times", None)
        syncs, sync_seconds, _ = times.snapshot() if times is not None else (0, 0.0, None)
        ready, reason = readiness(broker)
        http = broker.http
        return jsonable({
            "time": time.time(),
            "version": broker.version,
            "port": broker.port,
            "http_port": http.port if http is not None else None,
            "uptime_seconds": values["uptime"] / 1e9,
            "auth": bool(broker.authenticator.required),
            "acl": bool(broker.acl.enabled),
            "store": broker.nodes.store is not None,
            "ready": ready,
            "reason": reason,
            "counts": {"connections": len(connections), "sessions": sessions, "links": links,
                       "queues": len(broker.nodes.queues), "exchanges": len(list(broker.nodes.exchanges))},
            "totals": {name: values.get(name, 0) for name in (
                "msgTotalEnqueues", "msgTotalDequeues", "byteTotalEnqueues", "byteTotalDequeues",
                "msgDepth", "byteDepth", "acquires", "releases", "discardsNoRoute")},
            "journal": {"journals": journals, "files": files, "bytes": size, "syncs": syncs,
                        "sync_seconds": sync_seconds},
            "memory": {"rss_bytes": _rss()},
            "ha": ha_status(broker),
        })

    def queues(self, text="", limit=DEFAULT_LIMIT):
        snap = Snapshot(self._agent())
        names = sorted(n for n in self.broker.nodes.queues if text in n)
        limit = max(0, min(int(limit), MAX_LIMIT))
        shown = []
        for name in names[:limit]:
            entry = snap.find_queue(name)
            if entry is not None:
                shown.append(entry.values)
        return jsonable({"time": time.time(), "total": len(names), "queues": [
            {k: v for k, v in values.items() if k != "vhostRef"} for values in shown]})

    def exchanges(self):
        snap = Snapshot(self._agent())
        exchanges = [{k: v for k, v in e.values.items() if k != "vhostRef"} for e in snap.cls_exchange()]
        for ex in exchanges:
            if "altExchange" in ex:
                ex["altExchange"] = _key(ex["altExchange"])
        bindings, total = [], 0
        for ex, queue, key, args in snap.bindings():
            total += 1
            if len(bindings) < MAX_BINDINGS:
                bindings.append({"exchange": ex.name, "queue": queue.name, "key": key or "",
                                 "arguments": dict(args or {})})
        return jsonable({"time": time.time(), "exchanges": exchanges, "bindings": bindings,
                         "bindings_total": total})

    def connections(self):
        snap = Snapshot(self._agent())
        conns = [dict(e.values) for e in snap.cls_connection()]
        sessions = [dict(e.values) for e in snap.cls_session()]
        for s in sessions:
            s["connection"] = _key(s.pop("connectionRef", ""))
        links = []
        for direction, entries in (("outgoing", snap.cls_outgoing()), ("incoming", snap.cls_incoming())):
            for e in entries:
                values = dict(e.values)
                values["direction"] = direction
                values["session"] = _key(values.pop("sessionRef", ""))
                links.append(values)
        for c in conns:
            c.pop("vhostRef", None)
        for s in sessions:
            s.pop("vhostRef", None)
        return jsonable({"time": time.time(), "connections": conns, "sessions": sessions, "links": links})

    def ha(self):
        ready, reason = readiness(self.broker)
        return jsonable(dict(ha_status(self.broker), ready=ready, reason=reason))

    # -- actions ----------------------------------------------------------------------------------
    async def act(self, action, user, body):
        """Run one console action for ``user`` (the HTTP identity) through the QMF methods."""
        agent = self._agent()
        if not isinstance(body, dict):
            raise ApiError(400, "the request body must be a JSON object")
        handler = ACTIONS.get(action)
        if handler is None:
            raise ApiError(404, "no such action: %s" % action)
        try:
            name, method, args = handler(body)
            out = agent.invoke(user, name, method, args)
            if isinstance(out, asyncio.Future):     # a method that waits (none of the console's yet)
                try:
                    await out
                except Exception as e:
                    raise agent.method_error(method, name, e) from None
        except MethodError as e:
            raise ApiError(HTTP_STATUS.get(e.code, 400), e.text, e.code) from None
        return {"ok": True}


def _text(body, name, required=True):
    value = body.get(name, "")
    if not isinstance(value, str) or (required and not value):
        raise MethodError(STATUS_PARAMETER_INVALID, "invalid parameter to method call: %s" % name)
    return value


def _props(body):
    props = body.get("properties") or {}
    if not isinstance(props, dict):
        raise MethodError(STATUS_PARAMETER_INVALID, "invalid parameter to method call: properties")
    return props


def _create_queue(body):
    props = dict(_props(body))
    if body.get("durable"):
        props["durable"] = True
    return schema.BROKER_OBJECT_NAME, "create", {"type": "queue", "name": _text(body, "name"),
                                                 "properties": props, "strict": True}


def _delete_queue(body):
    options = {k: bool(body.get(k)) for k in ("if_empty", "if_unused") if body.get(k)}
    return schema.BROKER_OBJECT_NAME, "delete", {"type": "queue", "name": _text(body, "name"),
                                                 "options": options}


def _purge_queue(body):
    request = body.get("request", 0)
    if not isinstance(request, int) or isinstance(request, bool):
        raise MethodError(STATUS_PARAMETER_INVALID, "invalid parameter to method call: request")
    return schema.object_name("queue", _text(body, "name")), "purge", {"request": request}


def _binding_name(body):
    return "%s/%s/%s" % (_text(body, "exchange"), _text(body, "queue"), _text(body, "key", required=False))


def _bind(body):
    return schema.BROKER_OBJECT_NAME, "create", {"type": "binding", "name": _binding_name(body),
                                                 "properties": _props(body), "strict": True}


def _unbind(body):
    return schema.BROKER_OBJECT_NAME, "delete", {"type": "binding", "name": _binding_name(body),
                                                 "options": {}}


ACTIONS = {"queue/create": _create_queue, "queue/delete": _delete_queue, "queue/purge": _purge_queue,
           "bind": _bind, "unbind": _unbind}


def _rss():
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def action_error(e):
    """The JSON answer of a failed action."""
    out = {"error": e.text}
    if e.code is not None:
        out["status"] = e.code
        out["status_text"] = STATUS_TEXT.get(e.code, "")
    return out


__all__ = ["Api", "ApiError", "action_error", "jsonable"]
