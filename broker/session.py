"""The broker's state for one AMQP session: what it owns and the links it has attached.

The protocol (channels, windows, transfer-ids, settlement) is the engine's Session
(cypid.pyx.endpoints, docs/ENGINE.md); this object is its ``context``: the identity an exclusive queue
is owned by, and the links management lists.
"""


class Session:
    """The broker side of one engine Session (``core``)."""

    __slots__ = ("connection", "broker", "core", "channel", "local_handles", "ended", "__weakref__")

    def __init__(self, connection, core):
        self.connection = connection
        self.broker = connection.broker
        self.core = core                 # cypid.pyx.endpoints.Session
        self.channel = core.channel
        self.local_handles = {}          # local handle -> IncomingLink / OutgoingLink (accepted links)
        self.ended = False

    @property
    def outstanding(self):
        """Deliveries sent to consumers on this session and not settled yet."""
        return self.core.outstanding if not self.ended else 0

    def pump(self):
        """The peer's window reopened: let this session's consumers take again."""
        for link in list(self.local_handles.values()):
            if link.is_sender:
                link.pump()

    def end(self):
        """The engine ended the session (its links are gone already): release what it owns."""
        if self.ended:
            return
        self.ended = True
        self.local_handles.clear()
        self.broker.nodes.session_ended(self)

    def __repr__(self):
        return "<Session %d on %s>" % (self.channel, self.connection.address)


__all__ = ["Session"]
