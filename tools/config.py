"""qpid-config: list, add and delete queues, exchanges and bindings (qpidd's tool, in Python 3).

Speaks QMF v2 over AMQP 1.0 through cypid.tools.qmf, so it manages cypid or a stock qpidd.
"""
from __future__ import annotations

import sys
from typing import Any, Callable

from . import qmf
from .common import (BROKER_ADDRESS_HELP, QuietParser, UsageError, add_connection_options,
                     connection_kwargs, error_text, parse_int)
from .display import Display

USAGE = """\
Usage:  qpid-config [OPTIONS]
        qpid-config [OPTIONS] exchanges [filter-string]
        qpid-config [OPTIONS] queues    [filter-string]
        qpid-config [OPTIONS] add exchange <type> <name> [AddExchangeOptions]
        qpid-config [OPTIONS] del exchange <name>
        qpid-config [OPTIONS] add queue <name> [AddQueueOptions]
        qpid-config [OPTIONS] del queue <name> [DelQueueOptions]
        qpid-config [OPTIONS] bind   <exchange-name> <queue-name> [binding-key]
                  <for type xml>     [-f -|filename]
                  <for type header>  [all|any] k1=v1 [, k2=v2...]
        qpid-config [OPTIONS] unbind <exchange-name> <queue-name> [binding-key]
        qpid-config [OPTIONS] reload-acl
        qpid-config [OPTIONS] add <type> <name> [--argument <property-name>=<property-value>]
        qpid-config [OPTIONS] del <type> <name>
        qpid-config [OPTIONS] list <type> [--show-property <property-name>]
        qpid-config [OPTIONS] log [<logstring>]
        qpid-config [OPTIONS] shutdown
"""

