"""Options shared by the perf tools: qpidd's connection options (TestOptions/ConnectionOptions) and
value parsers. ``-b/--broker`` takes ``host``, ``host:port`` or ``amqp://[user:pass@]host:port``; a port
given there wins over ``-p/--port``."""
import argparse
import re

from cypid.client.connection import parse_url

YES = ("yes", "true", "1", "on", "y")
NO = ("no", "false", "0", "off", "n")


def yes_no(text):
    """qpidd's boolean option values: yes/no, true/false, 1/0."""
    value = str(text).strip().lower()
    if value in YES:
        return True
    if value in NO:
        return False
    raise argparse.ArgumentTypeError("expected yes or no, not %r" % text)


def positive_int(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1, not %s" % text)
    return value


def non_negative_int(text):
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must not be negative, not %s" % text)
    return value


def add_connection_options(parser):
    g = parser.add_argument_group("connection options")
    g.add_argument("-b", "--broker", default="localhost", metavar="HOST[:PORT]",
                   help="broker to connect to (default localhost)")
    g.add_argument("-p", "--port", type=int, default=5672, help="port (default 5672; a port in -b wins)")
    g.add_argument("-P", "--protocol", default="tcp", choices=["tcp"], help="transport (tcp)")
    g.add_argument("-v", "--virtualhost", default=None, help="virtual host (sent as the open hostname)")
    g.add_argument("--username", default=None, help="SASL PLAIN user (default: ANONYMOUS)")
    g.add_argument("--password", default=None)
    g.add_argument("--mechanism", default=None, help="SASL mechanism (ANONYMOUS or PLAIN)")
    g.add_argument("--heartbeat", type=non_negative_int, default=0, metavar="SECS",
                   help="idle time-out: heartbeats every SECS/2 (0: none)")
    g.add_argument("--max-frame-size", type=positive_int, default=65536, metavar="N")
    g.add_argument("--max-channels", type=positive_int, default=32767, metavar="N")
    g.add_argument("--tcp-nodelay", action="store_true", help="accepted; TCP_NODELAY is always set")
    for name in ("--locale", "--service", "--min-ssf", "--max-ssf", "--bounds-multiplier", "--log-enable",
                 "--log-to-stderr", "--log-to-file"):
        g.add_argument(name, default=None, help=argparse.SUPPRESS)
    return g


def broker_url(args, broker=None):
    """``host:port`` for ``broker`` (default args.broker), the port taken from args.port unless given."""
    text = broker if broker is not None else args.broker
    host, port, _, _ = parse_url(text)
    hostpart = text.split("://")[-1].split("/")[0].split("@")[-1]
    if not re.search(r"(^|[^:]):\d+$", hostpart):
        port = args.port
    if host == "localhost":
        host = "127.0.0.1"
    return ("[%s]:%d" if ":" in host else "%s:%d") % (host, port)


def connect_options(args):
    """Keyword arguments for ``client.connect`` from the connection options."""
    _, _, user, password = parse_url(args.broker)
    return dict(
        username=args.username or user, password=args.password or password, mechanism=args.mechanism,
        idle_timeout=args.heartbeat or None, max_frame_size=args.max_frame_size,
        channel_max=min(args.max_channels, 65535), hostname=args.virtualhost,
    )


def g(value):
    """A double as C++'s ostream prints it by default (6 significant digits)."""
    return "%g" % value
