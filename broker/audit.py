"""Leak audit: what a broker still holds, counted once when asked, never on the message path.

With ``CYPID_AUDIT=1`` in its environment (the test harness sets it), the daemon (broker/main.py)
writes one line ``audit: {json}`` to stderr when it has started (``"when": "start"``, its store
open and listening: the baseline of file descriptors) and one at a clean shutdown (SIGTERM, QMF
shutdown), after every connection has closed and the store is shut (``"when": "stop"``).
tests/support/broker.py reads both and fails the test whose broker kept something (uvloop's habit).

The broker's objects are read, never changed, by duck typing: live instances are found by class
name in the garbage collector (so a connection, session or link leaked anywhere, not only in the
broker's own tables, is counted), the tables by their attribute names (``broker.connections``,
``nodes.queues``, ``nodes.flow_holds``, ``nodes.producers``; a queue's ``consumers`` and ``held``;
a session's ``outstanding``; an incoming delivery's ``holds``). Open files come from ``/proc/self/fd`` and ``/proc/self/maps``.
"""
import collections
import gc
import json
import os
import re

#: environment variable that turns the audit on ("1"; empty or "0" is off)
AUDIT_ENV = "CYPID_AUDIT"
#: what the audit lines start with
PREFIX = "audit: "

#: live instances of these classes (by name, in cypid's modules) are counted under these keys
LIVE_CLASSES = {
    "Connection": "connections",
    "Session": "sessions",
    "Link": "links",            # the engine's (cypid.pyx.endpoints); the broker's link objects are their contexts
    "Pending": "pending_waits",
    "Delivery": "deliveries",   # the engine's incoming deliveries (settled when their last hold goes)
}

#: counts that must be zero once every connection has closed and the store is shut
MUST_BE_ZERO = ("connections", "sessions", "links", "unsettled", "deliveries", "holds", "pending_waits",
                "flow_holds", "held", "consumers", "producers", "journal_files", "journal_views")

_NUMBERED = re.compile(r"\[\d+\]|:\d+$")


def enabled(environ=os.environ):
    return environ.get(AUDIT_ENV, "") not in ("", "0")


def live_objects(objects=None):
    """``{key: [object, ...]}`` for the instances of LIVE_CLASSES alive now (after a collection).
    ``objects``: the objects to look through (tests); default: every object the collector tracks."""
    if objects is None:
        gc.collect()
        objects = gc.get_objects()
    found = collections.defaultdict(list)
    for obj in objects:
        cls = type(obj)
        key = LIVE_CLASSES.get(cls.__name__)
        if key is not None and (cls.__module__ or "").startswith("cypid."):
            found[key].append(obj)
    return found


def _len(value):
    try:
        return len(value)
    except TypeError:
        return 0


def open_files(under=None):
    """The targets of this process's open file descriptors: ``(kinds, inside)`` where ``kinds``
    counts them by kind (a path, or ``socket``/``pipe``/``anon_inode:...`` without numbers) and
    ``inside`` lists those that are paths under the directory ``under``."""
    kinds = collections.Counter()
    inside = []
    try:
        fds = os.listdir("/proc/self/fd")
    except OSError:   # pragma: no cover - not Linux
        return kinds, inside
    for fd in fds:
        try:
            target = os.readlink(os.path.join("/proc/self/fd", fd))
        except OSError:   # the descriptor listdir itself used, closed since
            continue
        kinds[_NUMBERED.sub("", target)] += 1
        if under and target.startswith(under + os.sep):
            inside.append(target)
    return kinds, inside


def mapped_files(under):
    """Distinct files under the directory ``under`` mapped into this process (journal views)."""
    if not under:
        return []
    out = set()
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                parts = line.split(None, 5)
                if len(parts) == 6:
                    path = parts[5].strip()
                    if path.startswith(under + os.sep):
                        out.add(path)
    except OSError:   # pragma: no cover - not Linux
        pass
    return sorted(out)


