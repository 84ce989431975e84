"""The broker's nodes: queues and exchanges by name, how link addresses resolve to them (qpidd's
Session::resolve, amqp10-mapping.md section 2), their creation from node properties, and routing.
"""
import time
import uuid

from cypid.pyx.broker_core import Router, limit_outcome
from cypid.pyx.queue import Queue, QueueLimitExceeded

from . import errors, filters
from .errors import AmqpError
from .exchanges import ExchangeRegistry
from .lifetime import Lifetimes
from .sequences import QueueSequences
from .settings import ExchangeSettings, QueueSettings
from .store import Pending

SETTLE_SETTLED, SETTLE_UNSETTLED = 1, 0
# The queue property that makes a queue a subscription queue: the name of the exchange it subscribes
# to (stored with a durable subscription's queue, so that it is found again after a restart).
SUBSCRIPTION_OF = "cypid.subscription-of"


class Nodes(Router):
    """Queues, exchanges and routing (``route(node, msg)`` is Router's, in C for a queue)."""

    def __init__(self, broker):
        self.broker = broker
        self.log = broker.log
        self.loop = broker.loop
        self.queues = {}
        # With a store, "" and amq.* are durable (as qpidd's): durable queues' bindings to them persist.
        self.exchanges = ExchangeRegistry(queue_lookup=self.queues.get, queues=self.queues.values,
                                          store_enabled=broker.options.store_path is not None)
        self.discards_no_route = 0
        self.filtered = 0               # queues with a qpid.filter or no-local (routing looks only then)
        self.store = None               # broker/store.py's Store, once open_store() found a store dir
        self.flow_holds = {}            # flow-stopped queue -> producers' deliveries held until resume
        self._no_store_logged = False
        self._purge_timer = None        # --queue-purge-interval: the next TTL sweep
        self._auto_delete_timers = {}   # queue -> its pending qpid.auto_delete_timeout
        self.producers = {}             # queue or exchange -> {producer link: None} attached to it
        self.owned = {}                 # session -> {queue: None} it owns exclusively (session_ended)
        self.lifetimes = Lifetimes(self)    # queues made by an attach with a lifetime-policy
        self.sequences = QueueSequences()   # queues with qpid.queue_msg_sequence
        # HA on a primary (ha/primary.py): after a producer's message is routed, hold(outcome) adds
        # the holds of the ready backups the queues' enqueue hooks sent it to.
        self.replication = None

    # -- the TTL sweep (--queue-purge-interval) ------------------------------------------------------
    def start_purge_timer(self):
        """Sweep expired messages out of every queue each --queue-purge-interval seconds (0: never),
        so that messages nobody consumes do not sit in memory past their TTL."""
        interval = getattr(self.broker.options, "queue_purge_interval", 0) or 0
        if interval > 0 and self._purge_timer is None:
            self._purge_timer = self.loop.call_later(interval, self._purge_expired, interval)

    def stop_timers(self):
        """The broker stops: no more sweeps nor delayed auto-deletes."""
        if self._purge_timer is not None:
            self._purge_timer.cancel()
            self._purge_timer = None
        for timer in self._auto_delete_timers.values():
            timer.cancel()
        self._auto_delete_timers.clear()

    def _purge_expired(self, interval):
        total = 0
        for queue in list(self.queues.values()):
            if not queue.deleted:
                try:
                    total += queue.purge_expired()
                except Exception:
                    self.log.exception("Purging expired messages from queue %r failed", queue.name)
        if total:
            self.log.debug("Purged %d expired messages", total)
        self._purge_timer = self.loop.call_later(interval, self._purge_expired, interval)

    # -- the store (durable configuration and journals) -------------------------------------------
    def open_store(self):
        """Open the store (unless --no-data-dir without --store-dir) and recover what it holds:
        durable exchanges, queues with their messages, bindings. Blocking: call before listening."""
        path = self.broker.options.store_path
        if path is None or self.store is not None:
            return
        from .store import Store
        self.store = Store(self.broker, path)
        self.store.recover(self)
        self.lifetimes.restore(self.store.config.lifetimes())

    def close_store(self):
        if self.store is not None:
            self.store.close()
            self.store = None

    def _durable_without_store(self, what):
        if not self._no_store_logged:
            self._no_store_logged = True
            self.log.warning("No store (--no-data-dir): durable %s accepted, but nothing will persist", what)

    def released(self, queue, msg):
        """A delivery of ``msg`` went back to ``queue`` counting a failed attempt (the caller has
        called queue.release): a durable message's new delivery count is journalled."""
        if msg.durable and self.store is not None:
            self.store.released(queue, msg)

    # -- declaring and deleting --------------------------------------------------------------------
    def declare_queue(self, name, properties=None, owner=None):
        """(queue, created). An existing queue is returned as it is."""
        queue = self.queues.get(name)
        if queue is not None:
            return queue, False
        try:
            settings = QueueSettings.from_properties(properties or {}, self.broker.options)
        except ValueError as e:
            raise errors.InvalidArgument(str(e)) from None
        enqueue_filter = filters.queue_filter(settings)
        missing_alt = self._missing_alternate("Queue", name, settings.alternate_exchange)
        queue = Queue(name, settings, self.reroute, self._queue_unused)
        queue.enqueue_filter = enqueue_filter
        if filters.screens(queue):
            self.filtered += 1
        if missing_alt:
            queue.alternate_exchange = None
        queue.on_self_destruct = self.delete_queue
        if settings.exclusive and owner is not None:
            queue.exclusive_owner = owner
        if self.store is not None:
            self.store.queue_declared(queue, properties)    # durable or flow-to-disk: a journal
        elif settings.durable:
            self._durable_without_store("queues")
        self.queues[name] = queue
        self.sequences.declared(queue)
        self.broker.acl.queues.created(queue)     # ACL queue quotas: counted for its creator
        self.log.info("Queue %r declared%s", name, " (durable)" if settings.durable else "")
        self.broker.events.queue_declared(queue, owner)
        return queue, True

    def declare_exchange(self, name, properties=None, owner=None):
        ex = self.exchanges.get(name)
        try:
            settings = ExchangeSettings.from_properties(properties or {})
        except ValueError as e:
            raise errors.InvalidArgument(str(e)) from None
        if ex is not None:
            if "exchange-type" in (properties or {}) and settings.type != ex.type:
                raise errors.PreconditionFailed("Exchange of different type already exists")
            return ex, False
        alternate = settings.alternate_exchange
        if self._missing_alternate("Exchange", name, alternate):
            alternate = None
        ex, created = self.exchanges.declare(name, settings.type, settings.durable, settings.auto_delete,
                                             alternate, settings.arguments)
        if created and settings.durable:
            if self.store is not None:
                self.store.exchange_declared(ex, properties)
            else:
                self._durable_without_store("exchanges")
        self.log.info("Exchange %r (%s) declared", name, ex.type)
        if created:
            self.broker.events.exchange_declared(ex, owner)
        return ex, created

    def _missing_alternate(self, kind, name, alternate):
        """True if ``alternate`` names no exchange while the store recovers ``name`` (it was not
        durable): the node comes back without it, with one warning, as qpidd does. Outside recovery
        a missing alternate refuses the declare (NotFound)."""
        if not alternate or alternate in self.exchanges:
            return False
        if self.store is None or self.store.recovering is None:
            raise errors.NotFound("Alternate exchange not found: %s" % alternate)
        self.log.warning("%s %r recovered without its alternate exchange %r: no such exchange "
                         "(it was not durable)", kind, name, alternate)
        return True

    def delete_queue(self, queue, detach_producers=True):
        """Delete ``queue``. ``detach_producers`` False (the broker deletes a queue its users left:
        auto-delete, a lifetime policy): producers stay attached, and what they send gets `rejected`
        with amqp:not-found, as a request-reply server keeps its sender to a client's reply queue."""
        if queue.deleted:
            return
        queue.deleted = True
        self.queues.pop(queue.name, None)
        self.lifetimes.forget(queue)
        self.sequences.deleted(queue)
        self.broker.acl.queues.deleted(queue)     # ACL queue quotas
        if filters.screens(queue):
            self.filtered -= 1
        timer = self._auto_delete_timers.pop(queue, None)
        if timer is not None:
            timer.cancel()
        if queue in self.flow_holds:
            self._flow_resumed(queue)     # its held producers are let go
        if self.store is not None:
            self.store.queue_deleted(queue)     # its config row, bindings and journal
        bound = [ex for ex in self.exchanges if ex.auto_delete and ex.is_bound(queue)]
        self.exchanges.unbind_queue(queue)
        for link in list(queue.consumers):
            link.detach(errors.RESOURCE_DELETED, "Queue %s has been deleted" % queue.name)
        if detach_producers:
            self._detach_producers(queue, "Queue %s has been deleted" % queue.name)
        orphans = queue.drain_all()
        if queue.alternate_exchange:
            for msg in orphans:
                self.reroute(msg, queue.alternate_exchange)
        self.log.info("Queue %r deleted", queue.name)
        self.broker.events.queue_deleted(queue)
        for ex in bound:
            self._exchange_unused(ex)

    def delete_exchange(self, name):
        """Delete exchange ``name`` and its bindings (built-ins: NotAllowed, unknown: NotFound)."""
        ex = self.exchanges.delete(name)
        self.lifetimes.forget(ex)
        self._detach_producers(ex, "Exchange %s has been deleted" % name)
        for queue, key, _ in list(ex.bindings):
            ex.unbind(queue, key)
        if self.store is not None:
            self.store.exchange_deleted(ex)
        self.log.info("Exchange %r deleted", name)
        self.broker.events.exchange_deleted(ex)
        return ex

    def bind(self, ex, queue, key, arguments=None, owner=None):
        """Bind ``queue`` to ``ex``; a binding of a durable queue to a durable exchange is stored.
        Returns False if it existed. ``owner``: who asked (a session), for management events."""
        created = ex.bind(queue, key, arguments)
        if created and self.store is not None:
            self.store.binding_added(ex, queue, key, arguments)
        if created:
            self.broker.events.bound(ex, queue, key, arguments, owner)
            if ex.last_message is not None:
                self._replay_last(ex)
        return created

    def unbind(self, ex, queue, key, owner=None):
        removed = ex.unbind(queue, key)
        if removed and self.store is not None:
            self.store.binding_removed(ex, queue, key)
        if removed:
            self.broker.events.unbound(ex, queue, key, owner)
            if ex.auto_delete:
                self._exchange_unused(ex)
        return removed

    # -- exchange options: qpid.ive, auto-delete (qpidd's Exchange) --------------------------------
    def _replay_last(self, ex):
        """qpid.ive, as qpidd's Exchange::routeIVE: a new binding routes the last message the
        exchange received through the exchange again, so every queue it matches gets it, those
        bound before included (they get it once more, as from qpidd 1.40)."""
        last = ex.last_message
        if last.expires and last.expired(time.monotonic()):
            ex.last_message = None
            return
        self._route_exchange(ex, last.copy())

    def producer_attached(self, node, link):
        """A producer link targets ``node``: it is detached if the node is deleted, and an exchange
        counts its users (auto-delete)."""
        self.producers.setdefault(node, {})[link] = None
        if type(node) is not Queue:
            node.users += 1

    def producer_detached(self, node, link):
        links = self.producers.get(node)
        if links is not None:
            links.pop(link, None)
            if not links:
                del self.producers[node]
        self.lifetimes.link_gone(node, link)
        if type(node) is not Queue:
            node.users -= 1
            if node.auto_delete:
                self._exchange_unused(node)

    def _detach_producers(self, node, description):
        """``node`` is deleted: its producers are detached (amqp:resource-deleted), as its consumers
        are, so that nothing they send later is accepted into nothing."""
        for link in list(self.producers.pop(node, ())):
            link.detach(errors.RESOURCE_DELETED, description)

    def _exchange_unused(self, ex):
        """An auto-delete exchange goes once it has no bindings and no producers, unless it is an
        alternate exchange (qpidd: Exchange::checkAutodelete)."""
        if self.lifetimes.governs(ex):
            return      # its lifetime policy decides (broker/lifetime.py)
        if ex.bindingCount or ex.users > 0 or self.exchanges.get(ex.name) is not ex:
            return
        name = ex.name
        if any(q.alternate_exchange == name for q in self.queues.values()) or \
                any(other.alternate == name for other in self.exchanges):
            return
        self.delete_exchange(name)

    def _queue_unused(self, queue):
        if self.lifetimes.governs(queue):
            return      # its lifetime policy decides (broker/lifetime.py)
        timeout = queue.settings.auto_delete_timeout
        if timeout:
            # The delay counts from the last time the queue became unused: a consumer that came and
            # went meanwhile restarts it (qpidd cancels the task when a consumer arrives).
            timer = self._auto_delete_timers.pop(queue, None)
            if timer is not None:
                timer.cancel()
            self._auto_delete_timers[queue] = self.loop.call_later(timeout, self._delete_if_unused, queue)
        else:
            self._delete_if_unused(queue)

    def _delete_if_unused(self, queue):
        self._auto_delete_timers.pop(queue, None)
        if not queue.deleted and not queue.consumers and queue.auto_delete:
            self.delete_queue(queue, detach_producers=False)

    def _own(self, queue, session):
        """Note ``session`` as ``queue``'s exclusive owner, so that its end need not look at every queue."""
        queue.exclusive_owner = session
        self.owned.setdefault(session, {})[queue] = None

    def session_ended(self, session):
        for queue in self.owned.pop(session, ()):
            if queue.exclusive_owner is session:
                queue.exclusive_owner = None
                if queue.auto_delete and not queue.consumers:
                    self._queue_unused(queue)

    # -- routing (route(node, msg): cypid.pyx.broker_core.Router) ---------------------------------
    def exchange_queues(self, ex, msg, ives=None):
        """The queues ``ex`` (or its alternate) gives ``msg``. ``ives``: a list that takes (IVE
        exchange, its new last message) instead of setting it (a transaction's commit sets it once
        it is decided, broker/transactions.py)."""
        key = msg.subject or ""
        if ex.sequence or ex.ive:
            self._pre_route(ex, msg, ives)
        queues = ex.route(key, msg, msg.size)
        if not queues and ex.alternate:
            alt = self.exchanges.get(ex.alternate)
            if alt is not None:
                if alt.sequence or alt.ive:
                    self._pre_route(alt, msg, ives)
                queues = alt.route(key, msg, msg.size)
        if queues and self.filtered:
            queues = filters.selected(queues, msg, self.broker.publisher)
        return queues

    def _route_exchange(self, ex, msg):
        queues = self.exchange_queues(ex, msg)
        if not queues:
            self.discards_no_route += 1
            return None
        outcome = None
        stamp = self.sequences.stamp if self.sequences.counters else None
        if msg.durable and self.store is not None:
            try:
                outcome = self.store.enqueue_all(queues, msg, stamp)
            except QueueLimitExceeded as e:
                return limit_outcome(e)
        else:
            first = True
            for queue in queues:
                try:
                    m = msg if first and stamp is None else msg.copy()
                    if stamp is not None:
                        stamp(queue, m)
                    queue.enqueue(m)
                except QueueLimitExceeded as e:
                    outcome = limit_outcome(e)   # the other queues still get it
                first = False
        for queue in queues:
            if queue.flow_stopped:
                outcome = self._hold(queue, outcome)
        return outcome

    @staticmethod
    def _pre_route(ex, msg, ives=None):
        """qpidd's Exchange::PreRoute, for every message the exchange receives (routed or not):
        qpid.msg_sequence stamps the exchange's next number (int64, from 1) in the message's
        message-annotations; qpid.ive keeps the message for queues bound later."""
        if ex.sequence:
            ex.sequence_no += 1
            msg.annotate({"qpid.msg_sequence": ex.sequence_no})
        if ex.ive:
            if ives is None:
                ex.last_message = msg.copy()
            else:
                ives.append((ex, msg.copy()))

    # -- producer flow control -------------------------------------------------------------------
    def _hold(self, queue, outcome):
        """The queue is flow-stopped: its producer's accept waits until the queue resumes."""
        if outcome is not None and outcome.__class__ is not Pending:
            return outcome    # refused anyway
        if outcome is None:
            outcome = Pending()
        outcome.count += 1
        outcome.flow = True     # its producer's credit follows it (broker_core.pyx, "Credit follows holds")
        holds = self.flow_holds.get(queue)
        if holds is None:
            holds = self.flow_holds[queue] = []
            queue.on_flow_resume = self._flow_resumed
        holds.append(outcome)
        return outcome

    def _flow_resumed(self, queue):
        for pending in self.flow_holds.pop(queue, ()):
            pending.release()

    def reroute(self, msg, exchange_name):
        ex = self.exchanges.get(exchange_name)
        if ex is None:
            self.log.warning("Alternate exchange %r not found; message dropped", exchange_name)
            return
        msg = msg.copy()
        if msg.expires and msg.expired(time.monotonic()):
            # Expired on its queue: its TTL is spent, so it would expire again at once wherever the
            # alternate exchange puts it. It goes on without one.
            msg.ttl = 0
            msg.expires = 0.0
        self._route_exchange(ex, msg)

    def route_anonymous(self, msg):
        """Anonymous relay: the destination is the message's `to` (queue, then exchange)."""
        node = self.destination(msg)
        if node is not None:
            return self.route(node, msg)

    def destination(self, msg):
        """The node an anonymous relay's ``msg`` goes to (its `to`: a queue, then an exchange), or
        None: then it is counted and logged as dropped."""
        dest = msg.to
        if dest is not None:
            node = self.queues.get(dest)
            if node is None:
                node = self.exchanges.get(dest)
            if node is not None:
                return node
        self.discards_no_route += 1
        self.log.info("Message to unknown address %r dropped", dest)
        return None

    # -- resolving link addresses ----------------------------------------------------------------
    def _lookup(self, link, terminus):
        """Find or create the node a terminus names: (queue or None, exchange or None, name)."""
        caps = terminus.capabilities
        want_queue = "queue" in caps
        want_topic = "topic" in caps
        if want_queue and want_topic:
            want_queue = want_topic = False
        create = terminus.dynamic or "create-on-demand" in caps
        if terminus.dynamic:
            container = link.session.connection.container_id or str(uuid.uuid4())
            name = "%s_%s" % (container, link.name)
        else:
            name = terminus.address
        props = terminus.properties
        ex = self.exchanges.get(name) if (want_topic or not want_queue) else None
        queue = self.queues.get(name) if (want_queue or not want_topic) else None
        if ex is not None and create and want_topic and "exchange-type" in props \
                and str(props["exchange-type"]) != ex.type:
            raise errors.PreconditionFailed("Exchange of different type already exists")
        missing = (queue is None and ex is None) or (want_queue and create and queue is None) or \
            (want_topic and create and ex is None)
        self.broker.acl.resolving(link, name, want_queue, want_topic, missing and create, props)  # ACL
        if missing:
            if not create:
                raise errors.NotFound("Node not found: %s" % name)
            if want_topic:
                ex, created = self.declare_exchange(name, props, owner=link.session)
                if created:
                    self.lifetimes.created(ex, link, props)
            else:
                qprops = dict(props)
                if terminus.dynamic and "auto-delete" not in qprops and not qprops.get("durable"):
                    qprops["auto-delete"] = True
                queue, created = self.declare_queue(name, qprops, owner=link.session)
                if created:
                    self.lifetimes.created(queue, link, props)
        if queue is not None and ex is not None:
            if want_topic:
                queue = None
            else:
                ex = None
        if queue is not None and props.get("exclusive") and queue.exclusive_owner is not link.session:
            if queue.exclusive_owner is not None:
                raise errors.PreconditionFailed("Cannot grant exclusive access to %s" % name)
        if queue is not None and (props.get("exclusive") or queue.exclusive_owner is link.session):
            self._own(queue, link.session)      # also one declare_queue made exclusive to it
        return queue, ex, name

    @staticmethod
    def _capabilities(terminus, queue, ex):
        caps = terminus.capabilities
        out = []
        for cap in ("queue", "topic", "create-on-demand", "durable", "shared",
                    "legacy-amqp-direct-binding", "legacy-amqp-topic-binding"):
            if cap not in caps:
                continue
            if queue is not None:
                ok = cap not in ("topic", "shared") and (cap != "durable" or queue.durable)
            else:
                ok = cap != "queue" and (cap != "durable" or ex.durable) and \
                    (cap != "legacy-amqp-direct-binding" or ex.type == "direct") and \
                    (cap != "legacy-amqp-topic-binding" or ex.type == "topic")
            if ok:
                out.append(cap)
        return out

    def resolve_target(self, link, terminus):
        """The node a producer's link sends to, and the reply terminus. The link must call
        producer_detached(node, link) when it goes."""
        queue, ex, name = self._lookup(link, terminus)
        node = queue if queue is not None else ex
        reply = terminus.encode(address=name, capabilities=self._capabilities(terminus, queue, ex))
        self.producer_attached(node, link)
        return node, reply

    def resolve_source(self, link, terminus):
        """The queue a consumer reads (for an exchange, a private subscription queue), and the reply."""
        queue, ex, name = self._lookup(link, terminus)
        caps = self._capabilities(terminus, queue, ex)
        mode = link.snd_settle_mode
        if queue is not None:
            self.broker.acl.consuming(link, queue)   # ACL
            link.browsing = terminus.distribution_mode == "copy" or queue.settings.browse_only
            if not link.browsing and queue.exclusive_owner is not None \
                    and queue.exclusive_owner is not link.session:
                raise errors.PreconditionFailed("Cannot consume from exclusive queue %s" % name)
            link.presettled = mode == SETTLE_SETTLED
            # A selector and a subject filter are this consumer's own (non-matching messages stay).
            link.selector, applied = filters.queue_consumer_filter(terminus)
            filters.read_from_disk(link.selector, self.store, queue, self.log)
            reply = terminus.encode(address=name, capabilities=caps,
                                    distribution_mode="copy" if link.browsing else "move",
                                    filter=applied or None)
            return queue, reply
        return self._subscribe(link, terminus, ex, name, caps)

    @staticmethod
    def _subscribes(queue, ex, shared):
        """Whether ``queue`` is a (shared or private) subscription queue of exchange ``ex``."""
        settings = queue.settings
        return settings.other.get(SUBSCRIPTION_OF) == ex.name and bool(settings.exclusive) != shared

    def _subscribe(self, link, terminus, ex, name, caps):
        shared = "shared" in terminus.capabilities
        container = link.session.connection.container_id or str(uuid.uuid4())
        qname = link.name if shared else "%s_%s" % (container, link.name)
        durable = terminus.durable != 0
        props = {"durable": durable, "auto-delete": terminus.expiry_policy != "never"}
        if terminus.timeout:
            props["qpid.auto_delete_timeout"] = terminus.timeout
            props["auto-delete"] = True
        if not shared:
            props["exclusive"] = True
        props[SUBSCRIPTION_OF] = ex.name
        selector = filters.selector_entry(terminus)
        if selector is not None:
            filters.parse_selector(selector[2])     # refused before anything is created
            props["qpid.filter"] = selector[2]       # only matching messages enter the queue
        no_local = filters.no_local_entry(terminus)
        if no_local is not None:
            props["no-local"] = True                  # nor messages published on this connection
        existing = self.queues.get(qname)
        if existing is not None and not self._subscribes(existing, ex, shared):
            # Never another's queue: an application queue of that name (durable or not) or another
            # exchange's subscription is not bound, consumed, nor deleted on detach.
            raise errors.PreconditionFailed(
                "Cannot subscribe to %s: queue %s exists and is not %s subscription queue of %s"
                % (ex.name, qname, "a shared" if shared else "this link's", ex.name))
        self.broker.acl.subscribing(link, ex, qname, props, terminus)     # ACL: create, bind, consume
        queue, created = self.declare_queue(qname, props, owner=link.session)
        if not shared and queue.exclusive_owner is not None and queue.exclusive_owner is not link.session:
            raise errors.PreconditionFailed("Cannot consume from exclusive queue %s" % qname)
        if queue.exclusive_owner is link.session:
            self._own(queue, link.session)
        subject, headers, applied = terminus.binding_filters()
        if ex.type == "topic":
            key, args = subject if subject is not None else "#", None
        elif ex.type == "direct":
            key, args = subject if subject is not None else "", None
        elif ex.type == "headers":
            key, args = "", headers if headers is not None else {"x-match": "all"}
        else:
            key, args = "", None
        try:
            self.bind(ex, queue, key, args, owner=link.session)
        except AmqpError:
            if created:
                self.delete_queue(queue)
            raise
        if selector is not None and queue.enqueue_filter is not None \
                and queue.enqueue_filter.text == selector[2]:
            applied = dict(applied)
            applied[selector[0]] = selector[1]
        if no_local is not None and queue.settings.no_local:
            applied = dict(applied)
            applied[no_local[0]] = no_local[1]
        link.delete_on_detach = not shared and not (durable and terminus.expiry_policy == "never")
        self.lifetimes.subscribed(ex, link)
        mode = link.snd_settle_mode
        link.presettled = (mode != SETTLE_UNSETTLED) if not shared else (mode == SETTLE_SETTLED)
        reply = terminus.encode(address=name, capabilities=caps, distribution_mode="copy",
                                filter=applied or None)
        return queue, reply
