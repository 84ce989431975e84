"""What the tools share besides the QMF console: connection options, error reporting."""
from __future__ import annotations

import argparse
import sys

from . import qmf

BROKER_ADDRESS_HELP = """\
         broker-addr is in the form:   [username/password@] hostname | ip-address [:<port>]
         ex:  localhost, 10.1.1.7:10000, broker-host:10000, guest/guest@localhost"""


class UsageError(Exception):
    """Bad command line: the tool prints its usage and this message."""


class QuietParser(argparse.ArgumentParser):
    """An ArgumentParser that raises UsageError instead of printing and exiting, so each tool
    prints qpidd's usage text and picks its own exit status."""

    def error(self, message):
        raise UsageError(message)

    def exit(self, status=0, message=None):  # pragma: no cover - only --version style actions
        if message:
            sys.stderr.write(message)
        raise SystemExit(status)


def add_connection_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sasl-mechanism", dest="sasl_mechanism", metavar="<mech>")
    parser.add_argument("--sasl-service-name", dest="sasl_service_name", metavar="<name>")
    parser.add_argument("--ssl-certificate", dest="ssl_certificate", metavar="<cert>")
    parser.add_argument("--ssl-key", dest="ssl_key", metavar="<key>")
    parser.add_argument("--ha-admin", dest="ha_admin", action="store_true")


def connection_kwargs(opts) -> dict:
    if getattr(opts, "ssl_key", None) and not getattr(opts, "ssl_certificate", None):
        raise UsageError("missing '--ssl-certificate' (required by '--ssl-key')")
    return {
        "sasl_mechanisms": getattr(opts, "sasl_mechanism", None),
        "sasl_service": getattr(opts, "sasl_service_name", None),
        "ssl_certificate": getattr(opts, "ssl_certificate", None),
        "ssl_key": getattr(opts, "ssl_key", None),
        "ha_admin": bool(getattr(opts, "ha_admin", False)),
    }


def error_text(e: BaseException) -> tuple[str, str]:
    """(class name as qpidd's tools show it, message) for a failure."""
    if isinstance(e, qmf.QmfError):
        return "Exception", str(e)
    if isinstance(e, qmf.QmfTimeout):
        return "Timeout", str(e)
    if isinstance(e, qmf.ConnectError):
        return "ConnectError", str(e)
    return e.__class__.__name__, str(e)


def parse_command_line(parser: argparse.ArgumentParser, argv: list[str], *, help_text: str, usage_text: str,
                       usage_status: int, check=None, usage_stream=None):
    """A tool's command line, handled as qpidd's tools do: ``(opts, conn_opts, None)``; or, once ``-h``
    printed ``help_text`` (status 0) or a bad command line printed ``usage_text`` (to ``usage_stream``,
    default stderr) and ``<prog>: error: <why>`` (stderr, status ``usage_status``),
    ``(None, None, status)``. ``check(opts)`` may raise UsageError (or ValueError) for the tool's own
    rules."""
    try:
        opts = parser.parse_intermixed_args(argv)
        if opts.help:
            print(help_text, end="")
            return None, None, 0
        if check is not None:
            check(opts)
        return opts, connection_kwargs(opts), None
    except (UsageError, ValueError) as e:
        (usage_stream or sys.stderr).write(usage_text)
        print("%s: error: %s" % (parser.prog, e), file=sys.stderr)
        return None, None, usage_status


def failed(e: BaseException, stream=None) -> int:
    """A tool's failure as qpidd's tools print it (``Failed: <Class> - <text>``; Ctrl-C: an empty line);
    the exit status 1."""
    if isinstance(e, KeyboardInterrupt):
        print()
    else:
        print("Failed: %s - %s" % error_text(e), file=stream)
    return 1


def parse_int(text: str) -> int:
    try:
        return int(text, 0) if text.lower().startswith(("0x", "0o", "0b")) else int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("invalid integer value: %r" % text) from None
