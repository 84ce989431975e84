"""Errors the client raises: every one carries the AMQP condition and description the peer gave."""
from cypid.pyx import amqp


class ClientError(Exception):
    """Base of the client's errors. ``condition`` is the AMQP error condition (a str, or None)."""

    def __init__(self, description="", condition=None, info=None):
        super().__init__(f"{condition}: {description}" if condition else description)
        self.condition = condition
        self.description = description
        self.info = info


class ConnectionClosed(ClientError):
    """The connection is gone: closed by the peer (with its error, if any), lost, or closed here."""


class AuthenticationError(ConnectionClosed):
    """SASL failed: no mechanism in common, or the peer refused the credentials."""


class SessionEnded(ClientError):
    """The session was ended (by the peer, with its error, or here)."""


class LinkDetached(ClientError):
    """The link was detached: an attach refused by the peer (``amqp:not-found`` ...), or closed later."""


class DeliveryFailed(ClientError):
    """Deliveries came back rejected, released or modified. ``counts`` maps outcome -> number."""

    def __init__(self, description="", condition=None, info=None, counts=None):
        super().__init__(description, condition, info)
        self.counts = dict(counts or {})


def error_from(value):
    """(condition, description, info) from an AMQP error composite (a described list), or Nones."""
    return amqp.error_from(value) or (None, "", None)


__all__ = ["ClientError", "ConnectionClosed", "AuthenticationError", "SessionEnded", "LinkDetached",
           "DeliveryFailed", "error_from"]
