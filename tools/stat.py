"""qpid-stat: broker, connection, exchange, queue, subscription and memory statistics.

qpidd's tool in Python 3, on the shared QMF console (cypid.tools.qmf).
"""
from __future__ import annotations

import sys
from typing import Callable

from . import qmf
from .common import QuietParser, UsageError, add_connection_options, failed, parse_command_line, parse_int
from .display import COMMAS, DURATION, KMG, NONE, TIME_LONG, Y, YN, Display, Header, Sorter, format_cell

USAGE = "Usage: qpid-stat -g [options] | -c | -e | -q [queue-name] | -u | -m | --acl\n"

HELP = USAGE + """
Options:
  -h, --help            show this help message and exit

  General Options:
    -t <secs>, --timeout=<secs>
                        Maximum time to wait for broker connection (in
                        seconds)
    --sasl-mechanism=<mech>
                        SASL mechanism for authentication (e.g. EXTERNAL,
                        ANONYMOUS, PLAIN, CRAM-MD5, DIGEST-MD5, GSSAPI). SASL
                        automatically picks the most secure available
                        mechanism - use this option to override.
    --sasl-service-name=<name>
                        SASL service name to use
    --ssl-certificate=<cert>
                        Client SSL certificate (PEM Format)
    --ssl-key=<key>     Client SSL private key (PEM Format)
    -b <url>, --broker=<url>
                        URL of the broker to query
    --ha-admin          Allow connection to a HA backup broker.

  Command Options:
    -g, --general       Show General Broker Stats
    -c, --connections   Show Connections
    -e, --exchanges     Show Exchanges
    -q, --queues        Show Queues
    -u, --subscriptions
                        Show Subscriptions
    -m, --memory        Show Broker Memory Stats
    --acl               Show Access Control List Stats

  Display Options:
    -S <colname>, --sort-by=<colname>
                        Sort by column name
    -I, --increasing    Sort by increasing value (default = decreasing)
    -L <n>, --limit=<n>
                        Limit output to n rows
"""

NO_COMMAND = ("You must specify one of these options: -g, -c, -e, -q, -m, or -u. "
              "For details, try $ qpid-stat --help")

#: (row name, message statistic, byte statistic or None)
BROKER_STATS = [
    ("queue-depth", "msgDepth", "byteDepth"),
    ("total-enqueues", "msgTotalEnqueues", "byteTotalEnqueues"),
    ("total-dequeues", "msgTotalDequeues", "byteTotalDequeues"),
    ("persistent-enqueues", "msgPersistEnqueues", "bytePersistEnqueues"),
    ("persistent-dequeues", "msgPersistDequeues", "bytePersistDequeues"),
    ("transactional-enqueues", "msgTxnEnqueues", "byteTxnEnqueues"),
    ("transactional-dequeues", "msgTxnDequeues", "byteTxnDequeues"),
    ("flow-to-disk-depth", "msgFtdDepth", "byteFtdDepth"),
    ("flow-to-disk-enqueues", "msgFtdEnqueues", "byteFtdEnqueues"),
    ("flow-to-disk-dequeues", "msgFtdDequeues", "byteFtdDequeues"),
    ("acquires", "acquires", None),
    ("releases", "releases", None),
    ("discards-no-route", "discardsNoRoute", None),
    ("discards-ttl-expired", "discardsTtl", None),
    ("discards-limit-overflow", "discardsOverflow", None),
    ("discards-ring-overflow", "discardsRing", None),
    ("discards-lvq-replace", "discardsLvq", None),
    ("discards-subscriber-reject", "discardsSubscriber", None),
    ("discards-purged", "discardsPurge", None),
    ("reroutes", "reroutes", None),
    ("abandoned", "abandoned", None),
    ("abandoned-via-alt", "abandonedViaAlt", None),
]
QUEUE_STATS = [row for row in BROKER_STATS if row[0] not in ("discards-no-route", "abandoned", "abandoned-via-alt")]

