"""Authorisation: qpidd's ACL file (--acl-file), parsed and evaluated.

The file (qpidd's v2 ACL format)::

    # a comment (only at the start of a line)
    group admins alice@QPID bob@QPID \\
          ops                                   # '\\' at the end continues the line
    acl allow|allow-log|deny|deny-log USER|GROUP|all ACTION|all [OBJECT|all [PROPERTY=VALUE ...]]
    quota connections|queues N USER|GROUP|all ...

Rules are tried in file order and the first that matches decides; a request no rule matches is
denied. ``acl allow all all`` (or ``deny``) matches everything, so it ends the rules (later rules are
named in one notice and ignored). A rule matches when its user is the requester, a group holding the
requester (groups may hold groups) or ``all``; its action and object are the request's (or ``all``);
and each of its properties holds for the request: a value ending in ``*`` matches by prefix,
``routingkey`` matches as a topic pattern (``*`` one word, ``#`` any), the ``...lowerlimit`` /
``...upperlimit`` properties bound the request's number, ``host`` is an address or ``a,b`` range;
a property the request does not carry does not hold.

Where the broker asks (the object's name is the ``name`` property):

==========================  ===================================================================
connect                     ``create connection`` (host)
a link attaches to a node   ``access queue`` / ``access exchange`` (neither asked: either will do)
a node is created           ``create queue`` (durable autodelete exclusive alternate policytype
                            maxqueuesize maxqueuecount) / ``create exchange`` (type durable ...)
a consumer attaches         ``consume queue``
a subscription binds        ``bind exchange`` (queuename routingkey); QMF unbind: ``unbind``
a message is published      ``publish exchange`` (routingkey = the subject; a queue target is the
                            default exchange "" with the queue's name as routing key). Only
                            checked when some rule names ``publish``, as qpidd's "transfer ACL".
a QMF method is called      ``access method`` (name = the method, schemapackage, schemaclass),
                            then what it does: create/delete queue|exchange, bind/unbind,
                            ``purge queue``, ``reroute queue``, ``update broker``, ``delete
                            connection``
a QMF query is routed       ``access query`` (name = the class, or the object's name)
==========================  ===================================================================

Beside the rules: qpidd's quotas (``QueueQuotas``, ``ConnectionLimits``), the user-id check of
published messages (``verify_user_id``), and the ACL module's QMF events (``notify``).

A denial raises :class:`errors.UnauthorizedAccess` naming the action, the object and the user; a
``deny-log`` / ``allow-log`` rule that decides writes one log line naming the rule's line.
"""
from __future__ import annotations

import ipaddress
import os
import re
import time
import weakref

from cypid.pyx.queue import Queue

from . import errors
from .exchanges import topic_match

PERMISSIONS = ("allow", "allow-log", "deny", "deny-log")
ACTIONS = ("consume", "publish", "create", "access", "bind", "unbind", "delete", "purge", "update",
           "move", "redirect", "reroute")
OBJECTS = ("queue", "exchange", "broker", "link", "method", "query", "connection")
LIMITS = {   # limit property -> (request property, is upper bound)
    "queuemaxsizelowerlimit": ("maxqueuesize", False), "queuemaxsizeupperlimit": ("maxqueuesize", True),
    "queuemaxcountlowerlimit": ("maxqueuecount", False), "queuemaxcountupperlimit": ("maxqueuecount", True),
    "filemaxsizelowerlimit": ("maxfilesize", False), "filemaxsizeupperlimit": ("maxfilesize", True),
    "filemaxcountlowerlimit": ("maxfilecount", False), "filemaxcountupperlimit": ("maxfilecount", True),
    "pageslowerlimit": ("maxpages", False), "pagesupperlimit": ("maxpages", True),
    "pagefactorlowerlimit": ("maxpagefactor", False), "pagefactorupperlimit": ("maxpagefactor", True),
}
PROPERTIES = ("name", "durable", "owner", "routingkey", "passive", "autodelete", "exclusive", "type",
              "alternate", "queuename", "exchangename", "schemapackage", "schemaclass", "policytype",
              "paging", "host") + tuple(LIMITS)
