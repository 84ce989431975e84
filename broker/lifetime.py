"""Lifetime policies of nodes made by a link's attach (AMQP 1.0 section 3.5.10-13; qpidd's
NodeProperties maps the four onto its own lifetime policies, amqp10-mapping.md section 4).

A queue created by an attach (a dynamic terminus, or create-on-demand) whose node properties carry
``lifetime-policy`` is deleted:

- ``delete-on-close``: when the link that created it (the controlling link) detaches;
- ``delete-on-no-links``: when no link has it as source or target any more (consumers, browsers
  and producers alike);
- ``delete-on-no-messages``: when the controlling link has detached and no message remains on it;
- ``delete-on-no-links-or-messages``: when no link is attached to it and no message remains on it.

Messages still on a queue deleted this way go to its alternate exchange, if it has one, as on any
deletion; producers still attached stay attached and get `rejected` (amqp:not-found) for what they
send after. Such a queue is auto-delete in management (as in qpidd), but the policy alone decides
when it goes. A queue a policy keeps alive past its links is found again by its name; a link that
attaches to it later counts as one of its links.
"""
from .settings import (LIFETIME_DELETE_IF_EMPTY, LIFETIME_DELETE_IF_UNUSED,
                       LIFETIME_DELETE_IF_UNUSED_AND_EMPTY, LIFETIME_DELETE_ON_CLOSE)

POLICIES = (LIFETIME_DELETE_ON_CLOSE, LIFETIME_DELETE_IF_UNUSED, LIFETIME_DELETE_IF_EMPTY,
            LIFETIME_DELETE_IF_UNUSED_AND_EMPTY)
_EMPTY = (LIFETIME_DELETE_IF_EMPTY, LIFETIME_DELETE_IF_UNUSED_AND_EMPTY)


class Lifetimes:
    """The queues of one broker that a lifetime policy governs (broker/nodes.py holds one)."""

    def __init__(self, nodes):
        self.nodes = nodes
        self.policies = {}      # queue -> [policy, controlling link or None once it detached]

    def created(self, queue, link, properties):
        """``link``'s attach created ``queue`` from ``properties`` (node properties)."""
        if "lifetime-policy" not in properties:
            return
        policy = queue.settings.lifetime_policy
        if policy not in POLICIES:
            return
        self.policies[queue] = [policy, link]
        if policy in _EMPTY:
            queue.on_empty = self._emptied

    def governs(self, queue):
        """Whether a lifetime policy (not auto-delete) decides when ``queue`` goes."""
        return queue in self.policies

    def link_gone(self, queue, link):
        """A consumer's or producer's ``link`` on ``queue`` detached."""
        entry = self.policies.get(queue)
        if entry is None:
            return
        if entry[1] is link:
            entry[1] = None
        self.check(queue)

    def forget(self, queue):
        """``queue`` was deleted."""
        if self.policies.pop(queue, None) is not None:
            queue.on_empty = None

    def _emptied(self, queue):
        # Called from inside a queue operation: the deletion waits for it to finish.
        self.nodes.loop.call_soon(self.check, queue)

    def check(self, queue):
        """Delete ``queue`` if its policy says its time has come."""
        entry = self.policies.get(queue)
        if entry is None or queue.deleted:
            return
        policy, controller = entry
        if policy == LIFETIME_DELETE_ON_CLOSE:
            due = controller is None
        elif policy == LIFETIME_DELETE_IF_EMPTY:
            due = controller is None and queue.msgDepth == 0
        else:
            due = not queue.consumers and not self.nodes.producers.get(queue)
            if policy == LIFETIME_DELETE_IF_UNUSED_AND_EMPTY:
                due = due and queue.msgDepth == 0
        if due:
            self.nodes.log.info("Queue %r deleted by its lifetime policy %s", queue.name, policy)
            self.nodes.delete_queue(queue, detach_producers=False)
