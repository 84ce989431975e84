"""Consumer filters: what a source's filter map asks of the messages a link gets.

qpidd's mapping (amqp10-mapping.md 6.1-6.3): on a queue source, a selector
(``apache.org:selector-filter:string``) and a subject filter (legacy direct/topic binding filter, or
an undescribed string) become the consumer's own filter: messages it does not match stay on the
queue for other consumers. On an exchange source the selector becomes the subscription queue's
``qpid.filter`` (only matching messages enter it), and a no-local filter its ``no-local`` (messages
published on the subscriber's own connection do not enter); the subject filter is the binding key. Only the
first selector and the first subject filter count; the reply echoes exactly the entries applied.
Selectors are parsed once per link (cypid.pyx.selector); a malformed one refuses the link with
``amqp:invalid-field`` naming the fault and its position.
"""
from cypid.pyx.selector import Selector, SelectorError

from . import errors
from .exchanges import topic_match
from .terminus import NO_LOCAL_FILTER, SELECTOR_FILTER


def selector_entry(terminus):
    """(key, value, text) of the first selector filter in the source's filter map, or None."""
    for key, value in terminus.filter.items():
        if getattr(value, "descriptor", None) in SELECTOR_FILTER:
            text = getattr(value, "value", None)
            if not isinstance(text, str):
                raise errors.InvalidField("selector filter %r: the value must be a string, not %s"
                                          % (str(key), type(text).__name__))
            return key, value, str(text)
    return None


def parse_selector(text, subject_test=None):
    """A Selector for ``text``; a malformed one raises InvalidField naming the fault and position."""
    try:
        return Selector(text, subject_test)
    except SelectorError as e:
        raise errors.InvalidField("invalid selector %r: %s" % (text, e)) from None


def subject_test(pattern):
    """qpidd's per-consumer subject filter: the subject equals the pattern or matches it as a topic
    pattern (``*`` one word, ``#`` zero or more)."""
    def test(subject):
        return subject == pattern or topic_match(pattern, subject)
    return test


def queue_consumer_filter(terminus):
    """(Selector or None, {key: value} applied) for a consumer on a queue."""
    subject, _, applied = terminus.binding_filters()
    applied = {k: v for k, v in applied.items() if getattr(v, "descriptor", None) is None
               or isinstance(getattr(v, "value", None), str)}   # a headers map is no subject filter
    entry = selector_entry(terminus)
    if entry is None and subject is None:
        return None, {}
    text = entry[2] if entry is not None else ""
    selector = parse_selector(text, subject_test(subject) if subject is not None else None)
    if entry is not None:
        applied[entry[0]] = entry[1]
    return selector, applied


def queue_filter(settings):
    """The Selector of a queue's ``qpid.filter`` argument, or None; a malformed one raises
    InvalidArgument naming the argument."""
    text = getattr(settings, "filter", None)
    if text is None:
        return None
    try:
        return Selector(text)
    except SelectorError as e:
        raise errors.InvalidArgument("qpid.filter %r: %s" % (text, e)) from None


def no_local_entry(terminus):
    """(key, value) of the first no-local filter in the source's filter map, or None."""
    for key, value in terminus.filter.items():
        if getattr(value, "descriptor", None) in NO_LOCAL_FILTER:
            return key, value
    return None


def screens(queue):
    """Whether ``queue`` looks at messages before taking them (qpid.filter or no-local)."""
    return queue.enqueue_filter is not None or bool(queue.settings.no_local)


def admits(queue, msg, publisher):
    """Whether ``queue`` takes ``msg``: its qpid.filter matches it, and with no-local (qpidd's
    Queue::isLocal) it was not published on the connection of the session owning the queue."""
    f = queue.enqueue_filter
    if f is not None and not f.matches(msg):
        return False
    if queue.settings.no_local and publisher is not None:
        owner = queue.exclusive_owner
        if owner is not None and getattr(owner, "connection", None) is publisher:
            return False
    return True


def selected(queues, msg, publisher):
    """The queues of ``queues`` that admit ``msg``."""
    return [q for q in queues if admits(q, msg, publisher)]


def read_from_disk(selector, store, queue, log):
    """Let ``selector`` (a consumer's on ``queue``) see the messages whose bodies are on disk only
    (recovered from the journal and not read back yet, or flowed to disk): it reads each back when
    it looks at it. A read that fails leaves the message's properties NULL (it stays for the
    others) with one error line per consumer."""
    if selector is None or store is None:
        return
    failed = []

    def load(msg):
        qj = store.journals.get(queue)
        rid = qj.rids.get(msg) if qj is not None else None
        if rid is None:
            return
        try:
            store.read_back(qj, msg, rid)
        except Exception as e:
            if not failed:
                failed.append(e)
                log.error("Selector on queue %r could not read a message back from its journal "
                          "(its properties read as NULL): %s", queue.name, e)
    selector.loader = load


def refuse_here(link, queue, msg):
    """``modified`` with undeliverable-here: ``msg`` is never offered to ``link`` again (it stays on
    ``queue`` for the other consumers). The link's selector (an always-true one if it had none)
    keeps the refused positions; those of messages gone from the queue are dropped as the set grows
    past twice the queue's depth, so a consumer that refuses everything holds no more than that."""
    selector = link.selector
    if selector is None:
        selector = link.selector = Selector("")
    selector.refuse(msg.seq)
    if len(selector.refused) > 64 + 2 * queue.msgDepth:
        present = {m.seq for m in queue.all_messages()}
        selector.forget(present.__contains__)
