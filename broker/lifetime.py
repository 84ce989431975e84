"""Lifetime policies of nodes made by a link's attach (AMQP 1.0 section 3.5.10-13; qpidd's
NodeProperties maps the four onto its own lifetime policies, amqp10-mapping.md section 4).

A queue or exchange created by an attach (a dynamic terminus, or create-on-demand) whose node
properties carry ``lifetime-policy`` is deleted:

- ``delete-on-close``: when the link that created it (the controlling link) detaches;
- ``delete-on-no-links``: when no link has it as source or target any more (consumers, browsers
  and producers alike);
- ``delete-on-no-messages``: when the controlling link has detached and no message remains on it;
- ``delete-on-no-links-or-messages``: when no link is attached to it and no message remains on it.

An exchange holds no messages: its links are its producers and the receivers subscribed to it
(each through its subscription queue), and "no messages" always holds.

Messages still on a queue deleted this way go to its alternate exchange, if it has one, as on any
deletion; producers still attached stay attached and get `rejected` (amqp:not-found) for what they
send after. Such a queue is auto-delete in management (as in qpidd), but the policy alone decides
when it goes. A queue a policy keeps alive past its links is found again by its name; a link that
attaches to it later counts as one of its links.

A durable node's policy is stored with its configuration (broker/config_store.py, ``lifetimes``)
and governs it again after a restart (``restore``). The link that created it is gone then; the
policy is applied at the next event that applies it (a link on the node detaching, its last message
leaving), as qpidd checks an auto-delete queue only when its users leave: a restart alone deletes
nothing.
"""
from cypid.pyx.queue import Queue

from .errors import AmqpError
from .settings import (LIFETIME_DELETE_IF_EMPTY, LIFETIME_DELETE_IF_UNUSED,
                       LIFETIME_DELETE_IF_UNUSED_AND_EMPTY, LIFETIME_DELETE_ON_CLOSE, ExchangeSettings)

POLICIES = (LIFETIME_DELETE_ON_CLOSE, LIFETIME_DELETE_IF_UNUSED, LIFETIME_DELETE_IF_EMPTY,
            LIFETIME_DELETE_IF_UNUSED_AND_EMPTY)
_EMPTY = (LIFETIME_DELETE_IF_EMPTY, LIFETIME_DELETE_IF_UNUSED_AND_EMPTY)


def _is_queue(node):
    return type(node) is Queue


class Lifetimes:
    """The queues of one broker that a lifetime policy governs (broker/nodes.py holds one)."""

    def __init__(self, nodes):
        self.nodes = nodes
        self.policies = {}      # queue or exchange -> [policy, controlling link or None once it detached]
        self.subscribers = {}   # governed exchange -> {receiver link subscribed to it: None}
        self.subscribed_to = {}     # such a receiver link -> its exchange

    def created(self, node, link, properties):
        """``link``'s attach created ``node`` (a queue or an exchange) from ``properties``."""
        if "lifetime-policy" not in properties:
            return
        is_queue = _is_queue(node)
        # an exchange keeps no settings object: its properties are read again (they were valid)
        settings = node.settings if is_queue else ExchangeSettings.from_properties(properties)
        policy = settings.lifetime_policy
        if policy not in POLICIES:
            return
        self._govern(node, policy, link)
        store = self.nodes.store
        if store is not None and node.durable:
            store.config.set_lifetime("queue" if is_queue else "exchange", node.name, policy)

    def _govern(self, node, policy, link):
        self.policies[node] = [policy, link]
        if policy in _EMPTY and _is_queue(node):
            node.on_empty = self._emptied

    def restore(self, rows):
        """Recovery: the stored policies (kind, name, policy) of the durable nodes made by an
        attach govern them again; their creating links are gone."""
        nodes = self.nodes
        for kind, name, policy in rows:
            node = (nodes.queues if kind == "queue" else nodes.exchanges).get(name)
            if node is not None and policy in POLICIES:
                self._govern(node, policy, None)

    def subscribed(self, ex, link):
        """Receiver ``link`` subscribed to exchange ``ex`` (through its subscription queue)."""
        if ex in self.policies:
            self.subscribers.setdefault(ex, {})[link] = None
            self.subscribed_to[link] = ex

    def governs(self, queue):
        """Whether a lifetime policy (not auto-delete) decides when ``queue`` goes."""
        return queue in self.policies

    def link_gone(self, queue, link):
        """A consumer's or producer's ``link`` on ``queue`` detached."""
        ex = self.subscribed_to.pop(link, None)
        if ex is not None:
            self.subscribers.get(ex, {}).pop(link, None)
            queue = ex          # the link was on the exchange, through its subscription queue
        entry = self.policies.get(queue)
        if entry is None:
            return
        if entry[1] is link:
            entry[1] = None
        self.check(queue)

    def forget(self, node):
        """``node`` (a queue or an exchange) was deleted."""
        if self.policies.pop(node, None) is not None:
            if _is_queue(node):
                node.on_empty = None
            for link in self.subscribers.pop(node, ()):
                self.subscribed_to.pop(link, None)

    def _emptied(self, queue):
        # Called from inside a queue operation: the deletion waits for it to finish.
        self.nodes.loop.call_soon(self.check, queue)

    def check(self, node):
        """Delete ``node`` if its policy says its time has come."""
        entry = self.policies.get(node)
        if entry is None:
            return
        policy, controller = entry
        is_queue = _is_queue(node)
        if is_queue and node.deleted:
            return
        empty = node.msgDepth == 0 if is_queue else True
        if policy == LIFETIME_DELETE_ON_CLOSE:
            due = controller is None
        elif policy == LIFETIME_DELETE_IF_EMPTY:
            due = controller is None and empty
        else:
            linked = node.consumers if is_queue else self.subscribers.get(node)
            due = not linked and not self.nodes.producers.get(node)
            if policy == LIFETIME_DELETE_IF_UNUSED_AND_EMPTY:
                due = due and empty
        if not due:
            return
        self.nodes.log.info("%s %r deleted by its lifetime policy %s", "Queue" if is_queue else "Exchange",
                            node.name, policy)
        if is_queue:
            self.nodes.delete_queue(node, detach_producers=False)
            return
        self.forget(node)
        try:
            self.nodes.delete_exchange(node.name)
        except AmqpError as e:      # gone meanwhile
            self.nodes.log.info("Exchange %r not deleted: %s", node.name, e)
