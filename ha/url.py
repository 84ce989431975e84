"""qpidd's broker URL grammar (--ha-brokers-url, --ha-public-url, habroker.setBrokersUrl/replicate):

    url  = ["amqp:"] [user ["/" | ":" password] "@"] addr ("," addr)*
    addr = [tag ":"] host [":" port]        tag: tcp (default), ssl, rdma
    host = "[" ipv6 "]" | 1*(ALNUM | "-" | "." | "_" | "~" | %XX)

``parse_url(text) -> Url``; a malformed URL raises ``UrlError`` (a ValueError) naming the part at fault.
``str(Url)`` is qpidd's printed form: ``amqp:[user[/pass]@]tcp:host:port,tcp:host2:port``.
"""
import re

DEFAULT_PORT = 5672
TAGS = ("tcp", "ssl", "rdma")
_HOST = re.compile(r"^(?:\[[0-9A-Fa-f:.]+\]|(?:[A-Za-z0-9\-._~]|%[0-9A-Fa-f]{2})+)$")


class UrlError(ValueError):
    pass


class Address:
    __slots__ = ("protocol", "host", "port")

    def __init__(self, protocol, host, port):
        self.protocol, self.host, self.port = protocol, host, port

    def __str__(self):
        return "%s:%s:%d" % (self.protocol, self.host, self.port)

    def __eq__(self, other):
        return isinstance(other, Address) and (self.protocol, self.host, self.port) == \
            (other.protocol, other.host, other.port)

    def __hash__(self):
        return hash((self.protocol, self.host, self.port))

    def __repr__(self):
        return "Address(%s)" % self

    @property
    def hostport(self):
        return "%s:%d" % (self.host, self.port)


class Url:
    __slots__ = ("user", "password", "addresses")

    def __init__(self, addresses, user=None, password=None):
        self.addresses, self.user, self.password = list(addresses), user, password

    def __str__(self):
        if not self.addresses:
            return ""
        cred = ""
        if self.user:
            cred = self.user + ("/" + self.password if self.password else "") + "@"
        return "amqp:" + cred + ",".join(str(a) for a in self.addresses)

    def __len__(self):
        return len(self.addresses)

    def __iter__(self):
        return iter(self.addresses)


def _address(text, whole):
    tag = "tcp"
    head, sep, rest = text.partition(":")
    if sep and head in TAGS:
        tag, text = head, rest
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise UrlError("Invalid URL: %s (unclosed '[' in %r)" % (whole, text))
        host, rest = text[:end + 1], text[end + 1:]
        port = rest[1:] if rest.startswith(":") else None
        if rest and not rest.startswith(":"):
            raise UrlError("Invalid URL: %s (bad address %r)" % (whole, text))
    else:
        host, sep, port = text.partition(":")
        if not sep:
            port = None
    if not host or not _HOST.match(host):
        raise UrlError("Invalid URL: %s (bad host %r)" % (whole, host))
    if port is None or port == "":
        if port == "":
            raise UrlError("Invalid URL: %s (empty port in %r)" % (whole, text))
        number = DEFAULT_PORT
    else:
        if not port.isdigit() or not 0 < int(port) < 65536:
            raise UrlError("Invalid URL: %s (bad port %r)" % (whole, port))
        number = int(port)
    return Address(tag, host, number)


def parse_url(text):
    whole = text
    text = text.strip()
    if not text:
        return Url([])
    if text.startswith("amqp:") and not text.startswith("amqp://"):
        text = text[5:]
    elif text.startswith("amqp://"):
        text = text[7:]
    user = password = None
    if "@" in text:
        cred, text = text.rsplit("@", 1)
        if "/" in cred:
            user, password = cred.split("/", 1)
        elif ":" in cred:
            user, password = cred.split(":", 1)
        else:
            user = cred
        if not user:
            raise UrlError("Invalid URL: %s (empty user name)" % whole)
    addresses = [_address(part.strip(), whole) for part in text.split(",")]
    return Url(addresses, user, password or None)


__all__ = ["parse_url", "Url", "Address", "UrlError", "DEFAULT_PORT"]