_GROUP_NAME = re.compile(r"^[A-Za-z0-9_-]+$")
_USER_NAME = re.compile(r"^[A-Za-z0-9_.@/*-]+$")
#: open properties naming another broker's connection (federation link, HA backup)
BROKER_PEER_PROPERTIES = ("qpid.federation_tag", "qpid.ha-backup")
#: at most this many publish decisions are remembered (cleared when full)
PUBLISH_CACHE = 10000


class AclError(ValueError):
    """A bad ACL file: ``FILE:LINE: what``."""


class LinkRefusal(errors.AmqpError):
    """A producer's message refused as qpidd refuses it: rejected, and the producer's link closed
    with the condition (a forged user-id: amqp:not-allowed; a QMF query the ACL denies:
    amqp:precondition-failed "unauthorized-access: ...")."""
    closes_link = True


class Rule:
    __slots__ = ("lineno", "permission", "subject", "users", "action", "object", "props")

    def __init__(self, lineno, permission, subject, users, action, obj, props):
        self.lineno = lineno
        self.permission = permission
        self.subject = subject        # as written: a user, a group or "all"
        self.users = users            # frozenset of user names, None for all
        self.action = action          # None: all
        self.object = obj             # None: all
        self.props = props            # {property: value}

    def matches(self, user, action, obj, props):
        if self.users is not None and user not in self.users:
            return False
        if self.action is not None and self.action != action:
            return False
        if self.object is not None and self.object != obj:
            return False
        for key, want in self.props.items():
            if not property_holds(key, want, props):
                return False
        return True

    def text(self):
        words = ["acl", self.permission, self.subject, self.action or "all"]
        if self.object is not None or self.props:
            words.append(self.object or "all")
        words += ["%s=%s" % kv for kv in self.props.items()]
        return " ".join(words)


def _value_matches(want, have):
    if want.endswith("*"):
        return have.startswith(want[:-1])
    return have == want


