"""HaBroker: one broker's HA module -- its options, status, role (backup or primary), promotion,
which clients a backup admits, and the QMF object ``org.apache.qpid.ha:habroker:ha-broker``.

See ha/README.md for the design. ``broker.ha`` is an HaBroker when ``--ha-cluster yes`` or
``--ha-queue-replication yes``, else None.
"""
import asyncio

from cypid.pyx import amqp

from .url import UrlError, parse_url

STANDALONE, JOINING, CATCHUP, READY, RECOVERING, ACTIVE = (
    "standalone", "joining", "catchup", "ready", "recovering", "active")
STATUSES = (STANDALONE, JOINING, CATCHUP, READY, RECOVERING, ACTIVE)
PRIMARY_STATUSES = (RECOVERING, ACTIVE)
TRANSITIONS = {
    (STANDALONE, JOINING), (JOINING, CATCHUP), (JOINING, RECOVERING), (CATCHUP, READY),
    (READY, RECOVERING), (READY, CATCHUP), (CATCHUP, JOINING), (READY, JOINING), (RECOVERING, ACTIVE),
    (STANDALONE, RECOVERING),
}
REDIRECT = amqp.CONNECTION_REDIRECT
ADMIN_PROPERTY = "qpid.ha-admin"
BACKUP_PROPERTY = "qpid.ha-backup"
#: a client that follows amqp:connection:redirect says so with this connection property (cypid.client's
#: FailoverConnection does); a backup drops other clients' connections as qpidd does
FOLLOW_REDIRECT = "cypid.follow-redirect"
STATUS_INFO = "qpid.ha-status"      # a backup's redirect says its own status (the joining check)
LEVELS = ("none", "configuration", "all")
BUILTIN_EXCHANGES = ("", "amq.direct", "amq.topic", "amq.fanout", "amq.match", "qpid.management",
                     "qmf.default.direct", "qmf.default.topic")
STREAM_PREFIX = "qpid.ha-backup."
NOTICE = 25


class HaError(Exception):
    """A refused HA operation; the text is qpidd's."""


def _props(conn):
    props = getattr(conn, "remote_properties", None) or {}
    return {str(k): v for k, v in props.items()}