COLUMNS = {
    "general": ["uptime", "cluster", "connections", "sessions", "exchanges", "queues"],
    "connections": ["connection", "cproc", "cpid", "mech", "auth", "connected", "idle", "msgIn", "msgOut"],
    "exchanges": ["exchange", "type", "dur", "bind", "msgIn", "msgOut", "msgDrop", "byteIn", "byteOut",
                  "byteDrop"],
    "queues": ["queue", "dur", "autoDel", "excl", "msg", "msgIn", "msgOut", "bytes", "bytesIn", "bytesOut",
               "cons", "bind"],
    "subscriptions": ["subscr", "queue", "conn", "procName", "procId", "browse", "acked", "excl",
                      "creditMode", "delivered", "sessUnacked"],
}


def build_parser() -> QuietParser:
    p = QuietParser(prog="qpid-stat", add_help=False, allow_abbrev=False)
    p.add_argument("-h", "--help", action="store_true")
    p.add_argument("-t", "--timeout", type=parse_int, default=10)
    p.add_argument("-b", "--broker", default="localhost")
    add_connection_options(p)
    for short, long_, const in (("-g", "--general", "general"), ("-c", "--connections", "connections"),
                                ("-e", "--exchanges", "exchanges"), ("-q", "--queues", "queues"),
                                ("-u", "--subscriptions", "subscriptions"), ("-m", "--memory", "memory")):
        p.add_argument(short, long_, dest="show", action="store_const", const=const)
    p.add_argument("--acl", dest="show", action="store_const", const="acl")
    p.add_argument("-S", "--sort-by", dest="sort_by")
    p.add_argument("-I", "--increasing", action="store_true")
    p.add_argument("-L", "--limit", type=parse_int, default=50)
    p.add_argument("args", nargs="*")
    return p


def _count(value) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


