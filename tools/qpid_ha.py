"""qpid-ha: look at and drive a broker's active-passive HA (qpidd's tool, in Python 3).

It talks QMF (cypid.tools.qmf) to the object ``org.apache.qpid.ha:habroker:ha-broker`` over a
connection that carries the client property ``qpid.ha-admin`` (a backup refuses every other client),
so it drives a stock qpidd's HA module as well as cypid's. Commands, options, output and exit status
are qpidd's (1.36, see ../shared/reference/tools.md section 5):

    qpid-ha ping                     connect and open a session (no QMF)
    qpid-ha status [--expect S] [--is-primary] [--all]
    qpid-ha query [--all]
    qpid-ha replicate <remote-broker> <queue>
    qpid-ha --cluster-manager promote

Exit status: 0 on success; 1 when ``--expect``/``--is-primary`` does not hold, and 1 on any error,
printed as ``<ExceptionType>: <message>``. ``replicate`` takes the remote broker first, as qpidd's
qpid-ha does (it sends its first argument as the method's ``broker`` and its second as ``queue``, and
qpidd's own tests call it so), although qpidd's usage line names them the other way round; the usage
line here says what the command does.
"""
from __future__ import annotations

import argparse
import copy
import math
import os
import re
import sys
from typing import Callable

from . import qmf
from .common import QuietParser, UsageError, error_text

HA_BROKER = "org.apache.qpid.ha:habroker:ha-broker"
HA_PACKAGE = "org.apache.qpid.ha"
DEFAULT_BROKER = "0.0.0.0"
DEFAULT_TIMEOUT = 10.0
PROG = "qpid-ha"
#: states in which a broker is the primary
PRIMARY_STATES = ("active", "recovering")
MANAGER_ONLY = ("'{0}' should only be called by the cluster manager.\n"
                "Incorrect use of '{0}' will cause cluster malfunction.\n"
                "To call from a cluster manager use '{0} --cluster-manager'. ")
HELP_WORDS = ("help", "--help", "-help", "-h", "help-all", "--help-all")


class ExitStatus(Exception):
    """A command's answer is its exit status (``--expect``, ``--is-primary``)."""

    def __init__(self, status: int):
        super().__init__(status)
        self.status = status


# -- qpidd.conf defaults ------------------------------------------------------------------------

def read_qpidd_conf(path: str, env: dict | None = None) -> dict[str, str]:
    """``name=value`` lines of a qpidd.conf (``#`` comments), then ``QPID_*`` environment variables
    over them (``QPID_HA_USERNAME`` -> ``ha-username``), as qpidd reads its own settings."""
    values: dict[str, str] = {}
    with open(path) as f:
        for line in f:
            text = line.split("#", 1)[0].strip()
            if "=" in text:
                key, value = (part.strip() for part in text.split("=", 1))
                values[key] = value
    for key, value in (os.environ if env is None else env).items():
        if key.startswith("QPID_"):
            values[key[5:].lower().replace("_", "-")] = value
    return values


def installed_qpidd_conf() -> str | None:
    """``<prefix>/etc/qpid/qpidd.conf`` beside this installation, if there is one."""
    path = os.path.join(sys.prefix, "etc", "qpid", "qpidd.conf")
    return path if os.path.isfile(path) else None


def parse_seconds(text: str) -> float:
    """A qpidd duration (``5``, ``0.5``, ``5s``, ``500ms``, ``10us``, ``10ns``) in seconds."""
    from cypid.broker.options import parse_duration
    return parse_duration(text)


# -- connections ---------------------------------------------------------------------------------

class Target:
    """Where one command connects: the address and the options that go with it."""

    def __init__(self, opts):
        broker = opts.broker
        config = opts.config
        if not broker:
            broker = DEFAULT_BROKER
            config = config or installed_qpidd_conf()   # a local broker: its own settings
        url = qmf.BrokerURL(broker)
        self.mechanism = opts.sasl_mechanism
        self.timeout = opts.timeout
        if config:
            conf = read_qpidd_conf(config)
            url.user = url.user or conf.get("ha-username") or None
            url.password = url.password or conf.get("ha-password") or None
            if "port" in conf and not re.search(r":[0-9]+$", broker):
                url.port = int(conf["port"])
            self.mechanism = self.mechanism or conf.get("ha-mechanism") or None
            if self.timeout is None:
                beat = conf.get("ha-heartbeat-interval") or conf.get("link-heartbeat-interval")
                if beat:
                    self.timeout = parse_seconds(beat)
        if self.timeout is None:
            self.timeout = DEFAULT_TIMEOUT
        self.url = url
        self.opts = opts

    def with_address(self, address: str) -> Target:
        """The same options toward another broker (``status --all``): the user and password of
        ``-b`` go along unless ``address`` names its own."""
        other = copy.copy(self)
        url = qmf.BrokerURL(address)
        if not url.user:
            url.user, url.password = self.url.user, self.url.password
        other.url = url
        return other

    def connection_options(self) -> dict:
        opts = self.opts
        if opts.ssl_key and not opts.ssl_certificate:
            raise UsageError("missing '--ssl-certificate' (required by '--ssl-key')")
        options = {"sasl_mechanisms": self.mechanism, "sasl_service": opts.sasl_service_name,
                   "ssl_certificate": opts.ssl_certificate, "ssl_key": opts.ssl_key, "ha_admin": True}
        if self.timeout:
            options["heartbeat"] = int(math.ceil(self.timeout / 2))
        return options

    def connect(self) -> qmf.Connection:
        return qmf.Connection(self.url, timeout=self.timeout or None, **self.connection_options())

    def agent(self) -> qmf.BrokerAgent:
        return qmf.connect(self.url, timeout=self.timeout or None, **self.connection_options())


