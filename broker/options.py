"""qpidd's command-line / environment / config-file options, read with configargparse.

``parse_options(argv=None, env=None) -> Options``. The option names are qpidd's (1.36) wherever
qpidd has the option; the few cypid-only options are marked as such in their help text.

Precedence: command line > ``QPID_*`` environment variables (``--log-to-file`` -> ``QPID_LOG_TO_FILE``)
> the config file named by ``--config`` (or ``QPID_CONFIG``) > defaults.

Config file syntax is qpidd.conf's: ``name=value`` lines, ``#`` comments, blank lines; a repeatable
option (``interface``, ``log-enable``, ``log-disable``) may be given on several lines. Relative paths
are used as given, i.e. they resolve against the broker's current directory, not the file's.

Values: durations take qpidd's forms (``0.1`` = seconds, ``10s``, ``10ms``, ``10us``, ``10ns``) and
become float seconds; booleans take yes/no/true/false/1/0. An unknown option or a malformed value,
wherever it comes from, stops start-up with ``qpidd: ...`` naming it (exit status 1).

Defaults that differ from qpidd's (on purpose; see README):
- ``--interface`` defaults to 127.0.0.1 (qpidd listens on all interfaces);
- ``--auth`` defaults to no (qpidd: yes when SASL is available): a broker started without options
  trusts its clients, as one started by ``make run`` for a first try should; production sets yes;
- ``--data-dir`` defaults to ``data`` in the current directory (qpidd: ``~/.qpidd`` or /var/lib/qpidd);
- no config file is read unless ``--config``/``QPID_CONFIG`` names one (qpidd: /etc/qpid/qpidd.conf).
"""
from __future__ import annotations

import os
import re
import sys
from collections import OrderedDict
from dataclasses import dataclass, field, fields
from typing import Any, Callable, Mapping, Sequence

import configargparse

from .logs import parse_rule
from .options_inert import INERT

PROG = "qpidd"
#: the qpidd release whose options, QMF and tools cypid matches
QPIDD_VERSION = "1.40.0"
ENV_PREFIX = "QPID_"


class OptionsError(ValueError):
    """A bad option or value; the message is what qpidd prints after ``qpidd: ``."""


# --------------------------------------------------------------------------- value converters

_BOOL_WORDS = {"yes": True, "true": True, "1": True, "no": False, "false": False, "0": False}
_INT_RE = re.compile(r"^[+-]?[0-9]+$")
_DURATION_RE = re.compile(r"^([0-9]+(?:\.[0-9]*)?|\.[0-9]+)(s|ms|us|ns)?$")
_DURATION_UNITS = {None: 1.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}


def parse_bool(text: str) -> bool:
    """yes/no/true/false/1/0 (any case) -> bool; anything else -> ValueError."""
    try:
        return _BOOL_WORDS[text.strip().lower()]
    except KeyError:
        raise ValueError(f"expected yes|no, true|false or 1|0, not {text!r}") from None


def parse_int(text: str) -> int:
    text = text.strip()
    if not _INT_RE.match(text):
        raise ValueError(f"not an integer: {text!r}")
    return int(text)


def parse_duration(text: str) -> float:
    """qpidd duration: ``0.1`` (seconds), ``10s``, ``10ms``, ``10us``, ``10ns`` -> float seconds."""
    m = _DURATION_RE.match(text.strip())
    if not m:
        raise ValueError(f"not a duration (e.g. 10, 0.5, 10s, 10ms, 10us, 10ns): {text!r}")
    return float(m.group(1)) * _DURATION_UNITS[m.group(2)]


def _ha_url(text: str) -> None:
    """qpidd's URL grammar (ha/url.py), checked at start-up so a bad URL stops the broker."""
    if text:
        from cypid.ha.url import parse_url
        parse_url(text)


def parse_milliseconds(text: str) -> float:
    """A plain integer count of milliseconds (qpidd's --max-negotiate-time) -> float seconds."""
    value = parse_int(text)
    if value < 0:
        raise ValueError("must not be negative")
    return value / 1000.0


# --------------------------------------------------------------------------- the option table