class Stat:
    def __init__(self, agent: qmf.BrokerAgent, opts, out: Callable[[str], None] = print):
        self.agent = agent
        self.opts = opts
        self.out = out
        self.display = Display(prefix="  ", out=out)
        self._broker = None

    def broker(self) -> qmf.QmfObject | None:
        if self._broker is None:
            self._broker = self.agent.get_broker()
        return self._broker

    def table(self, title: str, heads: list[Header], rows: list[list]) -> None:
        if self.opts.sort_by:
            rows = Sorter(heads, rows, self.opts.sort_by, self.opts.limit, self.opts.increasing).get_sorted()
        self.display.table(title, heads, rows)

    # -- -g ------------------------------------------------------------------------------------------
    def general(self) -> int:
        b = self.broker()
        if b is None:
            raise RuntimeError("the broker object was not found")
        uptime = b.get("uptime")
        if uptime is None:
            uptime = b.update_ts - b.create_ts
        clusters = self.agent.get_objects("cluster")
        if clusters:
            c = clusters[0]
            cluster = "%s<%s>" % (c.get("clusterName", ""), c.get("status", ""))
        else:
            cluster = "<standalone>"
        counts = [len(self.agent.get_objects(name)) for name in ("connection", "session", "exchange", "queue")]
        heads = [Header("uptime", DURATION), Header("cluster", NONE)] + \
            [Header(n, COMMAS) for n in ("connections", "sessions", "exchanges", "queues")]
        self.display.table("Broker Summary:", heads, [[uptime, cluster] + counts])
        if "queueCount" not in b.values:
            return 0
        self.out("")
        heads = [Header("Statistic"), Header("Messages", COMMAS), Header("Bytes", COMMAS)]
        rows = [[name, _count(b.get(m)), _count(b.get(by)) if by else None] for name, m, by in BROKER_STATS]
        self.display.table("Aggregate Broker Statistics:", heads, rows)
        return 0

    # -- -c ------------------------------------------------------------------------------------------
    def connections(self) -> int:
        b = self.broker()
        now = b.update_ts if b is not None and b.update_ts else None
        heads = [Header("connection"), Header("cproc"), Header("cpid"), Header("mech"), Header("auth"),
                 Header("connected", DURATION), Header("idle", DURATION), Header("msgIn", KMG),
                 Header("msgOut", KMG)]
        rows = []
        for c in self.agent.get_objects("connection"):
            ref_now = now if now is not None else c.update_ts
            rows.append([
                c.get("address"), c.get("remoteProcessName") or "-", c.get("remotePid"),
                c.get("saslMechanism") or "-", c.get("authIdentity") or "-",
                ref_now - c.create_ts, ref_now - c.update_ts,
                _count(c.get("msgsFromClient")), _count(c.get("msgsToClient"))])
        self.table("Connections", heads, rows)
        return 0

    # -- -e ------------------------------------------------------------------------------------------
    def exchanges(self) -> int:
        heads = [Header("exchange"), Header("type"), Header("dur", Y)] + \
            [Header(n, KMG) for n in ("bind", "msgIn", "msgOut", "msgDrop", "byteIn", "byteOut", "byteDrop")]
        rows = []
        for ex in self.agent.get_objects("exchange"):
            rows.append([ex.get("name"), ex.get("type"), ex.get("durable")] +
                        [_count(ex.get(s)) for s in ("bindingCount", "msgReceives", "msgRoutes", "msgDrops",
                                                    "byteReceives", "byteRoutes", "byteDrops")])
        self.table("Exchanges", heads, rows)
        return 0

    # -- -q ------------------------------------------------------------------------------------------
    def queues(self) -> int:
        heads = [Header("queue"), Header("dur", Y), Header("autoDel", Y), Header("excl", Y)] + \
            [Header(n, KMG) for n in ("msg", "msgIn", "msgOut", "bytes", "bytesIn", "bytesOut", "cons", "bind")]
        rows = []
        for q in self.agent.get_objects("queue"):
            rows.append([q.get("name"), q.get("durable"), q.get("autoDelete"), q.get("exclusive")] +
                        [_count(q.get(s)) for s in ("msgDepth", "msgTotalEnqueues", "msgTotalDequeues",
                                                   "byteDepth", "byteTotalEnqueues", "byteTotalDequeues",
                                                   "consumerCount", "bindingCount")])
        self.table("Queues", heads, rows)
        return 0

    def queue(self, name: str) -> int:
        q = self.agent.get_queue(name)
        if q is None:
            self.out("Queue '%s' not found" % name)
            return 1
        heads = [Header("Name"), Header("Durable", YN), Header("AutoDelete", YN), Header("Exclusive", YN),
                 Header("FlowStopped", YN), Header("FlowStoppedCount", COMMAS), Header("Consumers", COMMAS),
                 Header("Bindings", COMMAS)]
        self.display.table("Properties:", heads, [[
            q.get("name"), q.get("durable"), q.get("autoDelete"), q.get("exclusive"), q.get("flowStopped"),
            _count(q.get("flowStoppedCount")), _count(q.get("consumerCount")), _count(q.get("bindingCount"))]])
        self.out("")
        rows = [["arguments", repr(q.get("arguments") or {})]]
        alt = q.get("altExchange")
        rows.append(["alt-exchange", alt if alt else ""])
        self.display.table("Optional Properties:", [Header("Property"), Header("Value")], rows)
        self.out("")
        heads = [Header("Statistic"), Header("Messages", COMMAS), Header("Bytes", COMMAS)]
        rows = [[n, _count(q.get(m)), _count(q.get(by)) if by else None] for n, m, by in QUEUE_STATS]
        self.display.table("Statistics:", heads, rows)
        return 0

    # -- -u ------------------------------------------------------------------------------------------
    def subscriptions(self) -> int:
        heads = [Header("subscr"), Header("queue"), Header("conn"), Header("procName"), Header("procId"),
                 Header("browse", Y), Header("acked", Y), Header("excl", Y), Header("creditMode"),
                 Header("delivered", COMMAS), Header("sessUnacked", COMMAS)]
        sessions = {s.object_name: s for s in self.agent.get_objects("session")}
        connections = {c.object_name: c for c in self.agent.get_objects("connection")}
        rows = []
        for s in self.agent.get_objects("subscription"):
            sess = sessions.get(s.ref("sessionRef"))
            conn = connections.get(sess.ref("connectionRef")) if sess is not None else None
            if sess is None or conn is None:
                continue  # as qpidd's tool: skipped silently
            rows.append([s.get("name"), s.get("queueRef"), conn.get("address"),
                         conn.get("remoteProcessName") or "-", conn.get("remotePid"), s.get("browsing"),
                         s.get("acknowledged"), s.get("exclusive"), s.get("creditMode"),
                         _count(s.get("delivered")), _count(sess.get("unackedMessages"))])
        self.table("Subscriptions", heads, rows)
        return 0

    # -- -m ------------------------------------------------------------------------------------------
    def memory(self) -> int:
        found = self.agent.get_objects("memory")
        rows = []
        if found:
            rows = [[k, v] for k, v in found[0].values.items() if k != "name"]
        self.display.table("Broker Memory Statistics:", [Header("Statistic"), Header("Value", COMMAS)], rows)
        return 0

    # -- --acl ---------------------------------------------------------------------------------------
    def acl(self) -> int:
        found = self.agent.get_objects("acl", package="org.apache.qpid.acl")
        if not found:
            self.out("ACL Policy Module is not installed")
            return 0
        a = found[0]
        rows = [["policy-file", a.get("policyFile")],
                ["enforcing", "Y" if a.get("enforcingAcl") else "N"],
                ["has-transfer-acls", "Y" if a.get("transferAcl") else "N"],
                ["last-acl-load", _time_long(a.get("lastAclLoad"))],
                ["acl-denials", "{:,}".format(_count(a.get("aclDenyCount")))]]
        self.display.table("ACL Policy Statistics:", [Header("Statistic"), Header("Value")], rows)
        return 0