HELP = USAGE + """
Options:
    -h [ --help ]                             Show this help message and exit
    -t [ --timeout ] N (10)                   Maximum time to wait for broker connection (in seconds)
    -r [ --recursive ]                        Show bindings in queue or exchange list
    -b [ --bindings ]                         Show bindings in queue or exchange list
                                              (-b is --bindings when -a gives the broker, or when a
                                              command or nothing follows it; else it is --broker)
    -b [ --broker ] Address (localhost)       Address of qpidd broker
    -a [ --broker-addr ] Address (localhost)  Address of qpidd broker
""" + BROKER_ADDRESS_HELP + """
    --sasl-mechanism <mech>                   SASL mechanism for authentication (e.g. EXTERNAL,
                                              ANONYMOUS, PLAIN, CRAM-MD5, DIGEST-MD5, GSSAPI)
    --sasl-service-name <name>                SASL service name to use
    --ssl-certificate <cert>                  Client SSL certificate (PEM Format)
    --ssl-key <key>                           Client SSL private key (PEM Format)
    --ha-admin                                Allow connection to a HA backup broker

Listing Options:
    --ignore-default     Ignore the default exchange in exchange or queue list

Add Exchange and Queue Options:
    --alternate-exchange <aexname>
                         Name of the alternate-exchange for the new queue or exchange.
                         Exchanges route messages to the alternate exchange if they are
                         unable to route them elsewhere. Queues route messages to the
                         alternate exchange if they are rejected by a subscriber or
                         orphaned by queue deletion.
    --durable            The new queue or exchange is durable.
    --replicate <level>  Enable automatic replication in a HA cluster. <level> is 'none',
                         'configuration' or 'all'.

Add Queue Options:
    --file-count N (8)   Number of files in queue's persistence journal
    --file-size  N (24)  File size in pages (64Kib/page)
    --efp-partition-num N
                         Number of the EFP partition for the journal files
    --efp-pool-file-size N
                         File size of the EFP pool (in KiB) the journal files come from
    --max-queue-size N   Maximum in-memory queue size as bytes
    --max-queue-count N  Maximum in-memory queue size as a number of messages
    --limit-policy [none | reject | flow-to-disk | ring | ring-strict]
                         Action taken when queue limit is reached:
                             none (default) - Use broker's default policy
                             reject         - Reject enqueued messages
                             flow-to-disk   - Page messages to disk
                             ring           - Replace oldest unacquired message with new
                             ring-strict    - Replace oldest message, reject if oldest is acquired
    --order [fifo | lvq | lvq-no-browse]
                         Set queue ordering policy:
                             fifo (default) - First in, first out
                             lvq            - Last Value Queue ordering, allows queue browsing
                             lvq-no-browse  - Last Value Queue ordering, browsing clients may lose data
    --lvq-key <key>      Last Value Queue key
    --generate-queue-events N
                         If set to 1, every enqueue will generate an event that can be processed
                         by registered listeners (e.g. for replication). If set to 2, events will
                         be generated for enqueues and dequeues
    --flow-stop-size N   Turn on sender flow control when the number of queued bytes exceeds this value.
    --flow-resume-size N Turn off sender flow control when the number of queued bytes drops below this value.
    --flow-stop-count N  Turn on sender flow control when the number of queued messages exceeds this value.
    --flow-resume-count N
                         Turn off sender flow control when the number of queued messages drops below this value.
    --group-header <header-name>
                         Enable message groups. Specify name of header that holds group identifier.
    --shared-groups      Allow message group consumption across multiple consumers.
    --argument <NAME=VALUE>
                         Specify a key-value pair to add to queue arguments (repeatable)
    --start-replica <broker-url>
                         Start replication from the same-named queue at <broker-url>

Add Exchange Options:
    --sequence   Exchange will insert a 'qpid.msg_sequence' field in the message header
                 with a value that increments for each message forwarded.
    --ive        Exchange will behave as an 'initial-value-exchange', keeping a reference
                 to the last message forwarded and enqueuing that message to newly bound
                 queues.

Delete Queue Options:
    --force               Force delete of queue even if it's currently used or it's not empty
    --force-if-not-empty  Force delete of queue even if it's not empty
    --force-if-used       Force delete of queue even if it's currently used

Bind Options:
    -f [ --file ] <file.xq>  For XML Exchange bindings - specifies the name of a file containing
                             an XQuery ('-' reads it from standard input).

List Options:
    --show-property <property-name>  Specify a property of an object to be listed (repeatable)

Exchange types: direct, fanout, topic, headers, xml.
"""

COMMANDS = ("exchanges", "queues", "add", "del", "bind", "unbind", "reload-acl", "list", "log", "shutdown")
LIMIT_POLICIES = ("none", "reject", "ring", "ring-strict", "flow-to-disk")
#: what --limit-policy sends as qpid.policy_type (none sends nothing)
POLICY_VALUES = {"reject": "reject", "ring": "ring", "ring-strict": "ring_strict",
                 "flow-to-disk": "flow_to_disk"}
ORDERS = ("fifo", "lvq", "lvq-no-browse")
REPLICATE_LEVELS = ("none", "configuration", "all")

# queue arguments qpid-config shows as its own options (others: --argument k=v)
FILECOUNT = "qpid.file_count"
FILESIZE = "qpid.file_size"
EFP_PARTITION_NUM = "qpid.efp_partition_num"
EFP_POOL_FILE_SIZE = "qpid.efp_pool_file_size"
MAX_QUEUE_SIZE = "qpid.max_size"
MAX_QUEUE_COUNT = "qpid.max_count"
POLICY_TYPE = "qpid.policy_type"
LVQ_KEY = "qpid.last_value_queue_key"
LVQ = "qpid.last_value_queue"
LVQNB = "qpid.last_value_queue_no_browse"
QUEUE_EVENT_GENERATION = "qpid.queue_event_generation"
FLOW_STOP_SIZE = "qpid.flow_stop_size"
FLOW_RESUME_SIZE = "qpid.flow_resume_size"
FLOW_STOP_COUNT = "qpid.flow_stop_count"
FLOW_RESUME_COUNT = "qpid.flow_resume_count"
MSG_GROUP_HDR_KEY = "qpid.group_header_key"
SHARED_MSG_GROUP = "qpid.shared_msg_group"
REPLICATE = "qpid.replicate"
MSG_SEQUENCE = "qpid.msg_sequence"
IVE = "qpid.ive"