@dataclass(frozen=True)
class OptionSpec:
    """One option. ``kind``: int, str, bool (takes yes|no), switch (takes no value), duration,
    ms (integer milliseconds, stored as seconds), list (repeatable str)."""

    name: str
    kind: str
    default: Any
    help: str
    metavar: str | None = None
    short: str | None = None
    minimum: int | None = None
    maximum: int | None = None
    group: str = "Broker options"
    cypid_only: bool = False
    inert: bool = False           # accepted for qpidd compatibility, no effect (options_inert.py)
    validate: Callable[[str], Any] | None = None  # for list items: raises ValueError if bad

    @property
    def dest(self) -> str:
        return self.name.replace("-", "_")

    @property
    def env_var(self) -> str:
        return ENV_PREFIX + self.dest.upper()

    @property
    def flag(self) -> str:
        return "--" + self.name

    def convert(self, raw: Any) -> Any:
        """Convert a raw string (or list of strings for ``list``) to the typed value."""
        if self.kind == "list":
            items = [str(item) for item in raw]
            for item in items:
                if self.validate is not None:
                    try:
                        self.validate(item)
                    except ValueError as e:
                        e.value = item  # the offending item, for the message
                        raise
            return items
        if self.kind == "switch":  # argparse gives a bool; a config-file text is yes/no
            return raw if isinstance(raw, bool) else parse_bool(raw)
        if self.kind == "str":
            if self.validate is not None:
                self.validate(raw)
            return raw
        if self.kind == "bool":
            return parse_bool(raw)
        if self.kind == "duration":
            return parse_duration(raw)
        if self.kind == "ms":
            return parse_milliseconds(raw)
        if self.kind == "int":
            value = parse_int(raw)
            if self.minimum is not None and value < self.minimum:
                raise ValueError(f"must be at least {self.minimum}")
            if self.maximum is not None and value > self.maximum:
                raise ValueError(f"must be at most {self.maximum}")
            return value
        raise AssertionError(self.kind)


_LOG = "Logging options"
_STORE = "Store options"
_DAEMON = "Daemon options"
_SSL = "SSL Settings"
_HTTP = "HTTP options"
_HA = "HA Options"


def _replicate_level(text: str) -> str:
    if text not in ("none", "configuration", "all"):
        raise ValueError("must be one of none, configuration, all")
    return text


