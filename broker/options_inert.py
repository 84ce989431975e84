"""qpidd options that cypid accepts but that change nothing in it, each with the reason.

qpidd 1.36 and 1.40 (with their amqp, linearstore, legacystore and acl modules) accept these; a
packaged qpidd.conf or an init script may set any of them, so cypid must start with them. Each one
given (on the command line, in QPID_* or in the config file) gets one notice line at start-up:
``--NAME has no effect in cypid: REASON``. A value is still checked as qpidd checks it (a number
must be a number), so a typo stops start-up as before.

Options that cypid implements are in options.py's OPTION_TABLE; HA options belong to ha/.
"""
from __future__ import annotations

#: (name, kind, metavar, short, reason). Kinds as in options.OptionSpec: switch (no value), bool
#: (yes|no), int, str, duration, list (repeatable).
_MODULES = "cypid's AMQP 1.0 protocol, store, ACL and HA are built in; there are no modules to load"
_SYSLOG = "cypid logs to stderr and --log-to-file only"
_LINEAR = "cypid's journal has its own geometry (--num-jfiles, --jfile-size-pgs, --journal-max-size)"
_NO_DTX = "cypid has no distributed (XA) transactions"
_OLD = "an option of older qpidd releases"

INERT = (
    # modules and configuration files
    ("module-dir", "str", "DIR", None, _MODULES),
    ("load-module", "list", "FILE", None, _MODULES),
    ("no-module-dir", "switch", None, None, _MODULES),
    ("client-config", "str", "FILE", None, "cypid's broker reads no client configuration"),
    # broker
    ("paging-dir", "str", "DIR", None, "cypid has no paged queues; a deep queue stays in memory and "
     "in its journal"),
    ("listen-disable", "list", "TRANSPORT", None, "cypid listens on TCP only"),
    ("protocols", "list", "PROTOCOL", None, "cypid speaks AMQP 1.0 only"),
    ("mgmt-qmf2", "bool", "yes|no", None, "cypid's agent always speaks QMF v2"),
    ("mgmt-qmf1", "bool", "yes|no", None, "cypid's agent has no QMF v1 broadcasts"),
    ("max-purge-batch", "int", "MESSAGES", None, "cypid purges expired messages as it meets them, "
     "with no batch"),
    ("sasl-service-name", "str", "NAME", None, "cypid's SASL has no GSSAPI/Kerberos service"),
    ("tcp-nodelay", "switch", None, None, "cypid always sets TCP_NODELAY"),
    ("known-hosts-url", "str", "URL", None, "cypid does not advertise known hosts"),
    ("default-message-group", "str", "GROUP-IDENTIFIER", None,
     "cypid's message groups use qpid.no-group for messages without a group header"),
    ("dtx-default-timeout", "int", "SECONDS", None, _NO_DTX),
    ("dtx-max-timeout", "int", "SECONDS", None, _NO_DTX),
    ("federation-tag", "str", "NAME", None, "cypid's federation tag is the broker's container-id"),
    ("domain", "str", "DOMAIN", None, "cypid has no AMQP 1.0 interconnects"),
    ("queue-patterns", "list", "PATTERN", None, "cypid makes no queues on demand"),
    ("topic-patterns", "list", "PATTERN", None, "cypid makes no topics on demand"),
    # logging
    ("trace", "switch", None, "-t", "use --log-enable trace+ (cypid has no separate trace switch)"),
    ("log-source", "bool", "yes|no", None, "cypid's log lines name their category, not a source line"),
    ("log-thread", "bool", "yes|no", None, "cypid runs one event loop thread"),
    ("log-function", "bool", "yes|no", None, "cypid's log lines name their category, not a function"),
    ("log-hires-timestamp", "bool", "yes|no", None, "cypid's log timestamps are in seconds"),
    ("log-prefix", "str", "STRING", None, "cypid's log lines have no prefix"),
    ("log-to-stdout", "bool", "yes|no", None, "cypid logs to stderr and --log-to-file"),
    ("log-to-syslog", "bool", "yes|no", None, _SYSLOG),
    ("syslog-name", "str", "NAME", None, _SYSLOG),
    ("syslog-facility", "str", "LOG_XXX", None, _SYSLOG),
    # daemon
    ("transport", "str", "TRANSPORT", None, "cypid listens on TCP only"),
    ("close-fd", "list", "FD", None, "cypid's daemon closes no inherited descriptors by number"),
    ("socket-fd", "list", "FD", None, "cypid opens its own listening socket"),
    # linearstore
    ("truncate", "bool", "yes|no", None, "cypid never deletes a store at start-up; remove the data "
     "directory to start afresh"),
    ("wcache-page-size", "int", "N", None, _LINEAR),
    ("wcache-num-pages", "int", "N", None, _LINEAR),
    ("tpl-wcache-page-size", "int", "N", None, _LINEAR),
    ("tpl-wcache-num-pages", "int", "N", None, _LINEAR),
    ("efp-partition", "int", "N", None, _LINEAR),
    ("efp-file-size", "int", "N", None, _LINEAR),
    ("overwrite-before-return", "bool", "yes|no", None, _LINEAR),
    ("journal-flush-timeout", "duration", "SECONDS", None, "cypid syncs a durable message's record "
     "before accepting it, with no flush timer"),
    # legacystore
    ("tpl-num-jfiles", "int", "N", None, "cypid's transaction log has a fixed geometry"),
    ("tpl-jfile-size-pgs", "int", "N", None, "cypid's transaction log has a fixed geometry"),
    # older qpidd (packaged qpidd.conf files still carry them)
    ("cluster-mechanism", "str", "MECH", None, _OLD + " (the old cluster module)"),
    ("max-session-rate", "int", "N", None, _OLD),
    ("store-async", "bool", "yes|no", None, _OLD + " (the legacy store's AIO switch)"),
)

REASONS = {name: reason for name, _, _, _, reason in INERT}


def notice_lines(given) -> list[str]:
    """One line per inert option that was set: ``--NAME has no effect in cypid: REASON``."""
    return ["--%s has no effect in cypid: %s" % (name, REASONS[name]) for name in given]


__all__ = ["INERT", "REASONS", "notice_lines"]
