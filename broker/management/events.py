"""The observer interface the engine calls when configuration changes, and the management agent's
implementation of it (qpidd's QMF events on qmf.default.topic).

The engine holds ``broker.events`` and calls it on declare / delete / bind / unbind / attach / detach
and connection open / close -- never per message. ``BrokerEvents`` does nothing (management off);
``AgentEvents`` records what the agent needs (creation times, counters of deleted queues) and raises
the QMF event when someone listens on qmf.default.topic.

``context`` arguments say who did it: a Session, a Link or a Connection (anything with
``.connection`` / ``.session`` leading to one with ``.address`` and ``.user``), or None (the broker
itself, or a QMF method: then the agent supplies the requester).
"""


class BrokerEvents:
    """No-op observer: the interface. Engine code calls these; none may raise."""

    def connection_opened(self, conn):
        """An AMQP connection completed its open."""

    def connection_closed(self, conn):
        """A connection went away (called for every connection, opened or not)."""

    def queue_declared(self, queue, context=None):
        """A queue was created."""

    def queue_deleted(self, queue, context=None):
        """A queue was deleted (explicitly, or auto-deleted)."""

    def exchange_declared(self, exchange, context=None):
        """An exchange was created."""

    def exchange_deleted(self, exchange, context=None):
        """An exchange was deleted."""

    def bound(self, exchange, queue, key, arguments=None, context=None):
        """A new binding (not called when the binding existed already)."""

    def unbound(self, exchange, queue, key, context=None):
        """A binding was removed explicitly (not when its queue or exchange went)."""

    def subscribed(self, link):
        """A consumer link attached to a queue (link.queue, link.name, link.session)."""

    def unsubscribed(self, link):
        """That consumer link went."""


NO_EVENTS = BrokerEvents()


def who(context):
    """(rhost, user) for an event: the connection address (qpidd form ``qpid.<addr>``) and user."""
    seen = 0
    while context is not None and seen < 4:
        seen += 1
        if hasattr(context, "address") and hasattr(context, "user"):
            address = context.address
            if getattr(context, "is_request", False):
                return address or "", context.user or ""
            return "qpid." + str(address), str(context.user or "")
        nxt = getattr(context, "connection", None)
        if nxt is None:
            nxt = getattr(context, "session", None)
        context = nxt
    return "", ""


def _queue_args(queue):
    settings = getattr(queue, "settings", None)
    if settings is not None and hasattr(settings, "as_arguments"):
        return settings.as_arguments()
    return {}


class AgentEvents(BrokerEvents):
    def __init__(self, agent):
        self.agent = agent

    def _ctx(self, context):
        return context if context is not None else self.agent.current_context

    def connection_opened(self, conn):
        self.agent.note_open(conn)
        rhost, user = who(conn)
        self.agent.raise_event("clientConnect", rhost=rhost, user=user,
                               properties=getattr(conn, "remote_properties", None) or {})

    def connection_closed(self, conn):
        if not self.agent.note_closed(conn):
            return
        rhost, user = who(conn)
        self.agent.raise_event("clientDisconnect", rhost=rhost, user=user,
                               properties=getattr(conn, "remote_properties", None) or {})

    def queue_declared(self, queue, context=None):
        rhost, user = who(self._ctx(context))
        self.agent.note_created(queue)
        self.agent.adopt_queue(queue)
        self.agent.creators[queue.name] = user
        settings = getattr(queue, "settings", None)
        excl = bool(getattr(settings, "exclusive", False)) or queue.exclusive_owner is not None
        self.agent.raise_event("queueDeclare", rhost=rhost, user=user, qName=queue.name,
                               durable=queue.durable, excl=excl, autoDel=queue.auto_delete,
                               altEx=queue.alternate_exchange or "", args=_queue_args(queue),
                               disp="created")

    def queue_deleted(self, queue, context=None):
        rhost, user = who(self._ctx(context))
        self.agent.retire_queue(queue)
        self.agent.raise_event("queueDelete", rhost=rhost, user=user, qName=queue.name)

    def exchange_declared(self, exchange, context=None):
        rhost, user = who(self._ctx(context))
        self.agent.note_created(exchange)
        self.agent.raise_event("exchangeDeclare", rhost=rhost, user=user, exName=exchange.name,
                               exType=exchange.type, altEx=exchange.alternate or "",
                               durable=exchange.durable, autoDel=exchange.auto_delete,
                               args=dict(exchange.arguments), disp="created")

    def exchange_deleted(self, exchange, context=None):
        rhost, user = who(self._ctx(context))
        self.agent.forget(exchange)
        self.agent.raise_event("exchangeDelete", rhost=rhost, user=user, exName=exchange.name)

    def bound(self, exchange, queue, key, arguments=None, context=None):
        rhost, user = who(self._ctx(context))
        self.agent.note_created((id(exchange), id(queue), key or ""))
        self.agent.raise_event("bind", rhost=rhost, user=user, exName=exchange.name, qName=queue.name,
                               key=key or "", args=dict(arguments or {}))

    def unbound(self, exchange, queue, key, context=None):
        rhost, user = who(self._ctx(context))
        self.agent.forget((id(exchange), id(queue), key or ""))
        self.agent.raise_event("unbind", rhost=rhost, user=user, exName=exchange.name, qName=queue.name,
                               key=key or "")

    def subscribed(self, link):
        rhost, user = who(link)
        self.agent.note_created(link)
        queue = link.queue
        self.agent.raise_event("subscribe", rhost=rhost, user=user, qName=queue.name, dest=str(link.name),
                               excl=queue.exclusive_owner is link.session, args={})

    def unsubscribed(self, link):
        rhost, user = who(link)
        self.agent.forget(link)
        self.agent.raise_event("unsubscribe", rhost=rhost, user=user, dest=str(link.name))


__all__ = ["BrokerEvents", "AgentEvents", "NO_EVENTS", "who"]