OPTION_TABLE: tuple[OptionSpec, ...] = (
    # Broker
    OptionSpec("data-dir", "str", "data", "Directory to contain persistent data generated by the broker",
               metavar="DIR"),
    OptionSpec("no-data-dir", "switch", False,
               "Don't use a data directory. No persistent configuration will be loaded or stored"),
    OptionSpec("port", "int", 5672, "Tells the broker to listen on PORT (0: pick a free port)",
               metavar="PORT", short="-p", minimum=0, maximum=65535),
    OptionSpec("interface", "list", ["127.0.0.1"],
               "Which network interface (address or name) to listen on; repeatable. "
               "cypid's default is 127.0.0.1 (qpidd: all interfaces)", metavar="ADDR"),
    OptionSpec("worker-threads", "int", None,
               "Accepted for qpidd compatibility and ignored: cypid runs one event loop",
               metavar="N", minimum=1),
    OptionSpec("connection-backlog", "int", 10, "Sets the connection backlog limit for the server socket",
               metavar="N", minimum=1),
    OptionSpec("max-connections", "int", 500, "Sets the maximum allowed connections", metavar="N",
               minimum=0),
    OptionSpec("connection-limit-per-user", "int", 0,
               "The maximum number of connections a user may have (0: no limit); an ACL 'quota "
               "connections' line wins over it for the users it names (as qpidd, once the ACL has such "
               "lines, the users they do not name get N, and 0 then means none)", metavar="N", minimum=0),
    OptionSpec("connection-limit-per-ip", "int", 0,
               "The maximum number of connections from one client host address (0: no limit)",
               metavar="N", minimum=0),
    OptionSpec("max-queues-per-user", "int", 0,
               "The maximum number of queues a user may have created at once (0: no limit); only with "
               "--acl-file, as qpidd; an ACL 'quota queues' line wins over it for the users it names "
               "(once the ACL has such lines, the users they do not name get N, and 0 then means none)",
               metavar="N", minimum=0),
    OptionSpec("require-encryption", "switch", False,
               "Only accept connections that are encrypted (TLS): plain ones are offered no SASL "
               "mechanism and are closed with amqp:unauthorized-access"),
    OptionSpec("max-negotiate-time", "ms", 10.0,
               "Maximum time in milliseconds a connection can take to send the initial protocol negotiation",
               metavar="MILLISECONDS"),
    OptionSpec("max-frame-size", "int", 65536,
               "Largest AMQP frame the broker accepts and offers in open (cypid option; not in qpidd)",
               metavar="BYTES", minimum=512, maximum=4294967295, cypid_only=True),
    OptionSpec("max-sessions-per-connection", "int", 256,
               "Most sessions one connection may begin; the broker's open offers channel-max N-1 and a "
               "begin on a higher channel closes the connection (cypid option; not in qpidd)",
               metavar="N", minimum=1, maximum=65536, cypid_only=True),
    OptionSpec("max-links-per-session", "int", 1024,
               "Most links one session may attach; the broker's begin offers handle-max N-1 and an attach "
               "on a higher handle closes the connection (cypid option; not in qpidd)",
               metavar="N", minimum=1, maximum=4294967296, cypid_only=True),
    OptionSpec("max-links-per-connection", "int", 4096,
               "Most links attached at once on one connection, all its sessions together; further "
               "attaches are refused with amqp:resource-limit-exceeded (cypid option; not in qpidd)",
               metavar="N", minimum=1, cypid_only=True),
    OptionSpec("max-message-size", "int", 104857600,
               "Largest message, in bytes, the broker accepts; offered in every attach, a larger delivery "
               "(also one still arriving) detaches its link with amqp:link:message-size-exceeded "
               "(cypid option; not in qpidd)", metavar="BYTES", minimum=0, cypid_only=True),
    OptionSpec("max-connection-output", "int", 4194304,
               "Bytes of encoded messages the broker keeps waiting for one connection's socket; past "
               "this it encodes no more for that connection until the socket drains (cypid option; "
               "not in qpidd)", metavar="BYTES", minimum=65536, cypid_only=True),
    OptionSpec("tx-timeout", "duration", 0.0,
               "Seconds an AMQP 1.0 local transaction may stay open: then its work is rolled back (the "
               "messages it acquired go back to their queues) and its commit answers "
               "amqp:transaction:rollback; 0: no limit, as in qpidd (cypid option; qpidd times out only "
               "DTX, --dtx-default-timeout)", metavar="SECONDS", cypid_only=True),
    OptionSpec("session-max-unacked", "int", 5000,
               "Maximum number of unacknowledged deliveries the broker sends on a session", metavar="N",
               minimum=1),
    OptionSpec("mgmt-enable", "bool", True, "Enable Management", metavar="yes|no", short="-m"),
    OptionSpec("mgmt-publish", "bool", True, "Enable Publish of Management Data ('no' implies query-only)",
               metavar="yes|no"),
    OptionSpec("mgmt-pub-interval", "duration", 10.0, "Management Publish Interval", metavar="SECONDS"),
    OptionSpec("queue-purge-interval", "duration", 600.0,
               "Interval between attempts to purge any expired messages from queues", metavar="SECONDS"),
    OptionSpec("auth", "bool", False,
               "Enable authentication, if disabled all incoming connections will be trusted. "
               "cypid's default is no (qpidd: yes)", metavar="yes|no"),
    OptionSpec("realm", "str", "QPID", "Use the given realm when performing authentication",
               metavar="REALM"),
    OptionSpec("sasl-config", "str", None,
               "Read DIR/qpidd.conf (Cyrus SASL 'key: value' form: mech_list, sasldb_path) for "
               "authentication; without it the users database is DATA-DIR/qpidd.sasldb",
               metavar="DIR"),
    OptionSpec("acl-file", "str", None,
               "The policy file to load from (qpidd's ACL rules: group, acl, quota lines); a relative FILE "
               "is read from the data directory, as qpidd's. A request no rule allows is denied. "
               "Reloaded by QMF reloadACLFile",
               metavar="FILE"),
    OptionSpec("default-queue-limit", "int", 104857600, "Default maximum size for queues (in bytes)",
               metavar="BYTES", minimum=0),
    OptionSpec("default-flow-stop-threshold", "int", 80,
               "Percent of queue's maximum capacity at which flow control is activated", metavar="PERCENT",
               minimum=0, maximum=100),
    OptionSpec("default-flow-resume-threshold", "int", 70,
               "Percent of queue's maximum capacity at which flow control is de-activated",
               metavar="PERCENT", minimum=0, maximum=100),
    OptionSpec("default-event-threshold-ratio", "int", 80,
               "The ratio (percent) of any specified queue limit at which an event will be raised",
               metavar="PERCENT", minimum=0, maximum=100),
    OptionSpec("enable-timestamp", "bool", False, "Add current time to each received message",
               metavar="yes|no"),
    # SSL (qpidd's names; PEM files instead of qpidd's NSS database: broker/tls.py)
    OptionSpec("ssl-port", "int", 5671,
               "Port on which to listen for SSL connections; the same as --port takes both kinds",
               metavar="PORT", minimum=0, maximum=65535, group=_SSL),
    OptionSpec("ssl-cert-file", "str", None,
               "The broker's certificate (PEM, may hold the chain); SSL is on only when it is given "
               "(cypid option; qpidd: --ssl-cert-db)", metavar="FILE", group=_SSL, cypid_only=True),
    OptionSpec("ssl-key-file", "str", None,
               "The certificate's private key (PEM; default: the certificate file) (cypid option)",
               metavar="FILE", group=_SSL, cypid_only=True),
    OptionSpec("ssl-ca-file", "str", None,
               "The CA certificates (PEM) client certificates must chain to; clients are asked for a "
               "certificate only when it is given (cypid option; qpidd: the NSS database's trusted CAs)",
               metavar="FILE", group=_SSL, cypid_only=True),
    OptionSpec("ssl-cert-password-file", "str", None,
               "File containing the password of the private key (qpidd: of the certificate database)",
               metavar="PATH", group=_SSL),
    OptionSpec("ssl-require-client-authentication", "switch", False,
               "Forces clients to authenticate in order to establish an SSL connection", group=_SSL),
    OptionSpec("ssl-sasl-no-dict", "switch", False,
               "Disables SASL mechanisms that are vulnerable to passive dictionary-based password attacks "
               "(on SSL connections only EXTERNAL is offered)", group=_SSL),
    OptionSpec("ssl-cert-db", "str", None,
               "qpidd's NSS certificate database: accepted and ignored with a notice; use --ssl-cert-file, "
               "--ssl-key-file and --ssl-ca-file", metavar="PATH", group=_SSL),
    OptionSpec("ssl-cert-name", "str", None,
               "qpidd's NSS certificate nickname: accepted and ignored with a notice; use --ssl-cert-file",
               metavar="NAME", group=_SSL),
    OptionSpec("ssl-use-export-policy", "switch", False,
               "qpidd's NSS export policy: accepted and ignored with a notice", group=_SSL),
    # Logging
    OptionSpec("log-enable", "list", ["notice+"],
               "Enables logging for selected levels and components: LEVEL[+-][:PATTERN], repeatable. "
               "Levels: trace debug info notice warning error critical; '+' this level and above, "
               "'-' this level and below; PATTERN is a category (Broker, Network, Protocol, Store, "
               "Management, Security, HA, ...) or part of a logger name",
               metavar="RULE", group=_LOG, validate=parse_rule),
    OptionSpec("log-disable", "list", [], "Disables logging for selected levels and components "
               "(same syntax as --log-enable; wins over it), repeatable", metavar="RULE", group=_LOG,
               validate=parse_rule),
    OptionSpec("log-to-stderr", "bool", True, "Send logging output to stderr", metavar="yes|no",
               group=_LOG),
    OptionSpec("log-to-file", "str", None, "Send log output to FILE", metavar="FILE", group=_LOG),
    OptionSpec("log-time", "bool", True, "Include time in log messages", metavar="yes|no", group=_LOG),
    OptionSpec("log-level", "bool", True, "Include severity level in log messages", metavar="yes|no",
               group=_LOG),
    OptionSpec("log-category", "bool", True, "Include category in log messages", metavar="yes|no",
               group=_LOG),
    # Store
    OptionSpec("store-dir", "str", None,
               "Store directory location for persistence (default: the data directory)",
               metavar="DIR", group=_STORE),
    OptionSpec("num-jfiles", "int", 8,
               "Default number of files for each durable queue's journal (3..64): its initial size and the "
               "unit it grows by", metavar="N", minimum=3, maximum=64, group=_STORE),
    OptionSpec("jfile-size-pgs", "int", 24,
               "Default size of each journal file, in 64 KiB pages (1..32767)", metavar="N", minimum=1,
               maximum=32767, group=_STORE),
    OptionSpec("journal-max-size", "int", 4096,
               "Most disk space one durable queue's journal may grow to, in MiB (0: no limit but the "
               "journal's 65535 files); past it durable messages are refused with resource-limit-exceeded. "
               "A queue may ask for less with qpid.journal_max_size", metavar="MIB", minimum=0,
               group=_STORE, cypid_only=True),
    # HA (qpidd's ha module; ha/README.md)
    OptionSpec("ha-cluster", "bool", False, "Join a HA active/passive cluster (starts as a backup, "
               "status joining, until the cluster manager promotes it)", metavar="yes|no", group=_HA),
    OptionSpec("ha-queue-replication", "bool", False,
               "Enable replication of specific queues without joining a cluster", metavar="yes|no",
               group=_HA),
    OptionSpec("ha-brokers-url", "str", "",
               "URL with address of each broker in the cluster: [amqp:][user[/pass]@]host[:port],...",
               metavar="URL", group=_HA, validate=lambda t: _ha_url(t)),
    OptionSpec("ha-public-url", "str", "", "URL advertised to clients to connect to the cluster",
               metavar="URL", group=_HA, validate=lambda t: _ha_url(t)),
    OptionSpec("ha-replicate", "str", "none",
               "Replication of queues and exchanges that do not say (qpid.replicate): none, "
               "configuration or all", metavar="LEVEL", group=_HA, validate=_replicate_level),
    OptionSpec("ha-username", "str", "", "Username for connections between HA brokers", metavar="USER",
               group=_HA),
    OptionSpec("ha-password", "str", "", "Password for connections between HA brokers", metavar="PASS",
               group=_HA),
    OptionSpec("ha-mechanism", "str", "", "Authentication mechanism for connections between HA brokers",
               metavar="MECH", group=_HA),
    OptionSpec("ha-backup-timeout", "duration", 10.0,
               "Maximum time to wait for an expected backup to connect and become ready",
               metavar="SECONDS", group=_HA),
    OptionSpec("ha-flow-messages", "int", 1000,
               "Flow control message count limit for replication, 0 means no limit", metavar="N",
               minimum=0, group=_HA),
    OptionSpec("ha-flow-bytes", "int", 0, "Flow control byte limit for replication, 0 means no limit",
               metavar="N", minimum=0, group=_HA),
    OptionSpec("link-maintenance-interval", "duration", 2.0,
               "Interval to check link health and re-connect if need be", metavar="SECONDS", group=_HA),
    OptionSpec("link-heartbeat-interval", "duration", 120.0,
               "Heartbeat interval for a federation (and HA) link", metavar="SECONDS", group=_HA),
    # Daemon
    OptionSpec("daemon", "switch", False, "Run as a daemon", short="-d", group=_DAEMON),
    OptionSpec("pid-dir", "str", None,
               "Directory for the daemon's pid file qpidd.PORT.pid (default: the data directory)",
               metavar="DIR", group=_DAEMON),
    OptionSpec("pidfile", "str", None,
               "Write the broker's pid to FILE (also when not a daemon)", metavar="FILE",
               group=_DAEMON),
    OptionSpec("wait", "int", 600, "Sets the maximum wait time in seconds for the daemon to start "
               "listening (with --daemon) or to stop (with --quit)", metavar="SECONDS", short="-w",
               minimum=1, group=_DAEMON),
    OptionSpec("check", "switch", False, "Prints the daemon's process ID to stdout and returns 0 if "
               "the daemon is running, otherwise returns 1 (by the pid file for --port)", short="-c",
               group=_DAEMON),
    OptionSpec("quit", "switch", False, "Tells the daemon to shut down (SIGTERM) and waits until it "
               "has", short="-q", group=_DAEMON),
    OptionSpec("kill", "switch", False, "Kills the daemon with SIGKILL", short="-k", group=_DAEMON),
    # HTTP (broker/http: /metrics, /healthz, /readyz and the web console)
    OptionSpec("http-port", "int", None,
               "Serve Prometheus metrics, health checks and the web console over HTTP on PORT (0: pick "
               "a free port; unset: no HTTP listener) (cypid option; not in qpidd)", metavar="PORT",
               minimum=0, maximum=65535, group=_HTTP, cypid_only=True),
    OptionSpec("http-interface", "str", "127.0.0.1",
               "The address the HTTP listener binds to (cypid option; not in qpidd)", metavar="ADDR",
               group=_HTTP, cypid_only=True),
    OptionSpec("http-max-connections", "int", 64,
               "Open HTTP connections at most; more are answered 503 and closed (cypid option; not in "
               "qpidd)", metavar="N", minimum=1, group=_HTTP, cypid_only=True),
    OptionSpec("http-timeout", "duration", 10.0,
               "An HTTP connection is closed when it has not sent a whole request's headers this long "
               "after it opened or after its last answer (idle, or sending them slowly), or a request's "
               "body within this long (cypid option; not in qpidd)", metavar="SECONDS",
               group=_HTTP, cypid_only=True),
)