def ha_broker(agent: qmf.BrokerAgent, address) -> qmf.QmfObject:
    found = agent.query(class_name="habroker", package=HA_PACKAGE)
    if not found:
        raise Exception("HA module is not loaded on broker at %s" % address)
    return found[0]


def cluster_addresses(brokers_url: str) -> list[str]:
    """The addresses in an HA brokers URL (``amqp:tcp:h1:p1,tcp:h2:p2`` -> ``h1:p1``, ``h2:p2``)."""
    text = re.sub(r"^amqps?:|tcp:", "", brokers_url or "")
    return [part.strip() for part in text.split(",") if part.strip()]


# -- commands ------------------------------------------------------------------------------------

class Command:
    """One command: its name, help, positional argument names and options."""

    def __init__(self, name: str, help: str, args: tuple[str, ...] = (), manager: bool = False,
                 agent: bool = True, options: Callable | None = None):
        self.name = name
        self.help = ("[Cluster manager only] " + help) if manager else help
        self.args = args
        self.manager = manager
        self.needs_agent = agent
        self.parser = QuietParser(prog=PROG, add_help=False,
                                  usage="%s %s [options] %s" % (PROG, name, " ".join(args)),
                                  description=self.help)
        self.parser.add_argument("-h", "--help", action="store_true", help="show this help message and exit")
        self.parser.add_argument("words", nargs="*", help=argparse.SUPPRESS)
        if options:
            options(self.parser)
        group = self.parser.add_argument_group("Broker connection options")
        group.add_argument("-b", "--broker", metavar="<address>",
                           help="Address of the broker: [username/password@] hostname | ip-address "
                                "[:<port>] (default %s)" % DEFAULT_BROKER)
        group.add_argument("--timeout", type=float, metavar="<seconds>",
                           help="Give up if the broker does not answer within this time; 0 waits "
                                "for ever (default %g)" % DEFAULT_TIMEOUT)
        group.add_argument("--sasl-mechanism", metavar="<mech>",
                           help="SASL mechanism for authentication (e.g. PLAIN, ANONYMOUS)")
        group.add_argument("--sasl-service-name", metavar="<name>", help="SASL service name to use")
        group.add_argument("--ssl-certificate", metavar="<cert>", help="Client SSL certificate (PEM)")
        group.add_argument("--ssl-key", metavar="<key>", help="Client SSL private key (PEM)")
        group.add_argument("--config", metavar="<path/to/qpidd.conf>",
                           help="Take connection defaults (ha-username, ha-password, port, "
                                "ha-mechanism, link-heartbeat-interval) from this broker config file; "
                                "command-line options win")

    def summary(self) -> str:
        return "  %-12s %s." % (self.name, self.help.split(".")[0])

    def format_help(self) -> str:
        return self.parser.format_help()

    def execute(self, argv: list[str], out) -> None:
        opts = self.parser.parse_intermixed_args(argv)
        if opts.help:
            out.write(self.format_help())
            return
        if len(opts.words) != len(self.args) + 1:
            out.write(self.format_help())
            raise Exception("Wrong number of arguments")
        target = Target(opts)
        if not self.needs_agent:
            self.run(None, None, target, opts, out)
            return
        agent = target.agent()
        try:
            self.run(agent, ha_broker(agent, target.url), target, opts, out)
        finally:
            agent.close()

    def run(self, agent, habroker, target, opts, out) -> None:
        raise NotImplementedError

    def each_broker(self, habroker, target, opts, show) -> None:
        """``show(habroker, address, error)`` for every broker of the cluster with ``--all`` (each
        queried on its own connection), else once for this one."""
        addresses = cluster_addresses(habroker.get("brokersUrl") or "")
        if not (opts.all and addresses):
            show(habroker, None, None)
            return
        for address in addresses:
            try:
                agent = target.with_address(address).agent()
            except Exception as e:
                show(None, address, e)
                continue
            try:
                show(ha_broker(agent, address), address, None)
            except Exception as e:
                show(None, address, e)
            finally:
                agent.close()


class Ping(Command):
    def __init__(self):
        super().__init__("ping", "Check if the broker is alive and responding", agent=False)

    def run(self, agent, habroker, target, opts, out):
        conn = target.connect()
        try:
            conn.ping()
        finally:
            conn.close()