def _text(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def property_holds(key, want, props):
    """Whether rule property ``key=want`` holds for a request carrying ``props``."""
    limit = LIMITS.get(key)
    if limit is not None:
        have = props.get(limit[0])
        if have is None:
            return False
        try:
            have = int(have)
        except (TypeError, ValueError):
            return False
        return have <= int(want) if limit[1] else have >= int(want)
    have = props.get(key)
    if have is None:
        return False
    have = _text(have)
    if key == "routingkey":
        return topic_match(want, have)
    if key == "host":
        return _host_matches(want, have)
    if key in ("durable", "autodelete", "exclusive", "passive", "paging"):
        return want.lower() == have.lower()
    return _value_matches(want, have)


def _host_matches(want, have):
    if want == "*" or want == "all":
        return True
    try:
        addr = ipaddress.ip_address(have)
        if "," in want:
            low, high = (ipaddress.ip_address(w.strip()) for w in want.split(",", 1))
            return low <= addr <= high
        return addr == ipaddress.ip_address(want)
    except ValueError:
        return _value_matches(want, have)


# --------------------------------------------------------------------------- parsing

def _logical_lines(text, source):
    """(first line number, words) per logical line: comments and blanks dropped, '\\' continued."""
    pending, start = None, 0
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if pending is None:
            if not line or line.startswith("#"):
                continue
            start, pending = lineno, []
        elif not line or line == "\\":
            raise AclError("%s:%d: empty continuation line" % (source, lineno))
        cont = line.endswith("\\")
        if cont:
            line = line[:-1]
        pending += line.split()
        if not cont:
            yield start, pending
            pending = None
    if pending is not None:
        raise AclError("%s:%d: the file ends inside a continued line" % (source, start))


class Acl:
    """A parsed ACL: ``decide(user, action, obj, props) -> (permission, rule or None)``."""

    def __init__(self, rules, groups, quotas, source="", ignored=0):
        self.rules = rules
        self.groups = groups          # name -> frozenset of users
        self.quotas = quotas          # ("connections"|"queues") -> {user or "all": N}
        self.source = source
        self.ignored = ignored        # rules after an "all all" rule
        self.transfer = any(r.action == "publish" for r in rules)   # qpidd's transferAcl
        self._publish_cache = {}

    @classmethod
    def parse(cls, text, source="ACL file"):
        groups_raw, order, rules, quotas = {}, [], [], {"connections": {}, "queues": {}}
        lines = list(_logical_lines(text, source))
        # groups first: a rule may name a group defined anywhere before it (qpidd reads in order)
        ended, ignored = False, 0
        for lineno, words in lines:
            kind = words[0]
            where = "%s:%d" % (source, lineno)
            if kind == "group":
                if len(words) < 2:
                    raise AclError("%s: group needs a name" % where)
                name = words[1]
                if not _GROUP_NAME.match(name) or name == "all":
                    raise AclError("%s: bad group name %r" % (where, name))
                if name in groups_raw:
                    raise AclError("%s: group %s defined twice" % (where, name))
                for member in words[2:]:
                    if not _USER_NAME.match(member):
                        raise AclError("%s: bad member name %r in group %s" % (where, member, name))
                groups_raw[name] = words[2:]
                order.append((name, where))
            elif kind == "acl":
                rule = cls._parse_rule(words, where, lineno, groups_raw)
                if ended:
                    ignored += 1
                    continue
                rules.append(rule)
                if rule.users is None and rule.action is None and rule.object is None and not rule.props:
                    ended = True
            elif kind == "quota":
                cls._parse_quota(words, where, groups_raw, quotas)
            else:
                raise AclError("%s: expected 'group', 'acl' or 'quota', got %r" % (where, kind))
        groups = {}
        for name, where in order:
            try:
                groups[name] = _expand(name, groups_raw, ())
            except AclError as e:
                raise AclError("%s: %s" % (where, e)) from None
        for rule in rules:
            if rule.users is not None:
                rule.users = frozenset(u for s in rule.users for u in (groups[s] if s in groups else (s,)))
        for table in quotas.values():
            for subject in list(table):
                if subject in groups:
                    n = table.pop(subject)
                    for user in groups[subject]:
                        table.setdefault(user, n)
        return cls(rules, groups, quotas, source, ignored)

    @staticmethod
    def _parse_rule(words, where, lineno, groups):
        if len(words) < 4:
            raise AclError("%s: expected 'acl PERMISSION USER|GROUP|all ACTION [OBJECT [PROPERTY=VALUE ...]]'"
                           % where)
        permission, subject, action = words[1], words[2], words[3]
        if permission not in PERMISSIONS:
            raise AclError("%s: unknown permission %r (%s)" % (where, permission, "|".join(PERMISSIONS)))
        if subject != "all" and subject not in groups and not _USER_NAME.match(subject):
            raise AclError("%s: bad user or group name %r" % (where, subject))
        if action != "all" and action not in ACTIONS:
            raise AclError("%s: unknown action %r" % (where, action))
        obj = words[4] if len(words) > 4 else "all"
        if obj != "all" and obj not in OBJECTS:
            raise AclError("%s: unknown object %r" % (where, obj))
        props = {}
        for word in words[5:]:
            key, sep, value = word.partition("=")
            if not sep or not value:
                raise AclError("%s: expected PROPERTY=VALUE, got %r" % (where, word))
            if key not in PROPERTIES:
                raise AclError("%s: unknown property %r" % (where, key))
            if key in props:
                raise AclError("%s: property %s given twice" % (where, key))
            if key in LIMITS and not value.isdigit():
                raise AclError("%s: %s needs a number, got %r" % (where, key, value))
            props[key] = value
        users = None if subject == "all" else frozenset((subject,))
        return Rule(lineno, permission, subject, users, None if action == "all" else action,
                    None if obj == "all" else obj, props)

    @staticmethod
    def _parse_quota(words, where, groups, quotas):
        if len(words) < 4 or words[1] not in quotas:
            raise AclError("%s: expected 'quota connections|queues N USER|GROUP|all ...'" % where)
        if not words[2].isdigit():
            raise AclError("%s: quota needs a number, got %r" % (where, words[2]))
        for subject in words[3:]:
            if subject != "all" and subject not in groups and not _USER_NAME.match(subject):
                raise AclError("%s: bad user or group name %r" % (where, subject))
            quotas[words[1]][subject] = int(words[2])

    # -- deciding ---------------------------------------------------------------------------------
    def decide(self, user, action, obj, props):
        for rule in self.rules:
            if rule.matches(user, action, obj, props):
                return rule.permission, rule
        return "deny", None

    def decide_publish(self, user, exchange, key):
        cache_key = (user, exchange, key)
        found = self._publish_cache.get(cache_key)
        if found is None:
            if len(self._publish_cache) >= PUBLISH_CACHE:
                self._publish_cache.clear()
            found = self._publish_cache[cache_key] = self.decide(
                user, "publish", "exchange", {"name": exchange, "routingkey": key})
        return found

    def quota(self, kind, user):
        table = self.quotas[kind]
        return table.get(user, table.get("all"))


def _expand(name, groups, stack):
    if name in stack:
        raise AclError("group %s contains itself (%s)" % (name, " -> ".join(stack + (name,))))
    out = set()
    for member in groups[name]:
        if member in groups:
            out |= _expand(member, groups, stack + (name,))
        else:
            out.add(member)
    return frozenset(out)


def load(path):
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise AclError("cannot read ACL file %s: %s" % (path, e.strerror)) from None
    except UnicodeDecodeError as e:
        raise AclError("ACL file %s is not text: %s" % (path, e)) from None
    return Acl.parse(text, path)


# --------------------------------------------------------------------------- the broker's ACL

_NOUNS = {"queue": "queue", "exchange": "exchange", "method": "method", "broker": "broker",
          "connection": "connection", "link": "link", "query": "query"}


def describe(action, obj, name, user):
    """What a denial says: ``ACL denied queue create request for q1 from alice@QPID``."""
    what = "%s %s request" % (_NOUNS.get(obj, obj), action)
    return "ACL denied %s for %s from %s" % (what, name, user) if name is not None else \
        "ACL denied %s from %s" % (what, user)


class Authorizer:
    """The broker's ACL (``broker.acl``): ``check(...)`` raises UnauthorizedAccess when denied.
    Without --acl-file everything is allowed and ``enabled`` / ``transfer`` are false."""

    def __init__(self, options, log):
        self.log = log.getChild("Security") if hasattr(log, "getChild") else log
        self.path = getattr(options, "acl_file", None) or None
        data_dir = getattr(options, "data_path", None)
        if self.path and data_dir and not os.path.isabs(self.path):
            self.path = os.path.join(data_dir, self.path)      # as qpidd: relative to the data dir
        self.acl = None
        self.enabled = False
        self.transfer = False
        self.deny_count = 0
        self.last_load_ns = 0
        self.agent = None               # the QMF agent (broker.py sets it): the ACL's events
        self.max_queues = getattr(options, "max_queues_per_user", 0) or 0
        self.authenticating = bool(getattr(options, "auth", False))
        self.realm = getattr(options, "realm", "QPID") or "QPID"
        self.forgers = weakref.WeakSet()    # connections that sent a forged user-id (logged once each)
        self.connection_limit_per_user = getattr(options, "connection_limit_per_user", 0) or 0
        self.queues = QueueQuotas(self)
        if self.max_queues and not self.path:
            self.log.log(25, "ACL: --max-queues-per-user %d has no effect without --acl-file (as qpidd: "
                         "it is the ACL module's option)", self.max_queues)
        if self.path:
            self.reload()

    def notify(self, event, **values):
        """Raise the ACL's QMF event ``event`` (org.apache.qpid.acl) when management is on."""
        if self.agent is not None:
            self.agent.raise_event(event, **values)

    def reload(self, user=""):
        """Read the file again; a bad file raises AclError and the ACL in force stays. ``user``: who
        asked (QMF reloadACLFile), named in the fileLoaded / fileLoadFailed event."""
        try:
            acl = load(self.path)
        except AclError as e:
            self.notify("fileLoadFailed", userId=user, reason=str(e))
            raise
        if acl.ignored:
            self.log.log(25, "ACL: %s: %d rules after an 'all all' rule are ignored", self.path, acl.ignored)
        for kind, option in (("connections", "--connection-limit-per-user"), ("queues", "--max-queues-per-user")):
            if acl.quotas[kind] and "all" not in acl.quotas[kind]:
                # qpidd's rule: once a file has quota lines of a kind, a user none names gets the option's
                # value, and 0 there means none at all. Said once, so a locked-out user can be explained.
                self.log.log(25, "ACL: %s: 'quota %s' lines are in force: users they do not name may "
                             "have %s (%s)", self.path, kind, _quota_default(self, kind) or "none", option)
        self.acl, self.enabled, self.transfer = acl, True, acl.transfer
        self.last_load_ns = time.time_ns()
        self.log.log(25, "ACL: %d rules, %d groups read from %s", len(acl.rules), len(acl.groups), self.path)
        self.notify("fileLoaded", userId=user)

    def quota_limit(self, kind, user, default):
        """The limit on ``kind`` ("connections" | "queues") for ``user``, None for none, as qpidd: the
        ACL's quota for the user (or a group holding the user, or ``all``); else ``default`` (the
        option), which is only a limit when non-zero -- unless the file has quota lines of that kind:
        then 0 means no connections (queues) at all."""
        acl = self.acl if self.enabled else None
        if acl is not None and acl.quotas[kind]:
            quota = acl.quota(kind, user)
            return quota if quota is not None else default
        return default or None

    def allowed(self, user, action, obj, name=None, props=None):
        """Whether the request is allowed (logs for *-log rules and counts denials)."""
        if not self.enabled:
            return True
        props = dict(props or ())
        if name is not None:
            props["name"] = name
        permission, rule = self.acl.decide(user, action, obj, props)
        return self._outcome(permission, rule, user, action, obj, props)

    def _outcome(self, permission, rule, user, action, obj, props):
        allowed = permission.startswith("allow")
        if not allowed:
            self.deny_count += 1
        if permission.endswith("-log"):
            shown = " ".join("%s=%s" % (k, _text(v)) for k, v in sorted(props.items()) if k != "name")
            self.log.log(25 if allowed else 30, "ACL %s: %s %s %s %s%s (%s:%d)",
                         "allowed" if allowed else "denied", user, action, obj, props.get("name", ""),
                         " " + shown if shown else "", self.path, rule.lineno)
            # qpidd's events for *-log rules: org.apache.qpid.acl:allow / deny
            self.notify("allow" if allowed else "deny", userId=user, action=action, objectType=obj,
                        objectName=_text(props.get("name", "")),
                        arguments={k: _text(v) for k, v in sorted(props.items()) if k != "name"})
        return allowed

    def check(self, who, action, obj, name=None, props=None):
        """Raise UnauthorizedAccess unless allowed. ``who``: a connection (its user and peer host)
        or a user name."""
        if not self.enabled:
            return
        user = who if isinstance(who, str) else who.user
        if not self.allowed(user, action, obj, name, props):
            raise errors.UnauthorizedAccess(describe(action, obj, name, user))
        if action == "create" and obj == "queue":
            self.queues.approve(user, name)     # quota queues / --max-queues-per-user

    def check_publish(self, conn, exchange, key):
        permission, rule = self.acl.decide_publish(conn.user, exchange, key or "")
        if permission == "allow":
            return None
        if self._outcome(permission, rule, conn.user, "publish", "exchange",
                         {"name": exchange, "routingkey": key or ""}):
            return None
        return describe("publish", "exchange", exchange, conn.user) + " with routing key %s" % (key or "''")


    # -- the message's user-id (qpidd's check, with --auth yes) ----------------------------------------
    def checks_user_id(self, conn):
        """Whether the messages ``conn`` sends must carry its own user-id (or none): with --auth yes,
        except on another broker's connection (a federation link's ``qpid.federation_tag``, an HA
        backup's ``qpid.ha-backup``, which forward other users' messages) whose user the ACL lets
        ``create link`` (any user when there is no ACL, as everything else is allowed then)."""
        if not self.authenticating:
            return False
        props = getattr(conn, "remote_properties", None) or {}
        if any(_text(k) in BROKER_PEER_PROPERTIES for k in props):
            if not self.enabled or self.allowed(conn.user, "create", "link"):
                return False
        return True

    def verify_user_id(self, conn, user_id):
        """Returns if ``user_id`` (bytes) is ``conn``'s user (``bob@QPID``, or ``bob`` in the default
        realm); else raises LinkRefusal: the message is rejected and its link closed with
        amqp:not-allowed, as qpidd, with one log line per connection."""
        user = conn.user or ""
        uid = _text(user_id)
        if uid == user or (user.endswith("@" + self.realm) and uid == user[:-len(self.realm) - 1]):
            return
        text = "Authenticated user id is %s but user id in message declared as %s" % (user, uid)
        if conn not in self.forgers:
            self.forgers.add(conn)
            self.log.warning("%s (connection %s; its link is closed with amqp:not-allowed; later ones on "
                             "this connection are not logged)", text, conn.address)
        raise LinkRefusal(text, errors.NOT_ALLOWED)

    def querying(self, conn, body):
        """qpidd's ACL on a QMF query (``body``, the request's map): ``access query`` on the object's
        name when the query names one, else on the class name. Denied, the request is rejected and
        the link that sent it closed with amqp:precondition-failed, as qpidd."""
        if not isinstance(body, dict) or _text(body.get("_what", "")) != "OBJECT":
            return
        oid = body.get("_object_id")
        if isinstance(oid, dict) and oid.get("_object_name") is not None:
            name = _text(oid["_object_name"])
            what = "object " + name
        else:
            sid = body.get("_schema_id")
            name = _text((sid.get("_class_name") if isinstance(sid, dict) else None) or "").lower()
            what = "object class " + name
        if not self.allowed(conn.user, "access", "query", name):
            raise LinkRefusal("unauthorized-access: ACL denied QMF query of %s from %s" % (what, conn.user),
                              errors.PRECONDITION_FAILED)

    # -- the broker's decision points (one call each in nodes.py, links.py, broker.py) ---------------
    def connecting(self, conn):
        """``create connection``: only rules that name the connection object decide; none matching
        lets the connection in (a default-deny file without connection rules does not lock
        everyone out)."""
        if not self.enabled:
            return
        props = {"host": peer_host(conn)}
        for rule in self.acl.rules:
            if rule.object == "connection" and rule.matches(conn.user, "create", "connection", props):
                if not self._outcome(rule.permission, rule, conn.user, "create", "connection", props):
                    raise errors.UnauthorizedAccess(
                        describe("create", "connection", props["host"], conn.user))
                return

    def resolving(self, link, name, want_queue, want_topic, creating, node_props):
        """A link names a node: ``access`` on it, and ``create`` when it is to be made."""
        if not self.enabled:
            return
        conn = link.session.connection
        nodes = link.broker.nodes
        if want_queue or (not want_topic and name in nodes.queues):
            self.check(conn, "access", "queue", name)
        elif want_topic or name in nodes.exchanges:
            self.check(conn, "access", "exchange", name)
        elif not (self.allowed(conn.user, "access", "queue", name)
                  or self.allowed(conn.user, "access", "exchange", name)):
            raise errors.UnauthorizedAccess(describe("access", "node", name, conn.user))
        if creating:
            obj = "exchange" if want_topic else "queue"
            self.check(conn, "create", obj, name, create_props(obj, node_props))

    def subscribing(self, link, ex, qname, queue_props, terminus):
        """A consumer of an exchange: its subscription queue is created, bound and consumed."""
        if not self.enabled:
            return
        conn = link.session.connection
        if qname not in link.broker.nodes.queues:
            self.check(conn, "create", "queue", qname, create_props("queue", queue_props))
        subject = terminus.binding_filters()[0]
        key = subject if subject is not None else ("#" if ex.type == "topic" else "")
        self.check(conn, "bind", "exchange", ex.name, {"queuename": qname, "routingkey": key})
        props = create_props("queue", queue_props)
        self.check(conn, "consume", "queue", qname,
                   {k: props[k] for k in ("durable", "autodelete", "exclusive")})

    def consuming(self, link, queue):
        """``consume queue`` (durable, autodelete, exclusive: the queue's)."""
        if not self.enabled:
            return
        settings = queue.settings
        self.check(link.session.connection, "consume", "queue", queue.name, {
            "durable": bool(settings.durable), "autodelete": bool(settings.auto_delete),
            "exclusive": bool(settings.exclusive) or queue.exclusive_owner is not None})

    def publish_refused(self, link, msg):
        """None, or why this message may not be published (``publish exchange``; a queue target is
        the default exchange "" keyed by the queue's name)."""
        if link.anonymous:
            dest = msg.to or ""
            if dest in link.broker.nodes.queues:
                return self.check_publish(link.session.connection, "", dest)
            return self.check_publish(link.session.connection, dest, msg.subject)
        node = link.node
        if type(node) is Queue:
            return self.check_publish(link.session.connection, "", node.name)
        return self.check_publish(link.session.connection, node.name, msg.subject)


def _quota_default(authorizer, kind):
    if kind == "queues":
        return authorizer.max_queues
    return authorizer.connection_limit_per_user


class QueueQuotas:
    """qpidd's queue quotas (ACL ``quota queues`` lines, --max-queues-per-user): how many queues each
    user has created and that still exist. A create over the user's limit is refused with
    amqp:resource-limit-exceeded (a limit, as for connections; qpidd 1.40 answers unauthorized-access)
    and qpidd's text "ACL denied queue create request ..." naming the quota, with the queueQuotaDeny event
    and one log line per episode (until the user's count drops below the limit). Counted: queues a
    user's link or QMF request created (checked by ``Authorizer.check('create', 'queue')`` just before
    the broker makes the queue; ``created`` / ``deleted`` are the broker's hooks in nodes.py)."""

    def __init__(self, authorizer):
        self.authorizer = authorizer
        self.counts = {}            # user -> queues existing that the user created
        self.owner = {}             # queue name -> user
        self.episodes = set()       # users refused since their count was last below the limit
        self.deny_count = 0
        self._approved = None       # (queue name, user) approved, not yet created

    def approve(self, user, name):
        auth = self.authorizer
        limit = auth.quota_limit("queues", user, auth.max_queues)
        count = self.counts.get(user, 0)
        if limit is not None and count >= limit:
            self.deny_count += 1
            if user not in self.episodes:
                self.episodes.add(user)
                auth.log.warning("Queue quota: %s has %d queues (limit %d); refusing the queues it creates "
                                 "over the limit (first: %s)", user, count, limit, name)
            auth.notify("queueQuotaDeny", userId=user, queueName=name or "")
            raise errors.ResourceLimitExceeded("%s: queue quota %d reached"
                                               % (describe("create", "queue", name, user), limit))
        self._approved = (name, user)

    def created(self, queue):
        approved, self._approved = self._approved, None
        if approved is not None and approved[0] == queue.name:
            user = approved[1]
            self.owner[queue.name] = user
            self.counts[user] = self.counts.get(user, 0) + 1

    def deleted(self, queue):
        user = self.owner.pop(queue.name, None)
        if user is None:
            return
        n = self.counts[user] - 1
        if n:
            self.counts[user] = n
        else:
            del self.counts[user]
        auth = self.authorizer
        limit = auth.quota_limit("queues", user, auth.max_queues)
        if limit is None or n < limit:
            self.episodes.discard(user)


_CREATE_PROPS = {"durable": "durable", "auto-delete": "autodelete", "exclusive": "exclusive",
                 "alternate-exchange": "alternate", "exchange-type": "type", "qpid.policy_type": "policytype",
                 "qpid.max_size": "maxqueuesize", "qpid.max_count": "maxqueuecount",
                 "qpid.file_size": "maxfilesize", "qpid.file_count": "maxfilecount"}


def create_props(obj, node_props):
    """The ACL properties of a create request, from a node's declared properties."""
    out = {"durable": False, "autodelete": False}
    if obj == "queue":
        out["exclusive"] = False
    for key, value in (node_props or {}).items():
        key = key.decode() if isinstance(key, bytes) else str(key)
        name = _CREATE_PROPS.get(key)
        if name is not None and value is not None:
            out[name] = value
    if obj == "exchange":
        out.setdefault("type", "topic")
    return out


class ConnectionLimits:
    """--max-connections, --connection-limit-per-ip, --connection-limit-per-user and the ACL's
    ``quota connections`` (which wins over the per-user option). A connection over a limit is closed
    after open with amqp:resource-limit-exceeded; the log says so once per episode (the first refusal
    of a key until its count drops below the limit again), not once per refused connection."""

    TEXT = "User connection denied by configured limit"

    def __init__(self, options, authorizer, log):
        self.log = log.getChild("Security") if hasattr(log, "getChild") else log
        self.authorizer = authorizer
        self.max = getattr(options, "max_connections", 0) or 0
        self.per_ip = getattr(options, "connection_limit_per_ip", 0) or 0
        self.per_user = getattr(options, "connection_limit_per_user", 0) or 0
        self.total = 0
        self.by_ip = {}
        self.by_user = {}
        self.ip_of = {}
        self.user_of = {}
        self.episodes = set()
        self.deny_count = 0

    def user_limit(self, user):
        """None (no limit) or the number of connections ``user`` may have (Authorizer.quota_limit)."""
        return self.authorizer.quota_limit("connections", user, self.per_user)

    def _refuse(self, key, what, conn):
        self.deny_count += 1
        self.authorizer.notify("connectionDeny", userId=getattr(conn, "user", "") or "",
                               clientAddr=peer_host(conn))
        if key not in self.episodes:
            self.episodes.add(key)
            self.log.warning("Connection limit: %s; refusing further connections over it (first: %s)",
                             what, conn.address)
        return (errors.RESOURCE_LIMIT_EXCEEDED, "%s: %s" % (self.TEXT, what), 10)

    def opened(self, conn):
        """At accept: None, or (condition, text, log level) to close with once the peer opens."""
        ip = peer_host(conn)
        self.total += 1
        self.ip_of[conn] = ip
        self.by_ip[ip] = self.by_ip.get(ip, 0) + 1
        if self.max and self.total > self.max:
            return self._refuse(("max",), "%d connections (--max-connections %d)" % (self.total, self.max),
                                conn)
        if self.per_ip and self.by_ip[ip] > self.per_ip:
            return self._refuse(("ip", ip), "%d connections from %s (--connection-limit-per-ip %d)"
                                % (self.by_ip[ip], ip, self.per_ip), conn)
        return None

    def authenticated(self, conn):
        """When the connection opens with its user: None or the refusal, as opened()."""
        user = conn.user
        self.user_of[conn] = user
        count = self.by_user[user] = self.by_user.get(user, 0) + 1
        limit = self.user_limit(user)
        if limit is not None and count > limit:
            return self._refuse(("user", user), "%d connections of %s (limit %d)" % (count, user, limit), conn)
        return None

    def closed(self, conn):
        ip = self.ip_of.pop(conn, None)
        if ip is None:
            return
        self.total -= 1
        self._drop(self.by_ip, ip, self.per_ip or None, ("ip", ip))
        user = self.user_of.pop(conn, None)
        if user is not None:
            self._drop(self.by_user, user, self.user_limit(user), ("user", user))
        if not self.max or self.total < self.max:
            self.episodes.discard(("max",))

    def _drop(self, table, key, limit, episode):
        n = table[key] - 1
        if n:
            table[key] = n
        else:
            del table[key]
        if limit is None or n < limit:      # None: no limit (0: none allowed, the episode lasts)
            self.episodes.discard(episode)


def peer_host(conn):
    transport = getattr(conn, "transport", None)
    peer = transport.get_extra_info("peername") if transport is not None else None
    return peer[0] if peer else ""


__all__ = ["Acl", "AclError", "Authorizer", "ConnectionLimits", "Rule", "load", "describe", "property_holds"]