_INERT_GROUP = "Options of qpidd accepted by cypid, with no effect (each logs a notice saying why)"
INERT_TABLE: tuple[OptionSpec, ...] = tuple(
    OptionSpec(name, kind, [] if kind == "list" else None, "No effect in cypid: " + reason, metavar=metavar, short=short,
               group=_INERT_GROUP, inert=True)
    for name, kind, metavar, short, reason in INERT)
OPTION_TABLE = OPTION_TABLE + INERT_TABLE

OPTIONS_BY_NAME: dict[str, OptionSpec] = {spec.name: spec for spec in OPTION_TABLE}
#: Names that are options but have no place in a config file.
COMMAND_LINE_ONLY = ("config", "help", "version", "check", "quit", "kill")


@dataclass
class Options:
    """The broker's settings, typed. Durations are float seconds."""

    config: str | None = None
    data_dir: str = "data"
    no_data_dir: bool = False
    port: int = 5672
    interface: list[str] = field(default_factory=lambda: ["127.0.0.1"])
    worker_threads: int | None = None
    connection_backlog: int = 10
    max_connections: int = 500
    connection_limit_per_user: int = 0
    connection_limit_per_ip: int = 0
    max_queues_per_user: int = 0
    require_encryption: bool = False
    max_negotiate_time: float = 10.0
    max_frame_size: int = 65536
    max_sessions_per_connection: int = 256
    max_links_per_session: int = 1024
    max_links_per_connection: int = 4096
    max_message_size: int = 104857600
    max_connection_output: int = 4194304
    tx_timeout: float = 0.0
    session_max_unacked: int = 5000
    mgmt_enable: bool = True
    mgmt_publish: bool = True
    mgmt_pub_interval: float = 10.0
    queue_purge_interval: float = 600.0
    auth: bool = False
    realm: str = "QPID"
    sasl_config: str | None = None
    acl_file: str | None = None
    default_queue_limit: int = 104857600
    default_flow_stop_threshold: int = 80
    default_flow_resume_threshold: int = 70
    default_event_threshold_ratio: int = 80
    enable_timestamp: bool = False
    ssl_port: int = 5671
    ssl_cert_file: str | None = None
    ssl_key_file: str | None = None
    ssl_ca_file: str | None = None
    ssl_cert_password_file: str | None = None
    ssl_require_client_authentication: bool = False
    ssl_sasl_no_dict: bool = False
    ssl_cert_db: str | None = None
    ssl_cert_name: str | None = None
    ssl_use_export_policy: bool = False
    log_enable: list[str] = field(default_factory=lambda: ["notice+"])
    log_disable: list[str] = field(default_factory=list)
    log_to_stderr: bool = True
    log_to_file: str | None = None
    log_time: bool = True
    log_level: bool = True
    log_category: bool = True
    store_dir: str | None = None
    num_jfiles: int = 8
    jfile_size_pgs: int = 24
    journal_max_size: int = 4096
    ha_cluster: bool = False
    ha_queue_replication: bool = False
    ha_brokers_url: str = ""
    ha_public_url: str = ""
    ha_replicate: str = "none"
    ha_username: str = ""
    ha_password: str = ""
    ha_mechanism: str = ""
    ha_backup_timeout: float = 10.0
    ha_flow_messages: int = 1000
    ha_flow_bytes: int = 0
    link_maintenance_interval: float = 2.0
    link_heartbeat_interval: float = 120.0
    daemon: bool = False
    pid_dir: str | None = None
    pidfile: str | None = None
    wait: int = 600
    check: bool = False
    quit: bool = False
    kill: bool = False
    #: qpidd options given that have no effect in cypid (options_inert.py): name -> value
    inert: dict[str, Any] = field(default_factory=dict)
    http_port: int | None = None
    http_interface: str = "127.0.0.1"
    http_max_connections: int = 64
    http_timeout: float = 10.0

    @property
    def data_path(self) -> str | None:
        """The data directory in use, or None with --no-data-dir."""
        return None if self.no_data_dir else self.data_dir

    @property
    def store_path(self) -> str | None:
        """Where durable queues' journals go: --store-dir, else the data directory (None if neither)."""
        return self.store_dir if self.store_dir is not None else self.data_path


