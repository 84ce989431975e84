"""qpid-printevents: print a line per QMF event from one or more brokers, reconnecting when a
broker goes away and comes back (qpidd's tool in Python 3, on cypid.tools.qmf)."""
from __future__ import annotations

import sys
import threading
import time
import uuid
from typing import Callable

from . import qmf
from .common import QuietParser, add_connection_options, parse_command_line

USAGE = "Usage: qpid-printevents [options] [broker-addr]...\n"

HELP = USAGE + """
Collect and print events from one or more Qpid message brokers.  If no broker-
addr is supplied, qpid-printevents will connect to 'localhost:5672'. broker-
addr is of the form:  [username/password@] hostname | ip-address [:<port>] ex:
localhost, 10.1.1.7:10000, broker-host:10000, guest/guest@localhost

Options:
  -h, --help            show this help message and exit
  --heartbeats          Use heartbeats.
  --sasl-mechanism=<mech>
                        SASL mechanism for authentication (e.g. EXTERNAL,
                        ANONYMOUS, PLAIN, CRAM-MD5, DIGEST-MD5, GSSAPI). SASL
                        automatically picks the most secure available
                        mechanism - use this option to override.
  --sasl-service-name=<name>
                        SASL service name to use
  --ssl-certificate=<cert>
                        Client SSL certificate (PEM Format)
  --ssl-key=<key>       Client SSL private key (PEM Format)
  --ha-admin            Allow connection to a HA backup broker.
"""

RETRY_INTERVAL = 1.0


def time_long(ns: int | None = None) -> str:
    seconds = time.time() if ns is None else ns / 1e9
    return time.strftime("%c", time.gmtime(seconds))


def value_text(value) -> str:
    """A value as qpidd's tool prints it (Python's str: True, {}, text without quotes)."""
    if isinstance(value, (bytes, bytearray)):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            return repr(bytes(value))
    if isinstance(value, uuid.UUID):
        return str(value)
    return str(value)


def event_line(event: qmf.QmfEvent) -> str:
    text = "%s %s:%s" % (time_long(event.timestamp), event.package, event.name)
    return text + "".join(" %s=%s" % (k, value_text(v)) for k, v in event.values.items())


def notice(what: str, broker: str) -> str:
    return "%s NOTIC qpid-printevents:%s broker=%s" % (time_long(), what, broker)


class Watcher(threading.Thread):
    """Follows one broker: connect, print its events, and after a failure retry every second."""

    def __init__(self, address: str, emit: Callable[[str], None], conn_opts: dict,
                 stop: threading.Event, retry_interval: float = RETRY_INTERVAL):
        super().__init__(name="events-%s" % address, daemon=True)
        self.address = address
        self.emit = emit
        self.conn_opts = conn_opts
        self.stop_event = stop
        self.retry_interval = retry_interval

    def run(self) -> None:
        url = qmf.BrokerURL(self.address)
        while not self.stop_event.is_set():
            connected = False
            conn = None
            try:
                conn, receiver = qmf.events(url, timeout=10, **self.conn_opts)
                connected = True
                self.emit(notice("brokerConnected", self.address))
                while not self.stop_event.is_set():
                    message = conn.receive_on(receiver, 1.0)
                    if message is None:
                        continue
                    for event in qmf.parse_events(message)[:1]:
                        self.emit(event_line(event))
            except (qmf.ConnectError, qmf.QmfTimeout, OSError):
                pass
            except Exception as e:  # pragma: no cover - keep following the broker whatever happened
                self.emit("%s qpid-printevents: %s: %s" % (time_long(), e.__class__.__name__, e))
            finally:
                if conn is not None:
                    conn.close()
            if connected and not self.stop_event.is_set():
                self.emit(notice("brokerDisconnected", self.address))
            self.stop_event.wait(self.retry_interval)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    qmf.PROGRAM = "qpid-printevents"
    p = QuietParser(prog="qpid-printevents", add_help=False, allow_abbrev=False)
    p.add_argument("-h", "--help", action="store_true")
    p.add_argument("--heartbeats", action="store_true")
    add_connection_options(p)
    p.add_argument("brokers", nargs="*")
    opts, conn_opts, status = parse_command_line(p, argv, help_text=HELP, usage_text=USAGE + "\n", usage_status=2,
                                                 check=lambda opts: [qmf.BrokerURL(b) for b in opts.brokers])
    if status is not None:
        return status
    brokers = opts.brokers or ["localhost:5672"]
    if opts.heartbeats:
        conn_opts["heartbeat"] = 5
    lock = threading.Lock()

    def emit(line: str) -> None:
        with lock:
            try:
                sys.stdout.write(line + "\n")
                sys.stdout.flush()
            except BrokenPipeError:  # pragma: no cover - reader went away
                stop.set()

    stop = threading.Event()
    watchers = [Watcher(b, emit, conn_opts, stop) for b in brokers]
    for w in watchers:
        w.start()
    try:
        while any(w.is_alive() for w in watchers):
            stop.wait(0.5)
            if stop.is_set():
                break
    except KeyboardInterrupt:
        pass
    stop.set()
    for w in watchers:
        w.join(3)
    return 0


if __name__ == "__main__":
    sys.exit(main())