def _status_options(parser):
    parser.add_argument("--expect", metavar="<status>",
                        help="Print nothing; exit 0 if the status is <status>, 1 otherwise")
    parser.add_argument("--is-primary", action="store_true",
                        help="Print nothing; exit 0 if the broker is the primary (active or "
                             "recovering), 1 otherwise")
    parser.add_argument("--all", action="store_true", help="Print the status of every broker in the cluster")


class Status(Command):
    def __init__(self):
        super().__init__("status", "Print HA status", options=_status_options)

    def run(self, agent, habroker, target, opts, out):
        status = habroker.get("status")
        if opts.is_primary:
            if status not in PRIMARY_STATES:
                raise ExitStatus(1)
            return
        if opts.expect:
            if opts.expect != status:
                raise ExitStatus(1)
            return

        def show(hb, address, error):
            if error is not None:
                out.write("%s %s\n" % (address, error))
            elif address:
                out.write("%s %s\n" % (address, hb.get("status")))
            else:
                out.write("%s\n" % hb.get("status"))
        self.each_broker(habroker, target, opts, show)


def _query_options(parser):
    parser.add_argument("--all", action="store_true",
                        help="Print configuration and status of every broker in the cluster")


class Query(Command):
    def __init__(self):
        super().__init__("query", "Print HA configuration and status", options=_query_options)

    def run(self, agent, habroker, target, opts, out):
        def show(hb, address, error):
            if error is not None:
                out.write("%s %s\n\n" % (address, error))
                return
            rows = [("Status:", hb.get("status")), ("Broker ID:", hb.get("systemId")),
                    ("Brokers URL:", hb.get("brokersUrl")), ("Public URL:", hb.get("publicUrl")),
                    ("Replicate: ", hb.get("replicateDefault"))]
            if address:
                rows.insert(0, ("Address:", address))
            for label, value in rows:
                out.write("%-20s %s\n" % (label, "" if value is None else value))
            if address:
                out.write("\n")
        self.each_broker(habroker, target, opts, show)


class Replicate(Command):
    def __init__(self):
        super().__init__("replicate", "Set up replication from <queue> on <remote-broker> to <queue> "
                         "on the current broker", args=("<remote-broker>", "<queue>"))

    def run(self, agent, habroker, target, opts, out):
        remote, queue = opts.words[1], opts.words[2]
        agent.call(HA_BROKER, "replicate", {"broker": remote, "queue": queue}, timeout=target.timeout or None)


class Promote(Command):
    def __init__(self):
        super().__init__("promote", "Promote a backup broker to primary. Only a cluster manager that "
                         "makes sure exactly one broker is primary may use it: two primaries at "
                         "once make the cluster inconsistent and lose data", manager=True)

    def run(self, agent, habroker, target, opts, out):
        agent.call(HA_BROKER, "promote", {}, timeout=target.timeout or None)


def commands() -> tuple[list[Command], list[Command]]:
    """(the user commands, the cluster-manager-only commands)."""
    return [Ping(), Status(), Replicate(), Query()], [Promote()]


def usage(commands_shown: list[Command]) -> str:
    lines = ["usage: %s <command> [<arguments>]" % PROG, "", "Commands are:", ""]
    lines += [cmd.summary() for cmd in commands_shown]
    lines += ["", "For help with a command type: %s <command> --help" % PROG, "", ""]
    return "\n".join(lines)


def find_command(args: list[str], candidates: list[Command]) -> Command | None:
    """The first argument that names a command (options may come before it)."""
    for arg in args:
        for cmd in candidates:
            if cmd.name == arg:
                return cmd
    return None


def run(argv: list[str], out=None) -> int:
    """Run one ``qpid-ha`` command line (without the program name); returns the exit status."""
    out = out or sys.stdout
    args = list(argv)
    user, manager = commands()
    shown = list(user)
    if "--cluster-manager" in args:
        args = [a for a in args if a != "--cluster-manager"]
        shown += manager
    try:
        if args and args[0] in HELP_WORDS:
            if "help-all" in args[0]:
                for cmd in shown:
                    out.write(cmd.format_help() + "\n")
            else:
                out.write(usage(shown))
            return 0
        command = find_command(args, shown)
        if command is None:
            forbidden = find_command(args, manager)
            if forbidden is not None:
                raise Exception(MANAGER_ONLY.format(forbidden.name))
            out.write(usage(shown))
            raise Exception("No valid command")
        command.execute(args, out)
        return 0
    except ExitStatus as e:
        return e.status
    except UsageError as e:
        out.write("UsageError: %s\n" % e)
        return 1
    except Exception as e:
        name, text = error_text(e)
        out.write("%s: %s\n" % (name, text))
        return 1


def main(argv: list[str] | None = None) -> int:
    qmf.PROGRAM = PROG
    try:
        return run(sys.argv[1:] if argv is None else argv)
    except KeyboardInterrupt:
        return 1


if __name__ == "__main__":
    sys.exit(main())