#: listed as their own attribute, in this order, by `queues`
QUEUE_SPECIAL_ARGS = [
    ("durable", None), (REPLICATE, "--replicate=%s"), ("auto-delete", None), ("exclusive", None),
    (FILESIZE, "--file-size=%s"), (FILECOUNT, "--file-count=%s"),
    (EFP_PARTITION_NUM, "--efp-partition-num=%s"), (EFP_POOL_FILE_SIZE, "--efp-pool-file-size=%s"),
    (MAX_QUEUE_SIZE, "--max-queue-size=%s"), (MAX_QUEUE_COUNT, "--max-queue-count=%s"),
    (POLICY_TYPE, "--limit-policy=%s"), (LVQ_KEY, "--lvq-key=%s"),
    ("alternate-exchange", "--alternate-exchange=%s"),
    (FLOW_STOP_SIZE, "--flow-stop-size=%s"), (FLOW_RESUME_SIZE, "--flow-resume-size=%s"),
    (FLOW_STOP_COUNT, "--flow-stop-count=%s"), (FLOW_RESUME_COUNT, "--flow-resume-count=%s"),
    (MSG_GROUP_HDR_KEY, "--group-header=%s"), (SHARED_MSG_GROUP, "--shared-groups"),
    (QUEUE_EVENT_GENERATION, "--generate-queue-events=%s"),
]
QUEUE_SHOWN = {k for k, _ in QUEUE_SPECIAL_ARGS} | {LVQ, LVQNB}


def build_parser() -> QuietParser:
    p = QuietParser(prog="qpid-config", add_help=False, allow_abbrev=False)
    p.add_argument("-h", "--help", action="store_true")
    p.add_argument("-t", "--timeout", type=parse_int, default=10)
    p.add_argument("-r", "--recursive", "--bindings", dest="recursive", action="store_true")
    p.add_argument("-b", "--broker", dest="broker")
    p.add_argument("-a", "--broker-addr", dest="broker_addr")
    add_connection_options(p)
    p.add_argument("--ignore-default", action="store_true")
    p.add_argument("--alternate-exchange", dest="alternate_exchange")
    p.add_argument("--durable", action="store_true")
    p.add_argument("--replicate")
    for name in ("file-count", "file-size", "efp-partition-num", "efp-pool-file-size",
                 "max-queue-size", "max-queue-count", "flow-stop-size", "flow-resume-size",
                 "flow-stop-count", "flow-resume-count", "generate-queue-events"):
        p.add_argument("--" + name, type=parse_int, metavar="N")
    p.add_argument("--limit-policy", choices=LIMIT_POLICIES)
    p.add_argument("--order", choices=ORDERS)
    p.add_argument("--lvq-key")
    p.add_argument("--group-header")
    p.add_argument("--shared-groups", action="store_true")
    p.add_argument("--argument", action="append", default=[])
    p.add_argument("--start-replica")
    p.add_argument("--sequence", action="store_true")
    p.add_argument("--ive", action="store_true")
    p.add_argument("--force", action="store_true")
    p.add_argument("--force-if-not-empty", action="store_true")
    p.add_argument("--force-if-used", action="store_true")
    p.add_argument("-f", "--file")
    p.add_argument("--show-property", action="append", default=[])
    p.add_argument("args", nargs="*")
    return p


