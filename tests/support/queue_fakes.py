"""Stand-ins for what a queue talks to: messages (broker/message.py's attributes) and consumer links
(broker/links.py's OutgoingLink as the queue sees it)."""


#: labels of messages that cannot carry an ``id`` attribute (cypid.pyx.message.Message), by id()
LABELS = {}


def label(msg):
    """A test's name for a message: ``FakeMessage.id``, or what ``LABELS`` says."""
    if type(msg) is FakeMessage:
        return msg.id
    return LABELS[id(msg)]


class FakeMessage:
    """The attributes and methods the queue uses, without an encoded body."""

    __slots__ = ("id", "size", "priority", "expires", "durable", "props", "delivery_count",
                 "acquired_before", "seq", "body")

    def __init__(self, id, size=100, priority=4, expires=0.0, durable=False, props=None, body=None):
        self.id = id
        self.size = size
        self.priority = priority
        self.expires = expires
        self.durable = durable
        self.props = props or {}
        self.delivery_count = 0
        self.acquired_before = False
        self.seq = 0
        self.body = body

    def application_properties(self):
        return self.props

    def expired(self, now):
        return self.expires != 0.0 and now >= self.expires

    def __repr__(self):
        return "<msg %s>" % (self.id,)


class FakeConsumer:
    """A consumer link: takes messages while it has credit. ``presettled`` ones accept on delivery
    (calling back into the queue from inside ``deliver``, as OutgoingLink does); the others keep what
    they got in ``unsettled`` until the test settles it."""

    def __init__(self, name, browsing=False, presettled=False):
        self.name = name
        self.browsing = browsing
        self.browse_position = 0
        self.presettled = presettled
        self.credit = 0
        self.received = []
        self.unsettled = []

    def can_take(self):
        return self.credit > 0

    def deliver(self, msg, queue):
        self.credit -= 1
        self.received.append(label(msg))
        if self.browsing:
            return
        if self.presettled:
            queue.dequeued(msg)
        else:
            self.unsettled.append(msg)

    def __repr__(self):
        return "<consumer %s>" % self.name