# --------------------------------------------------------------------------- config file parsing

class _QpiddConfParser(configargparse.ConfigFileParser):
    """qpidd.conf: ``name=value`` lines, ``#`` comments. Unknown names are errors (with the line);
    a name given on several lines becomes a list (an error unless the option is repeatable)."""

    def get_syntax_description(self):
        return "name=value lines (qpidd.conf syntax); '#' starts a comment"

    def parse(self, stream):
        source = getattr(stream, "name", "config file")
        items: OrderedDict[str, Any] = OrderedDict()
        for lineno, line in enumerate(stream, 1):
            text = line.strip()
            if not text or text.startswith("#"):
                continue
            if "=" not in text:
                raise configargparse.ConfigFileParserException(
                    f"{source}:{lineno}: expected name=value, got {text!r}")
            key, value = (part.strip() for part in text.split("=", 1))
            spec = OPTIONS_BY_NAME.get(key)
            if spec is None:
                raise configargparse.ConfigFileParserException(
                    f"unrecognised option '{key}' in config file {source}:{lineno}")
            if key in items:
                if spec.kind != "list":
                    raise configargparse.ConfigFileParserException(
                        f"option '{key}' given twice in config file {source}:{lineno}")
                previous = items[key]
                items[key] = (previous if isinstance(previous, list) else [previous]) + [value]
            else:
                items[key] = value
        return items

    def serialize(self, items):  # pragma: no cover - not used
        return "".join(f"{k}={v}\n" for k, v in items.items())