def preprocess(argv: list[str]) -> list[str]:
    """qpidd's old form used ``-b`` for --bindings and ``-a`` for the broker
    (``qpid-config -a host -b exchanges``); today's uses ``-b`` for the broker. ``-b`` is taken as
    --bindings when -a/--broker-addr is given, or when a command word, an option or nothing follows."""
    has_a = any(a in ("-a", "--broker-addr") or a.startswith("--broker-addr=")
                or (a.startswith("-a") and not a.startswith("--")) for a in argv)
    out = []
    for i, a in enumerate(argv):
        if a == "--":
            out.extend(argv[i:])
            break
        if a == "-b":
            nxt = argv[i + 1] if i + 1 < len(argv) else None
            if has_a or nxt is None or nxt in COMMANDS or nxt.startswith("-"):
                out.append("--bindings")
                continue
        out.append(a)
    return out


def parse_argument(text: str) -> tuple[str, Any]:
    """``--argument NAME=VALUE``: split at the first '='; an int if it reads as one, else text;
    no '=' gives None."""
    if "=" not in text:
        return text, None
    name, value = text.split("=", 1)
    try:
        return name, int(value)
    except ValueError:
        return name, value


class Config:
    """The commands, on a BrokerAgent. Output goes through ``out`` (print by default)."""

    def __init__(self, agent: qmf.BrokerAgent, opts, out: Callable[[str], None] = print):
        self.agent = agent
        self.opts = opts
        self.out = out

    # -- listing ---------------------------------------------------------------------------------
    def overview(self) -> int:
        exchanges = self.agent.get_objects("exchange")
        queues = self.agent.get_objects("queue")
        types: dict[str, int] = {}
        for ex in exchanges:
            types[ex.get("type")] = types.get(ex.get("type"), 0) + 1
        self.out("Total Exchanges: %d" % len(exchanges))
        for name, count in sorted(types.items()):   # the same order whatever order the broker lists
            self.out("%15s: %d" % (name, count))
        durable = sum(1 for q in queues if q.get("durable"))
        self.out("   Total Queues: %d" % len(queues))
        self.out("        durable: %d" % durable)
        self.out("    non-durable: %d" % (len(queues) - durable))
        return 0

    @staticmethod
    def _match(name: str, filt: str | None) -> bool:
        return not filt or filt in name

    def exchanges(self, filt: str | None) -> int:
        exchanges = [ex for ex in self.agent.get_objects("exchange") if self._match(ex.get("name", ""), filt)]
        if self.opts.ignore_default:
            exchanges = [ex for ex in exchanges if ex.get("name")]
        if not exchanges:
            return 1 if filt else 0
        if self.opts.recursive:
            return self._exchanges_recursive(exchanges)
        width = max([len("Exchange Name")] + [len(ex.get("name", "")) for ex in exchanges])
        self.out("Type      " + "%-*s" % (width, "Exchange Name") + "  Attributes")
        self.out("=====" * ((width + 10) // 5 + 5))
        for ex in exchanges:
            args = ex.get("arguments") or {}
            line = "%-10s%-*s " % (ex.get("type", ""), width, ex.get("name", ""))
            if ex.get("durable"):
                line += " --durable"
            if REPLICATE in args:
                line += " --replicate=%s" % args[REPLICATE]
            if args.get(MSG_SEQUENCE):
                line += " --sequence"
            if args.get(IVE):
                line += " --ive"
            alt = ex.get("altExchange")
            if alt:
                line += " --alternate-exchange=%s" % alt
            self.out(line.rstrip())
        return 0

    def _bindings(self) -> list[qmf.QmfObject]:
        return self.agent.get_objects("binding")

    def _exchanges_recursive(self, exchanges) -> int:
        bindings = self._bindings()
        queue_names = {q.object_name: q.get("name") for q in self.agent.get_objects("queue")}
        for ex in exchanges:
            self.out("Exchange '%s' (%s)" % (ex.get("name", ""), ex.get("type", "")))
            for b in bindings:
                if b.ref("exchangeRef") != ex.object_name:
                    continue
                qref = b.ref("queueRef")
                qname = queue_names.get(qref, qmf.strip_ref(qref) if qref else "<unknown>")
                line = "    bind %s => %s" % (b.get("bindingKey", ""), qname)
                args = b.get("arguments")
                if args:
                    line += " %s" % (args,)
                self.out(line)
        return 0

    def queues(self, filt: str | None) -> int:
        queues = [q for q in self.agent.get_objects("queue") if self._match(q.get("name", ""), filt)]
        if filt and not queues:
            return 1
        if self.opts.recursive:
            return self._queues_recursive(queues)
        width = max([len("Queue Name")] + [len(q.get("name", "")) for q in queues])
        self.out("%-*s  Attributes" % (width, "Queue Name"))
        self.out("=====" * (width // 5 + 5))
        for q in queues:
            self.out(("%-*s " % (width, q.get("name", "")) + self.queue_attributes(q)).rstrip())
        return 0

    @staticmethod
    def queue_attributes(q: qmf.QmfObject) -> str:
        args = dict(q.get("arguments") or {})
        out = ""
        if q.get("durable"):
            out += " --durable"
        if REPLICATE in args:
            out += " --replicate=%s" % args[REPLICATE]
        if q.get("autoDelete"):
            out += " auto-del"
        if q.get("exclusive"):
            out += " excl"
        for key, fmt in QUEUE_SPECIAL_ARGS[4:]:
            if key == "alternate-exchange":
                alt = q.get("altExchange") or args.get(key)
                if alt:
                    out += " --alternate-exchange=%s" % alt
                continue
            if key not in args:
                continue
            value = args[key]
            if key == SHARED_MSG_GROUP:
                if str(value) in ("1", "True", "true"):
                    out += " --shared-groups"
                continue
            if key == POLICY_TYPE:
                value = str(value).replace("_", "-")
            out += " " + fmt % (value,)
        if args.get(LVQ):
            out += " --order=lvq"
        if args.get(LVQNB):
            out += " --order=lvq-no-browse"
        others = ["--argument %s=%s" % (k, v) for k, v in args.items()
                  if k not in QUEUE_SHOWN and k not in ("durable", "alternate-exchange")]
        if others:
            out += " " + " ".join(others)
        return out

    def _queues_recursive(self, queues) -> int:
        bindings = self._bindings()
        for q in queues:
            self.out("Queue '%s'" % q.get("name", ""))
            for b in bindings:
                if b.ref("queueRef") != q.object_name:
                    continue
                exref = b.ref("exchangeRef") or ""
                exname = qmf.strip_ref(exref)
                if not exname:
                    if self.opts.ignore_default:
                        continue
                    exname = "''"
                line = "    bind %s => %s" % (b.get("bindingKey", ""), exname)
                args = b.get("arguments")
                if args:
                    line += " %s" % (args,)
                self.out(line)
        return 0

    def list_objects(self, type_name: str) -> int:
        objects = self.agent.get_objects(type_name.lower())
        props = list(self.opts.show_property)
        if not props:
            if type_name.lower() == "exchange":
                props = ["name", "type", "durable"]
            elif type_name.lower() == "queue":
                props = ["name", "durable", "autoDelete"]
            elif objects:
                keys = [k for k in objects[0].values if k != "name"]
                props = (["name"] if "name" in objects[0].values else []) + keys
                props = props[:6]
        else:
            if objects:
                for p in props:
                    if p not in objects[0].values:
                        self.out("Warning: No such property '%s' for type '%s'" % (p, type_name))
        rows = []
        for obj in objects:
            row = []
            for p in props:
                v = obj.get(p, "n/a") if p in obj.values else "n/a"
                row.append(v if isinstance(v, str) else str(v))
            rows.append(row)
        Display(prefix="  ", out=self.out).table("Objects of type '%s'" % type_name, props, rows)
        return 0

    # -- adding and deleting -------------------------------------------------------------------------
    def _common_add_props(self) -> dict:
        props: dict[str, Any] = {}
        for text in self.opts.argument:
            k, v = parse_argument(text)
            props[k] = v
        if self.opts.alternate_exchange:
            props["alternate-exchange"] = self.opts.alternate_exchange
        if self.opts.durable:
            props["durable"] = True
        if self.opts.replicate:
            props[REPLICATE] = self.opts.replicate
        return props

    def queue_properties(self) -> dict:
        o = self.opts
        props = self._common_add_props()
        if o.durable:
            for value, key in ((o.file_count, FILECOUNT), (o.file_size, FILESIZE),
                               (o.efp_partition_num, EFP_PARTITION_NUM),
                               (o.efp_pool_file_size, EFP_POOL_FILE_SIZE)):
                if value is not None:
                    props[key] = value
        for value, key in ((o.max_queue_size, MAX_QUEUE_SIZE), (o.max_queue_count, MAX_QUEUE_COUNT),
                           (o.flow_stop_size, FLOW_STOP_SIZE), (o.flow_resume_size, FLOW_RESUME_SIZE),
                           (o.flow_stop_count, FLOW_STOP_COUNT), (o.flow_resume_count, FLOW_RESUME_COUNT),
                           (o.generate_queue_events, QUEUE_EVENT_GENERATION)):
            if value is not None:
                props[key] = value
        if o.limit_policy and o.limit_policy != "none":
            props[POLICY_TYPE] = POLICY_VALUES[o.limit_policy]
        if o.lvq_key:
            props[LVQ_KEY] = o.lvq_key
        if o.order == "lvq":
            props[LVQ] = 1
        elif o.order == "lvq-no-browse":
            props[LVQNB] = 1
        if o.group_header:
            props[MSG_GROUP_HDR_KEY] = o.group_header
        if o.shared_groups:
            props[SHARED_MSG_GROUP] = 1
        return props

    def exchange_properties(self, ex_type: str) -> dict:
        props = {"exchange-type": ex_type}
        props.update(self._common_add_props())
        if self.opts.sequence:
            props[MSG_SEQUENCE] = 1
        if self.opts.ive:
            props[IVE] = 1
        return props

    def add_queue(self, name: str) -> int:
        self.agent.create("queue", name, self.queue_properties(), strict=True)
        if self.opts.start_replica:
            self.agent.call("org.apache.qpid.ha:habroker:ha-broker", "replicate",
                            {"broker": self.opts.start_replica, "queue": name})
        return 0

    def del_queue(self, name: str) -> int:
        o = self.opts
        if_empty = not (o.force or o.force_if_not_empty)
        if_unused = not (o.force or o.force_if_used)
        self.agent.delete("queue", name, {"if_empty": if_empty, "if_unused": if_unused})
        return 0

    def add_exchange(self, ex_type: str, name: str) -> int:
        self.agent.create("exchange", name, self.exchange_properties(ex_type), strict=True)
        return 0

    def del_exchange(self, name: str) -> int:
        self.agent.delete("exchange", name)
        return 0

    def add_object(self, type_name: str, name: str) -> int:
        props = {}
        for text in self.opts.argument:
            k, v = parse_argument(text)
            props[k] = v
        self.agent.create(type_name, name, props, strict=False)
        return 0

    def del_object(self, type_name: str, name: str) -> int:
        self.agent.delete(type_name, name, {})
        return 0

    # -- bindings -------------------------------------------------------------------------------------
    def bind(self, args: list[str]) -> int:
        ename, qname = args[0], args[1]
        rest = args[2:]
        ex = self.agent.get_exchange(ename)
        ex_type = ex.get("type") if ex is not None else None
        key = ""
        arguments: dict[str, Any] = {}
        if ex_type == "headers":
            # `bind amq.match q all k=v` (no key) as well as qpidd's `bind amq.match q key all k=v`
            if rest and rest[0] in ("all", "any"):
                match_args = rest
            else:
                key = rest[0] if rest else ""
                match_args = rest[1:]
            arguments = parse_header_args(match_args)
        else:
            key = rest[0] if rest else ""
            if ex_type == "xml":
                arguments = {"xquery": read_xquery(self.opts.file)}
            elif len(rest) > 1:
                raise UsageError("too many arguments for a binding to a %s exchange: %s"
                                 % (ex_type or "missing", " ".join(rest[1:])))
        self.agent.create("binding", "%s/%s/%s" % (ename, qname, key), arguments, strict=True)
        return 0

    def unbind(self, args: list[str]) -> int:
        key = args[2] if len(args) > 2 else ""
        self.agent.delete("binding", "%s/%s/%s" % (args[0], args[1], key), {})
        return 0

    # -- broker-wide --------------------------------------------------------------------------------
    def reload_acl(self) -> int:
        try:
            self.agent.call("org.apache.qpid.acl:acl:" + qmf.BROKER_OBJECT, "reloadACLFile", {})
        except qmf.QmfError as e:
            if "No object found" in e.error_text:
                self.out("Failed: ACL Module Not Loaded in Broker")
                return 1
            raise
        return 0

    def log(self, level: str | None) -> int:
        if level is None:
            out = self.agent.broker_call("getLogLevel", {})
            self.out("Log level: %s" % out.get("level", ""))
        else:
            self.agent.broker_call("setLogLevel", {"level": level})
        return 0

    def shutdown(self) -> int:
        try:
            self.agent.broker_call("shutdown", {}, timeout=5)
        except (qmf.ConnectError, qmf.QmfTimeout):
            pass  # the broker went away, as asked
        return 0


def parse_header_args(tokens: list[str]) -> dict:
    """``all|any k1=v1 [, k2=v2 ...]`` -> binding arguments (values sent as strings, as qpidd's tool)."""
    if not tokens:
        raise UsageError("Invalid args to bind headers:  need 'any'/'all' plus conditions")
    op = tokens[0]
    if op not in ("all", "any"):
        raise UsageError("Invalid condition arg to bind headers, need 'any' or 'all', not '%s'" % op)
    pairs = [p.strip() for t in tokens[1:] for p in t.split(",") if p.strip()]
    if not pairs:
        raise UsageError("Invalid args to bind headers:  need 'any'/'all' plus conditions")
    out: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair:
            raise UsageError("Invalid header match '%s': expected key=value" % pair)
        k, v = pair.split("=", 1)
        if not k:
            raise UsageError("Invalid header match '%s': empty key" % pair)
        out[k] = v
    out["x-match"] = op
    return out


def read_xquery(path: str | None) -> str:
    if not path:
        raise UsageError("Invalid args to bind xml:  need an input file or stdin")
    if path == "-":
        return sys.stdin.read()
    try:
        with open(path) as f:
            return f.read()
    except OSError as e:
        raise UsageError("Unable to read XQuery file '%s': %s" % (path, e.strerror)) from None


def check_command(opts) -> None:
    """Reject a bad command line before connecting (so nothing changes)."""
    args = opts.args
    if opts.replicate and opts.replicate not in REPLICATE_LEVELS:
        raise UsageError("Invalid replication level '%s', should be one of: %s"
                         % (opts.replicate, ", ".join(REPLICATE_LEVELS)))
    if not args:
        return
    cmd = args[0]
    if cmd not in COMMANDS:
        raise UsageError("unknown command '%s'" % cmd)
    n = len(args)
    if cmd in ("exchanges", "queues"):
        if n > 2:
            raise UsageError("too many arguments for '%s'" % cmd)
    elif cmd == "add":
        if n < 2:
            raise UsageError("add what? (queue, exchange or an object type)")
        if args[1] == "exchange":
            if n != 4:
                raise UsageError("add exchange needs <type> <name>")
        elif n != 3:
            raise UsageError("add %s needs <name>" % args[1])
        for text in opts.argument:
            if not text.split("=", 1)[0]:
                raise UsageError("invalid --argument '%s': expected NAME=VALUE" % text)
    elif cmd == "del":
        if n != 3:
            raise UsageError("del %s needs <name>" % (args[1] if n > 1 else "<type>"))
    elif cmd in ("bind", "unbind"):
        if n < 3:
            raise UsageError("%s needs <exchange-name> <queue-name> [binding-key]" % cmd)
        if cmd == "unbind" and n > 4:
            raise UsageError("too many arguments for unbind")
    elif cmd == "list":
        if n != 2:
            raise UsageError("list needs <type>")
    elif cmd == "log":
        if n > 2:
            raise UsageError("too many arguments for log")
    elif n != 1:
        raise UsageError("too many arguments for '%s'" % cmd)
    for opt, name in ((opts.file_count, "file-count"), (opts.file_size, "file-size"),
                      (opts.max_queue_size, "max-queue-size"), (opts.max_queue_count, "max-queue-count"),
                      (opts.flow_stop_size, "flow-stop-size"), (opts.flow_resume_size, "flow-resume-size"),
                      (opts.flow_stop_count, "flow-stop-count"), (opts.flow_resume_count, "flow-resume-count")):
        if opt is not None and opt < 0:
            raise UsageError("--%s must not be negative: %d" % (name, opt))


def run(opts, agent: qmf.BrokerAgent, out: Callable[[str], None] = print) -> int:
    cfg = Config(agent, opts, out)
    args = opts.args
    if not args:
        return cfg.overview()
    cmd = args[0]
    if cmd == "exchanges":
        return cfg.exchanges(args[1] if len(args) > 1 else None)
    if cmd == "queues":
        return cfg.queues(args[1] if len(args) > 1 else None)
    if cmd == "add":
        if args[1] == "queue":
            return cfg.add_queue(args[2])
        if args[1] == "exchange":
            return cfg.add_exchange(args[2], args[3])
        return cfg.add_object(args[1], args[2])
    if cmd == "del":
        if args[1] == "queue":
            return cfg.del_queue(args[2])
        if args[1] == "exchange":
            return cfg.del_exchange(args[2])
        return cfg.del_object(args[1], args[2])
    if cmd == "bind":
        return cfg.bind(args[1:])
    if cmd == "unbind":
        return cfg.unbind(args[1:])
    if cmd == "list":
        return cfg.list_objects(args[1])
    if cmd == "reload-acl":
        return cfg.reload_acl()
    if cmd == "log":
        return cfg.log(args[1] if len(args) > 1 else None)
    if cmd == "shutdown":
        return cfg.shutdown()
    raise UsageError("unknown command '%s'" % cmd)  # pragma: no cover - check_command caught it


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    qmf.PROGRAM = "qpid-config"
    try:
        opts = build_parser().parse_intermixed_args(preprocess(argv))
        if opts.help:
            print(HELP, end="")
            return 0
        check_command(opts)
        conn_opts = connection_kwargs(opts)
    except UsageError as e:
        sys.stderr.write(USAGE)
        print("qpid-config: error: %s" % e, file=sys.stderr)
        return 1
    broker = opts.broker_addr or opts.broker or "localhost"
    timeout = opts.timeout or None
    agent = None
    try:
        agent = qmf.connect(broker, timeout=timeout, **conn_opts)
        return run(opts, agent)
    except UsageError as e:
        print("qpid-config: error: %s" % e, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print()
        return 1
    except Exception as e:
        name, text = error_text(e)
        print("Failed: %s: %s" % (name, text), file=sys.stderr)
        return 1
    finally:
        if agent is not None:
            agent.close()


if __name__ == "__main__":
    sys.exit(main())