def _time_long(ns) -> str:
    return format_cell(ns, TIME_LONG) if ns else ""


def check_sort(opts) -> None:
    if not opts.sort_by:
        return
    cols = COLUMNS.get(opts.show)
    if opts.show == "queues" and opts.args:
        cols = None
    if cols is not None and opts.sort_by not in cols:
        raise UsageError("sortCol '%s', not found in headers (%s)" % (opts.sort_by, ", ".join(cols)))


def run(opts, agent, out=print) -> int:
    stat = Stat(agent, opts, out)
    show = opts.show
    if show == "general":
        return stat.general()
    if show == "connections":
        return stat.connections()
    if show == "exchanges":
        return stat.exchanges()
    if show == "queues":
        if opts.args:
            return stat.queue(opts.args[0])
        return stat.queues()
    if show == "subscriptions":
        return stat.subscriptions()
    if show == "memory":
        return stat.memory()
    if show == "acl":
        return stat.acl()
    raise UsageError(NO_COMMAND)  # pragma: no cover


def _check(opts) -> None:
    if not opts.show:
        raise UsageError(NO_COMMAND)
    if len(opts.args) > (1 if opts.show == "queues" else 0):
        raise UsageError("unexpected argument(s): %s" % " ".join(opts.args))
    check_sort(opts)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    qmf.PROGRAM = "qpid-stat"
    opts, conn_opts, status = parse_command_line(build_parser(), argv, help_text=HELP, usage_text=USAGE + "\n",
                                                 usage_status=2, check=_check)
    if status is not None:
        return status
    agent = None
    try:
        agent = qmf.connect(opts.broker, timeout=opts.timeout or None, **conn_opts)
        return run(opts, agent)
    except (KeyboardInterrupt, Exception) as e:
        return failed(e, sys.stderr)
    finally:
        if agent is not None:
            agent.close()


if __name__ == "__main__":
    sys.exit(main())