class _ArgumentParser(configargparse.ArgumentParser):
    def error(self, message):  # argparse would print usage and exit 2
        raise OptionsError(_reword_argparse_error(message))

    def exit(self, status=0, message=None):  # pragma: no cover - defensive
        raise OptionsError(message or f"exit {status}")


def _reword_argparse_error(message: str) -> str:
    m = re.match(r"argument ([^:]+): expected one argument", message)
    if m:
        return f"missing value for {m.group(1).split('/')[-1]}"
    m = re.match(r"Unexpected value for ([^:]+): '(.*?)'", message)
    if m:
        key = m.group(1)
        spec = next((s for s in OPTION_TABLE if key in (s.name, s.env_var)), None)
        where = f" (from environment variable {key})" if key.startswith(ENV_PREFIX) else ""
        name = spec.flag if spec else key
        return f"invalid value for {name}: '{m.group(2)}' (expected yes or no){where}"
    return message


def _build_parser() -> _ArgumentParser:
    parser = _ArgumentParser(
        prog=PROG,
        add_help=False,
        config_file_parser_class=_QpiddConfParser,
        ignore_unknown_config_file_keys=False,
        allow_abbrev=False,
        description="cypid: an AMQP 1.0 message broker with qpidd's options. Options may also be set "
        "in QPID_* environment variables or a config file (--config).",
    )
    general = parser.add_argument_group("Options")
    general.add_argument("-h", "--help", action="store_true", help="Displays the help message")
    general.add_argument("-v", "--version", action="store_true", help="Displays version information")
    general.add_argument("--config", is_config_file_arg=True, env_var=ENV_PREFIX + "CONFIG",
                         metavar="FILE", help="Reads configuration from FILE")
    groups: dict[str, Any] = {}
    for spec in OPTION_TABLE:
        group = groups.get(spec.group)
        if group is None:
            group = groups[spec.group] = parser.add_argument_group(spec.group)
        names = [spec.short, spec.flag] if spec.short else [spec.flag]
        help_text = spec.help + _default_note(spec)
        kwargs: dict[str, Any] = dict(dest=spec.dest, env_var=spec.env_var, help=help_text, default=None)
        if spec.kind == "switch":
            group.add_argument(*names, action="store_true", **kwargs)
        elif spec.kind == "list":
            group.add_argument(*names, action="append", metavar=spec.metavar, **kwargs)
        elif spec.kind == "bool":
            # "--log-time" alone means yes; "--log-time no" as in qpidd.
            group.add_argument(*names, nargs="?", const="yes", metavar=spec.metavar, **kwargs)
        else:
            group.add_argument(*names, metavar=spec.metavar, **kwargs)
    return parser