def census(broker, when, objects=None):
    """The audit of ``broker`` as a dict (what the ``audit:`` line holds)."""
    live = live_objects(objects)
    nodes = getattr(broker, "nodes", None)
    queues = list(getattr(nodes, "queues", {}).values())
    data_dir = getattr(getattr(broker, "options", None), "data_path", None)
    data_dir = os.path.realpath(data_dir) if data_dir else None
    kinds, inside = open_files(data_dir)
    views = mapped_files(data_dir)
    report = {
        "when": when,
        "pid": os.getpid(),
        "loop": type(getattr(broker, "loop", None)).__module__.split(".")[0],
        "connections": max(len(live["connections"]), _len(getattr(broker, "connections", ()))),
        "sessions": len(live["sessions"]),
        "links": len(live["links"]),
        "unsettled": sum(getattr(s, "outstanding", 0) or 0 for s in live["sessions"]),
        "deliveries": len(live["deliveries"]),
        "holds": sum(getattr(d, "holds", 0) or 0 for d in live["deliveries"]),
        "pending_waits": len(live["pending_waits"]),
        "flow_holds": sum(_len(v) for v in getattr(nodes, "flow_holds", {}).values()),
        "held": sum(getattr(q, "held", 0) or 0 for q in queues),
        "consumers": sum(_len(getattr(q, "consumers", ())) for q in queues),
        "producers": sum(_len(v) for v in getattr(nodes, "producers", {}).values()),
        "journal_files": len(inside),
        "journal_views": len(views),
        "fds": sum(kinds.values()),
        "fd_kinds": dict(kinds),
    }
    named = inside + views
    if named:
        report["files"] = named[:20]
    kept = list(live["connections"][:5]) if when == "stop" else []
    if kept:        # what they are and who holds them: the line must say enough to find the leak
        report["kept_connections"] = [describe(c, exclude=(live["connections"], kept, objects)) for c in kept]
    return report


def describe(obj, exclude=()):
    """A short text naming a kept object: its class, its peer and transport, and what refers to it
    (a dict's owner named by its class, a frame by its function) -- ``exclude``: containers of the
    audit's own that refer to it."""
    cls = type(obj)
    parts = ["%s.%s" % (cls.__module__, cls.__qualname__)]
    for attr in ("address", "hostname", "container_id"):
        value = getattr(obj, attr, None)
        if isinstance(value, (str, tuple)) and value:
            parts.append("%s=%s" % (attr, value))
    transport = getattr(obj, "transport", None)
    if transport is not None:
        closing = getattr(transport, "is_closing", None)
        parts.append("transport %s" % ("closing" if callable(closing) and closing() else "open"))
    closed = getattr(obj, "closed", None)       # cypid.client's: done once connection_lost has run
    if callable(getattr(closed, "done", None)):
        parts.append("lost" if closed.done() else "not lost yet")
    skip = {id(x) for x in exclude if x is not None}
    holders = []
    for r in gc.get_referrers(obj):
        if id(r) in skip or r is exclude:
            continue
        if isinstance(r, dict):
            owners = [type(o).__qualname__ for o in gc.get_referrers(r)
                      if getattr(o, "__dict__", None) is r]
            holders.append("dict of %s" % (owners[0] if owners else "?"))
        elif type(r).__name__ == "frame":
            if r.f_code.co_filename != __file__:       # not the audit's own
                holders.append("frame %s" % r.f_code.co_name)
        else:
            holders.append(type(r).__qualname__)
    parts.append("held by: " + (", ".join(holders[:8]) or "nothing gc sees (a C reference: the loop)"))
    return " ".join(parts)


async def prime_loop(loop):
    """Make the loop open, before the start-up report, the descriptors it keeps for its life once it
    has handled one stream: libuv (uvloop) opens a spare descriptor on /dev/null (its EMFILE
    reserve) the first time it initialises a stream -- at listening, or, when the broker listened
    itself (broker/tls.py), at the first connection. Opened here on a socket pair, the baseline holds
    it and the stop report must match the start one exactly (a leaked /dev/null is not forgiven)."""
    import asyncio
    import socket
    a, b = socket.socketpair()
    try:
        transport, _ = await loop.connect_accepted_socket(asyncio.Protocol, a)
        transport.close()
        await asyncio.sleep(0)          # the close completes on the next loop turn
        await asyncio.sleep(0)
    finally:
        b.close()


def line(report):
    return PREFIX + json.dumps(report, sort_keys=True)


def parse(text):
    """The audit reports in a log text, in order."""
    out = []
    for raw in text.splitlines():
        i = raw.find(PREFIX)
        if i >= 0:
            try:
                out.append(json.loads(raw[i + len(PREFIX):]))
            except ValueError:
                continue
    return out


def problems(start, stop):
    """What the ``stop`` report shows was kept: each a short text naming the count (empty: clean).
    File descriptors must be back to the ``start`` report's, kind by kind."""
    found = ["%s=%s" % (key, stop.get(key)) for key in MUST_BE_ZERO if stop.get(key)]
    if stop.get("files"):
        found.append("files still open or mapped: %s" % ", ".join(stop["files"]))
    if start is not None:
        before = start.get("fd_kinds", {})
        extra = {k: n - before.get(k, 0) for k, n in stop.get("fd_kinds", {}).items() if n > before.get(k, 0)}
        if extra:
            found.append("file descriptors beyond the start-up ones: %s" %
                         ", ".join("%s x%d" % (k, n) for k, n in sorted(extra.items())))
    return found


__all__ = ["AUDIT_ENV", "MUST_BE_ZERO", "census", "enabled", "line", "parse", "problems"]
