"""The backup's side of replication (ha/README.md, "The stream").

``Backup`` runs one task on the broker's own loop: it tries each address of --ha-brokers-url in turn
(every --link-maintenance-interval), connects with cypid.client, attaches a receiver to its stream
queue on the primary and applies each operation to this broker's nodes, accepting the stream message
once it is applied (a durable message: once its journal record is synced).
"""
import asyncio
import functools
import logging
import os

from cypid.client import ClientError, connect
from cypid.pyx.ha_stream import AllOf, apply_records

from cypid.broker import errors

from .habroker import (
    BACKUP_PROPERTY, BUILTIN_EXCHANGES, CATCHUP, JOINING, NOTICE, READY, REDIRECT, STATUS_INFO, STREAM_PREFIX,
)
from .primary import INFO_ARG
from .ship import JournalReceiver
from .stream import decode_op
from .url import UrlError, parse_url

#: seconds between attempts to follow the primary while a journal of this broker fails (at most)
FAULT_RETRY_MAX = 5.0


class Backup:
    def __init__(self, ha):
        self.ha = ha
        self.broker = ha.broker
        self.nodes = ha.broker.nodes
        self.loop = ha.loop
        self.log = ha.log
        self.options = ha.options
        self.task = None
        self.conn = None
        self.connected_to = None        # (host, port) of the primary while connected
        self.ids = {}                   # queue name -> {replication id: message}
        self.applied = 0
        self.receiving = {}             # queue name -> JournalReceiver (a journal being shipped)
        # A journal of this broker failed under a replicated message (queue name, journal directory):
        # the episode lasts until the primary says this backup is ready again (ha/README.md,
        # "A backup whose journal fails").
        self.journal_fault = None
        # Benchmarks and tests only: CYPID_HA_SHIP_JOURNALS=0 asks the primary to copy durable
        # queues message by message (the path measured beside journal shipping).
        self.ship_journals = os.environ.get("CYPID_HA_SHIP_JOURNALS", "1") != "0"

    # -- life -------------------------------------------------------------------------------------
    def start(self):
        self.task = self.loop.create_task(self._run())

    async def stop(self):
        task, self.task = self.task, None
        if task is not None:
            # A cancellation can be lost inside asyncio.wait_for on Python 3.11 (the inner future
            # finishing as the cancel arrives: CPython gh-86296), so _run also ends when it is no
            # longer this backup's task, and the cancel is repeated until the task is done.
            while not task.done():
                task.cancel()
                await asyncio.wait({task}, timeout=0.5)
            if not task.cancelled():
                task.exception()            # retrieved: nothing to report after a stop
        conn, self.conn = self.conn, None
        if conn is not None:
            conn.abort()
        self.connected_to = None

    def url_changed(self):
        """setBrokersUrl: the next round of connection attempts uses the new URL."""

    def _others(self):
        try:
            url = parse_url(self.ha.brokers_url)
        except UrlError as e:
            self.log.error("HA: %s", e)
            return [], None
        host, port = self.ha.own_address()
        own = {(host, port), ("localhost", port), ("127.0.0.1", port)}
        return [a for a in url.addresses if (a.host, a.port) not in own], url

    def _connect_options(self, url):
        opts = self.options
        info = self.ha.info()
        # 1 MiB frames: a shipped journal's chunks go in one frame each (a joining broker's promote
        # that hung with them was the cancel lost in Backup.stop, fixed since: 1f34825)
        options = {"properties": {BACKUP_PROPERTY: info}, "max_frame_size": 1 << 20,
                   "container_id": "qpid.ha-backup-%s" % info["system-id"]}
        if opts.link_heartbeat_interval:
            options["idle_timeout"] = 2 * opts.link_heartbeat_interval
        user = opts.ha_username or (url.user if url is not None else None)
        if user:
            options["username"] = user
            options["password"] = opts.ha_password or (url.password if url is not None else "") or ""
        if opts.ha_mechanism:
            options["mechanism"] = opts.ha_mechanism
        return options

    async def _run(self):
        interval = max(0.01, self.options.link_maintenance_interval)
        wait = interval
        me = asyncio.current_task()
        while self.task is me:
            others, url = self._others()
            for address in others:
                if self.task is not me:
                    return
                try:
                    await self._follow(address, url)
                except asyncio.CancelledError:
                    raise
                except Exception as e:      # the primary went, refused, or sent nonsense: next one
                    self.log.debug("HA: link to %s: %s", address.hostport, e)
                    self._check_journals(e)
                finally:
                    conn, self.conn = self.conn, None
                    self.connected_to = None
                    if conn is not None:
                        conn.abort()
            # While a journal fails every attempt ends at the snapshot's first durable message: try
            # less often (each attempt costs the primary a snapshot), up to FAULT_RETRY_MAX apart.
            wait = min(max(interval, wait * 2), FAULT_RETRY_MAX) if self.journal_fault else interval
            await asyncio.sleep(wait)

    async def _follow(self, address, url):
        timeout = max(1.0, min(self.options.link_heartbeat_interval or 10.0, 10.0))
        try:
            conn = await connect(address.hostport, timeout=timeout, track=self.broker.outgoing,
                                 **self._connect_options(url))
        except (ClientError, OSError) as e:
            self.log.debug("HA: %s did not take this backup: %s", address.hostport, e)
            return
        self.conn = conn
        info = self.ha.info()
        name = self.stream_name(info)
        window = self.options.ha_flow_messages or 100000
        receiver = await conn.receiver(
            name, node="queue", create=True, credit=window, auto_accept=False, ack_batch=1,
            properties={"auto-delete": True, "exclusive": True, "qpid.replicate": "none",
                        "qpid.max_size": 0, "qpid.max_count": 0,
                        INFO_ARG: self.stream_info(info)})
        self.connected_to = (address.host, address.port)
        quiet = logging.DEBUG if self.journal_fault else NOTICE    # a retry in a journal fault: no news
        self.log.log(quiet, "HA: connected to primary %s", address.hostport)
        try:
            while True:
                item = receiver.get_raw_nowait()
                if item is None:
                    await receiver._wait_message(None)
                    continue
                data, did = item
                waits = self._apply(data)
                if waits is None:
                    receiver.accept(did)
                elif waits.__class__ is AllOf:      # journal syncs (a live or snapshot enqb)
                    waits.start(functools.partial(self._synced, conn, receiver, did))
                else:                               # applied in steps (a shipped journal)
                    await waits
                    receiver.accept(did)
        finally:
            self._drop_receiving()
            self.log.log(logging.DEBUG if self.journal_fault else NOTICE, "HA: link to primary %s lost",
                         address.hostport)

    def stream_name(self, info):
        """This backup's stream queue on the primary."""
        return STREAM_PREFIX + info["system-id"]

    def stream_info(self, info):
        """What the stream queue's qpid.ha-info tells the primary."""
        return dict(info, **{"ship-journals": self.ship_journals})

    def _synced(self, conn, receiver, did, failed):
        """A stream message's journal records are synced (accept it), or one failed: this backup
        must not say it has them, so the link drops (the primary releases what it held for this
        backup; on reconnecting the backup copies everything again)."""
        if failed is None:
            receiver.accept(did)
        elif not conn.closed.done():
            self._check_journals("a replicated message's record was not synced")
            conn.abort()

    def _check_journals(self, why):
        """After a failure on the link: if a journal of this broker is failing, this backup lacks
        messages the primary settled without it (the primary dropped it). It is no longer a
        candidate for promotion (status catchup) until it has caught up again; one line names the
        journal, once per episode."""
        store = self.nodes.store
        failing = [qj for qj in getattr(store, "journals", {}).values()
                   if getattr(qj, "failing", False) and not getattr(qj, "removed", False)]
        if not failing or self.journal_fault is not None:
            return
        qj = failing[0]
        directory = getattr(qj.journal, "directory", "?")
        self.journal_fault = (qj.queue.name, directory)
        self.log.error("HA: queue %r: journal %s failed (%s): replicated messages are not acknowledged; "
                       "link to the primary dropped, status catchup until it has caught up again",
                       qj.queue.name, directory, why)
        if self.ha.status == READY:
            self.ha.set_status(CATCHUP)

    def _drop_receiving(self):
        receiving, self.receiving = self.receiving, {}
        for r in receiving.values():
            r.abort()

    async def statuses_of_others(self):
        """{address: status} of the other brokers of --ha-brokers-url that answer: a backup refuses
        this connection naming its status, a primary takes it."""
        others, url = self._others()
        out = {}
        timeout = max(1.0, min(self.options.link_heartbeat_interval or 10.0, 10.0))

        async def check(address):
            conn = None
            try:
                conn = await connect(address.hostport, timeout=timeout, track=self.broker.outgoing,
                                     **self._connect_options(url))
                await asyncio.wait_for(conn.session(), timeout)     # a refusal closes after the open
            except ClientError as e:
                if e.condition == REDIRECT and isinstance(e.info, dict):
                    status = {str(k): v for k, v in e.info.items()}.get(STATUS_INFO)
                    if status is not None:
                        out[address.hostport] = str(status)
                return
            except (OSError, asyncio.TimeoutError):
                return
            finally:
                if conn is not None:
                    conn.abort()
            out[address.hostport] = "active"
        await asyncio.gather(*(check(a) for a in others))
        return out

    # -- applying the stream ----------------------------------------------------------------------
    def _apply(self, data):
        op, f = decode_op(data)
        if self.ha.status == JOINING:
            self.ha.set_status(CATCHUP)
        handler = getattr(self, "_op_" + op, None)
        if handler is None:
            self.log.warning("HA: unknown stream operation %r ignored", op)
            return None
        self.applied += 1
        return handler(f)

    def _replicated_queue(self, queue):
        return ("queue", queue.name) in self.ha.uuids or self.ha.queue_level(queue) != "none"

    def _op_begin(self, f):
        self._drop_receiving()
        queues = {str(k): str(v) for k, v in (f.get("queues") or {}).items()}
        exchanges = {str(k): str(v) for k, v in (f.get("exchanges") or {}).items()}
        uuids = self.ha.uuids
        for queue in list(self.nodes.queues.values()):
            if queue.name.startswith(STREAM_PREFIX) or not self._replicated_queue(queue):
                continue
            mine = uuids.get(("queue", queue.name))
            if mine is None and queue.name not in queues and not queue.durable:
                continue                # made here (an admin tool's), never replicated
            if queue.msgDepth:
                self.log.log(25, "HA: queue %r: %d message(s) held here replaced by the primary's copy",
                             queue.name, queue.msgDepth)
            if queue.name not in queues or mine != queues[queue.name]:
                self._delete_queue(queue.name)      # gone, recreated, or stale from the store
            else:
                queue.purge()           # its messages come again in this snapshot
        for ex in list(self.nodes.exchanges):
            if ex.name in BUILTIN_EXCHANGES:
                continue
            if ("exchange", ex.name) not in uuids and self.ha.exchange_level(ex) == "none":
                continue
            if ex.name not in exchanges or uuids.get(("exchange", ex.name)) != exchanges[ex.name]:
                self._delete_exchange(ex.name)
        self.ids = {}

    def _delete_queue(self, name):
        queue = self.nodes.queues.get(name)
        if queue is not None:
            queue.purge()
            self.nodes.delete_queue(queue)
        self.ha.uuids.pop(("queue", name), None)
        self.ids.pop(name, None)

    def _delete_exchange(self, name):
        if name in BUILTIN_EXCHANGES:
            return
        if self.nodes.exchanges.get(name) is not None:
            try:
                self.nodes.delete_exchange(name)
            except errors.AmqpError as e:
                self.log.warning("HA: exchange %r not deleted: %s", name, e.description)
        self.ha.uuids.pop(("exchange", name), None)

    def _declare(self, kind, f, existing, delete, declare):
        """A node the primary has: (re)created here unless it exists with the same identity."""
        name, identity = str(f["name"]), str(f["uuid"])
        if existing(name) is not None:
            if self.ha.uuids.get((kind, name)) == identity:
                return name
            delete(name)
        props = dict(f.get("props") or {})
        try:
            declare(name, props)
        except errors.NotFound:         # its alternate exchange is not replicated
            props.pop("alternate-exchange", None)
            declare(name, props)
        self.ha.uuids[(kind, name)] = identity
        return name

    def _op_exchange(self, f):
        self._declare("exchange", f, self.nodes.exchanges.get, self._delete_exchange,
                      self.nodes.declare_exchange)

    def _op_queue(self, f):
        name = self._declare("queue", f, self.nodes.queues.get, self._delete_queue, self.nodes.declare_queue)
        if str(f.get("level")) == "all" and name not in self.ids:
            self.ids[name] = {}

    def _op_qdel(self, f):
        self._delete_queue(str(f["name"]))

    def _op_xdel(self, f):
        self._delete_exchange(str(f["name"]))

    def _binding(self, f):
        return self.nodes.exchanges.get(str(f["exchange"])), self.nodes.queues.get(str(f["queue"]))

    def _op_bind(self, f):
        ex, queue = self._binding(f)
        if ex is not None and queue is not None:
            self.nodes.bind(ex, queue, str(f.get("key") or ""), dict(f.get("args") or {}) or None)

    def _op_unbind(self, f):
        ex, queue = self._binding(f)
        if ex is not None and queue is not None:
            self.nodes.unbind(ex, queue, str(f.get("key") or ""))

    def _refused(self, queue, e):
        self.log.warning("HA: queue %r refused a replicated message: %s", queue.name, e)

    def _op_enqb(self, f):
        """One loop turn's messages queued on the primary (ha_stream's record blob): accepted once
        every one is applied (durable ones: synced). Returns an AllOf to start, or None."""
        queues, ids = self.nodes.queues, self.ids
        targets = []
        for q in f["qs"]:
            name = str(q)
            queue, got = queues.get(name), ids.get(name)
            targets.append((queue, got) if queue is not None and got is not None else None)
        return apply_records(targets, bytes(f["recs"]), self.nodes.store, self._refused)

    def _op_deq(self, f):
        name = str(f["q"])
        ids = self.ids.get(name)
        queue = self.nodes.queues.get(name)
        if ids is None or queue is None:
            return None
        for i in f.get("ids") or ():
            msg = ids.pop(int(i), None)
            if msg is not None:
                queue.remove(msg)
        return None

    def _op_jseg(self, f):
        name = str(f["q"])
        old = self.receiving.pop(name, None)
        if old is not None:
            old.abort()
        self.receiving[name] = JournalReceiver(self, f)

    def _receiver(self, f):
        r = self.receiving.get(str(f["q"]))
        if r is None:
            raise ValueError("HA: journal data for queue %r without its start" % str(f["q"]))
        return r

    def _op_jdata(self, f):
        self._receiver(f).data(f)

    async def _op_jdone(self, f):
        r = self._receiver(f)
        try:
            ids = await r.done(f, self.loop)
        finally:
            self.receiving.pop(r.name, None)
        self.ids[r.name] = ids

    def _op_jabort(self, f):
        r = self.receiving.pop(str(f["q"]), None)
        if r is not None:
            r.abort()

    def _op_end(self, f):
        self.log.log(25, "HA: snapshot from the primary applied (%d operations so far)", self.applied)

    def _op_members(self, f):
        members = [{str(k): v for k, v in m.items()} for m in (f.get("members") or ()) if isinstance(m, dict)]
        self.ha.adopt_members(members)
        if self.journal_fault is not None and self.ha.status == READY:
            name, directory = self.journal_fault
            self.journal_fault = None
            self.log.log(NOTICE, "HA: queue %r: journal %s works again; caught up with the primary",
                         name, directory)


__all__ = ["Backup"]