def _default_note(spec: OptionSpec) -> str:
    default = spec.default
    if default is None or spec.kind == "switch":
        return ""
    if spec.kind == "bool":
        text = "yes" if default else "no"
    elif spec.kind == "list":
        text = " ".join(default) if default else ""
    elif spec.kind == "ms":
        text = str(int(round(default * 1000)))
    elif spec.kind == "duration":
        text = f"{default:g}"
    else:
        text = str(default)
    return f" ({text})" if text else ""


def _value_source(parser: _ArgumentParser, spec: OptionSpec) -> str:
    """Where an option's value came from, as a phrase for an error message."""
    for source, settings in parser.get_source_to_settings_dict().items():
        if source.startswith("environment_variables") and spec.env_var in settings:
            return f" (from environment variable {spec.env_var})"
        if source.startswith("config_file") and spec.name in settings:
            return f" (in config file {source.split('|', 1)[-1]})"
    return ""


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("cypid")
    except Exception:  # pragma: no cover - not installed
        return "unknown"


def parse_options(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None, *,
                  exit_on_error: bool = True, stdout=None, stderr=None) -> Options:
    """Parse qpidd options from ``argv`` (default ``sys.argv[1:]``), ``env`` (default ``os.environ``;
    only ``QPID_*`` names are read) and the config file they name.

    ``--help``/``--version`` print to ``stdout`` and exit 0. On a bad option: with ``exit_on_error``
    (the default) print ``qpidd: <message>`` to ``stderr`` and exit 1; otherwise raise OptionsError.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    env = os.environ if env is None else env
    try:
        return _parse(argv, env, stdout or sys.stdout)
    except OptionsError as e:
        if not exit_on_error:
            raise
        print(f"{PROG}: {e}", file=stderr or sys.stderr)
        raise SystemExit(1) from None


def _parse(argv: list[str], env: Mapping[str, str], stdout) -> Options:
    parser = _build_parser()
    if "-h" in argv or "--help" in argv:
        stdout.write(parser.format_help())
        raise SystemExit(0)
    if "-v" in argv or "--version" in argv:
        stdout.write(f"{PROG} (cypid) version {_version()}, compatible with qpidd (qpid-cpp) {QPIDD_VERSION}\n")
        raise SystemExit(0)
    env_vars = {k: v for k, v in env.items() if k.startswith(ENV_PREFIX)}
    namespace, unknown = parser.parse_known_args(argv, env_vars=env_vars)
    if unknown:
        bad = unknown[0]
        if bad.startswith("-"):
            raise OptionsError(f"unrecognised option '{bad.split('=', 1)[0]}'")
        raise OptionsError(f"unexpected argument '{bad}' (qpidd takes only options)")
    values: dict[str, Any] = {"config": namespace.config, "inert": {}}
    for spec in OPTION_TABLE:
        raw = getattr(namespace, spec.dest)
        given = not (raw is None or (spec.kind == "switch" and raw is False))
        if spec.inert:
            if given:   # still checked as qpidd would check it; kept to log a notice
                try:
                    values["inert"][spec.name] = spec.convert(raw)
                except ValueError as e:
                    raise OptionsError(f"invalid value for {spec.flag}: '{getattr(e, 'value', raw)}'"
                                       f"{_value_source(parser, spec)}: {e}") from None
            continue
        if raw is None or (spec.kind == "switch" and raw is False) or (raw == "" and spec.default is None):
            # (An empty value, e.g. "store-dir=" in a config file, leaves an unset option unset.)
            value = list(spec.default) if isinstance(spec.default, list) else spec.default
        else:
            try:
                value = spec.convert(raw)
            except ValueError as e:
                shown = getattr(e, "value", raw)
                raise OptionsError(
                    f"invalid value for {spec.flag}: '{shown}'{_value_source(parser, spec)}: {e}") from None
        values[spec.dest] = value
    return Options(**values)


def option_defaults() -> dict[str, Any]:
    """{option name: default} for every option in the table (the values ``Options()`` starts with)."""
    return {spec.name: spec.default for spec in OPTION_TABLE}


def _check_table_matches_dataclass() -> None:
    names = {f.name for f in fields(Options)} - {"config", "inert"}
    live = {s.dest for s in OPTION_TABLE if not s.inert}
    assert names == live, names ^ live
    assert len({s.name for s in OPTION_TABLE}) == len(OPTION_TABLE), "an option is defined twice"
    defaults = Options()
    for spec in OPTION_TABLE:
        if spec.inert:
            continue
        assert getattr(defaults, spec.dest) == spec.default, spec.name


_check_table_matches_dataclass()

__all__ = ["Options", "OptionSpec", "OptionsError", "OPTION_TABLE", "OPTIONS_BY_NAME", "parse_options",
           "parse_bool", "parse_duration", "parse_int", "option_defaults"]