class HaBroker:
    def __init__(self, broker):
        self.broker = broker
        self.loop = broker.loop
        self.log = broker.log.getChild("HA")
        opts = broker.options
        self.options = opts
        self.cluster = bool(opts.ha_cluster)
        self.brokers_url = opts.ha_brokers_url or ""
        self.public_url = opts.ha_public_url or ""
        self.replicate_default = opts.ha_replicate
        self.status = JOINING if self.cluster else STANDALONE
        self.members = []             # [{system-id, host-name, port, protocol, status}] from the primary
        self.expected = []            # members that were ready when this broker was promoted
        self.role = None              # Backup or Primary
        self.uuids = {}               # ("queue"|"exchange", name) -> identity (qpid.ha-uuid)
        self._recovering_timer = None
        self.replicas = None            # ha/replicate.py's Replicas (qpid-ha replicate), once started
        if self.cluster and broker.management is None:
            raise ValueError("HA: --ha-cluster yes needs management (--mgmt-enable yes)")
        if self.cluster and not self.brokers_url:
            self.log.warning("HA: --ha-brokers-url is empty: this backup has no primary to connect to")

    # -- identity -----------------------------------------------------------------------------
    @property
    def system_id(self):
        m = self.broker.management
        return m.system_id if m is not None else None

    def own_address(self):
        host = (self.options.interface or ["127.0.0.1"])[0]
        if host in ("0.0.0.0", "::", ""):
            host = "127.0.0.1"
        return host, self.broker.port or 0

    def info(self, status=None):
        host, port = self.own_address()
        return {"system-id": str(self.system_id), "host-name": host, "port": port, "protocol": "tcp",
                "status": status or self.status}

    # -- life -------------------------------------------------------------------------------------
    def start(self):
        self.log.log(NOTICE, "HA: %s, brokers %s, replicate %s", self.status,
                     self.brokers_url or "(none)", self.replicate_default)
        if self.cluster:
            from .backup import Backup
            self.role = Backup(self)
            self.role.start()
        elif self.options.ha_queue_replication:
            from .primary import Primary            # a source of single-queue replicas
            self.role = Primary(self)
        if self.options.ha_queue_replication:
            from .replicate import Replicas         # and a replica of the queues it was told to pull
            self.replicas = Replicas(self)
            self.replicas.start()

    async def stop(self):
        if self._recovering_timer is not None:
            self._recovering_timer.cancel()
            self._recovering_timer = None
        role, self.role = self.role, None
        if role is not None:
            await role.stop()
        replicas, self.replicas = self.replicas, None
        if replicas is not None:
            await replicas.stop()

    # -- status -----------------------------------------------------------------------------------
    def set_status(self, status):
        if status == self.status:
            return
        if (self.status, status) not in TRANSITIONS:
            self.log.critical("HA: illegal state transition %s -> %s", self.status, status)
            raise HaError("Illegal state transition: %s -> %s" % (self.status, status))
        self.log.log(NOTICE, "HA: status %s -> %s", self.status, status)
        self.status = status

    def is_primary(self):
        return self.status in PRIMARY_STATUSES

    # -- replication levels -----------------------------------------------------------------------
    def queue_level(self, queue):
        if queue.name.startswith(STREAM_PREFIX) or queue.name.startswith("qmfagent-"):
            return "none"
        settings = queue.settings
        level = getattr(settings, "replicate", None) or self.replicate_default
        given = getattr(settings, "given", {}) or {}
        if "qpid.replicate" not in given and queue.auto_delete and not settings.auto_delete_timeout \
                and (settings.exclusive or queue.exclusive_owner is not None):
            return "none"       # a temporary queue: only if it asks
        return level if level in LEVELS else "none"

    def exchange_level(self, ex):
        if ex.name in BUILTIN_EXCHANGES:
            return "none"
        level = (ex.arguments or {}).get("qpid.replicate")
        if level is None:
            return self.replicate_default
        level = level.decode() if isinstance(level, bytes) else str(level)
        return level if level in LEVELS else "none"

    def identity(self, kind, name, new=False):
        key = (kind, name)
        if new or key not in self.uuids:
            import uuid
            self.uuids[key] = str(uuid.uuid4())
        return self.uuids[key]

    # -- clients --------------------------------------------------------------------------------
    def refusal(self, conn):
        """None to admit ``conn``, else (condition, description, info) to close it with (condition
        None: drop it without a close). A primary or a standalone broker admits everyone; a backup
        admits admin tools (qpid.ha-admin) and no one else. Another backup (qpid.ha-backup) learns
        this one's status from the refusal's info, and a client that follows redirects
        (cypid.follow-redirect) the primary's address; other clients' connections are dropped, as
        qpidd's backups do, so that a client library's reconnect list moves on to the next address
        (python-qpid-proton stops at a close with amqp:connection:redirect, and restarts its list
        from the first address after any open)."""
        if not self.cluster or self.is_primary():
            return None
        props = _props(conn)
        if ADMIN_PROPERTY in props:
            return None
        info = {STATUS_INFO: self.status}
        primary = self.primary_address()
        text = "HA backup (%s): connect to the primary" % self.status
        if primary is not None:
            info.update({"hostname": primary[0], "network-host": primary[0], "port": primary[1]})
            text += " at %s:%d" % primary
        if BACKUP_PROPERTY in props or FOLLOW_REDIRECT in props:
            return REDIRECT, text, info
        return None, text, info

    def primary_address(self):
        """(host, port) clients should use: --ha-public-url's first address, else the primary's
        address among the members, else None (not known)."""
        if self.public_url:
            try:
                url = parse_url(self.public_url)
                if url.addresses:
                    return url.addresses[0].host, url.addresses[0].port
            except UrlError:
                pass
        for m in self.members:
            if m.get("status") in PRIMARY_STATUSES:
                return str(m.get("host-name")), int(m.get("port") or 0)
        role = self.role
        if role is not None and getattr(role, "connected_to", None):
            return role.connected_to
        return None

    # -- promotion --------------------------------------------------------------------------------
    async def promote(self):
        """The cluster manager's promotion (QMF habroker.promote)."""
        if not self.cluster:
            raise HaError("Cannot promote, this broker is not in a cluster (ha-cluster is no)")
        status = self.status
        if status in PRIMARY_STATUSES:
            return
        if status == CATCHUP:
            raise HaError("Still catching up, cannot be promoted.")
        if status == JOINING:
            others = await self.role.statuses_of_others()
            if any(s != JOINING for s in others.values()):
                raise HaError("Joining active cluster, cannot be promoted.")
            if self.status != JOINING:      # it connected to a primary meanwhile
                raise HaError("Still catching up, cannot be promoted." if self.status == CATCHUP
                              else "Joining active cluster, cannot be promoted.")
        if self.status not in (JOINING, READY):
            return
        self.expected = [m for m in self.members if m.get("status") == READY
                         and str(m.get("system-id")) != str(self.system_id)]
        backup, self.role = self.role, None
        if backup is not None:
            await backup.stop()
        self.set_status(RECOVERING)
        from .primary import Primary
        self.members = []
        self.role = Primary(self)
        self.log.log(NOTICE, "HA: promoted to primary; expecting %d backup(s)", len(self.expected))
        if not self.expected:
            self.activate("No backups expected.")
        else:
            self._recovering_timer = self.loop.call_later(self.options.ha_backup_timeout,
                                                          self._backup_timeout)
        self.members_changed()

    def _backup_timeout(self):
        self._recovering_timer = None
        if self.status != RECOVERING:
            return
        missing = [m for m in self.expected if not self.role.is_ready(m.get("system-id"))]
        for m in missing:
            self.log.warning("HA: recovering backup timed out: %s:%s", m.get("host-name"), m.get("port"))
        self.activate("Backup timeout expired.")

    def backup_ready(self, system_id):
        """A backup became ready under this primary: the recovering primary may go active."""
        if self.status == RECOVERING and all(self.role.is_ready(m.get("system-id")) for m in self.expected):
            self.activate("All backups recovered.")

    def activate(self, why):
        if self._recovering_timer is not None:
            self._recovering_timer.cancel()
            self._recovering_timer = None
        self.set_status(ACTIVE)
        self.log.log(NOTICE, "HA: active. %s", why)
        if self.role is not None:
            self.role.activated()
        self.members_changed()

    # -- membership -------------------------------------------------------------------------------
    def members_changed(self):
        """The primary's membership changed (or a backup adopted one): the QMF event."""
        if self.is_primary() and self.role is not None:
            self.members = [self.info()] + self.role.backup_infos()
            self.role.publish_members(self.members)
        m = self.broker.management
        if m is not None:
            from cypid.pyx.codec import ushort
            members = [dict(x, port=ushort(int(x.get("port") or 0))) for x in self.members]
            m.raise_event("membersUpdate", members=members)

    def adopt_members(self, members):
        """A backup's primary told it the membership: its own status is in it."""
        self.members = [dict(m) for m in members]
        me = str(self.system_id)
        for m in self.members:
            if str(m.get("system-id")) == me:
                status = m.get("status")
                if status in (CATCHUP, READY) and status != self.status:
                    self.set_status(status)
        self.members_changed()

    # -- QMF (the habroker object) ----------------------------------------------------------------
    def qmf_values(self):
        return {"name": "ha-broker", "status": self.status, "brokersUrl": self.brokers_url,
                "publicUrl": self.public_url, "replicateDefault": self.replicate_default,
                "members": [dict(m) for m in self.members], "systemId": self.system_id}

    def qmf_promote(self, args):
        return asyncio.ensure_future(self._qmf(self.promote()))

    async def _qmf(self, coro):
        await coro
        return {}

    def qmf_setBrokersUrl(self, args):
        self.brokers_url = _url_arg(args)
        if self.role is not None and hasattr(self.role, "url_changed"):
            self.role.url_changed()
        return {}

    def qmf_setPublicUrl(self, args):
        self.public_url = _url_arg(args)
        return {}

    def qmf_replicate(self, args):
        """Pull ``queue`` from the broker at ``broker`` and keep it replicated here (ha/replicate.py)."""
        broker, queue = _text(args.get("broker")), _text(args.get("queue"))
        if not self.options.ha_queue_replication or self.replicas is None:
            raise HaError("Queue replication is not enabled on this broker (ha-queue-replication is no)")
        if not queue or self.broker.nodes.queues.get(queue) is None:
            raise HaError("Cannot replicate non-existent queue %s" % queue)
        try:
            old = self.replicas.replicate(broker, queue)
        except UrlError as e:
            raise HaError(str(e)) from None
        self.log.log(NOTICE, "HA: replicating queue %r from %s", queue, broker)
        if old is not None:
            return asyncio.ensure_future(self._qmf(old.stop()))
        return {}


def _text(value):
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return "" if value is None else str(value)


def _url_arg(args):
    """The ``url`` argument of setBrokersUrl/setPublicUrl, checked against qpidd's grammar."""
    value = args.get("url")
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    url = "" if value is None else str(value)
    try:
        parse_url(url)
    except UrlError as e:
        raise HaError(str(e)) from None
    return url


__all__ = ["HaBroker", "HaError", "STATUSES", "REDIRECT", "FOLLOW_REDIRECT", "ADMIN_PROPERTY", "BACKUP_PROPERTY",
           "STREAM_PREFIX", "BUILTIN_EXCHANGES"]
