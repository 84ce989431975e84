"""qpidd's management schema (QMF classes, properties, statistics, methods, events), built in.

qpidd answers no QMF v2 schema query (its schema is only sent in the v1 binary protocol), so
qpid-tool's ``schema`` commands and its element order, types and units come from this table: the
classes of qpidd 1.36's ``management-schema.xml`` (packages org.apache.qpid.broker, .acl, .ha).
An agent that reports elements not listed here still has them shown (after the known ones).
"""
from __future__ import annotations

from dataclasses import dataclass, field

BROKER = "org.apache.qpid.broker"
ACL = "org.apache.qpid.acl"
HA = "org.apache.qpid.ha"

#: QMF type -> the name qpid-tool shows
TYPE_NAMES = {
    "uint8": "uint8", "uint16": "uint16", "uint32": "uint32", "uint64": "uint64",
    "int8": "int8", "int16": "int16", "int32": "int32", "int64": "int64",
    "count32": "uint32", "count64": "uint64", "hilo32": "uint32", "hilo64": "uint64",
    "sstr": "short-string", "lstr": "long-string", "absTime": "abs-time", "deltaTime": "delta-time",
    "mmaTime": "delta-time", "objId": "reference", "bool": "boolean", "float": "float", "double": "double",
    "uuid": "uuid", "map": "field-table", "list": "list",
}
ACCESS_NAMES = {"RC": "ReadCreate", "RW": "ReadWrite", "RO": "ReadOnly"}
TIME_TYPES = ("absTime", "deltaTime", "mmaTime")


@dataclass
class Element:
    name: str
    type: str
    access: str = ""          # RC/RW/RO for properties, "" for statistics
    unit: str = ""
    index: bool = False
    optional: bool = False
    desc: str = ""
    stat: bool = False

    @property
    def type_name(self) -> str:
        return TYPE_NAMES.get(self.type, self.type)

    @property
    def access_name(self) -> str:
        return ACCESS_NAMES.get(self.access, self.access)

    @property
    def notes(self) -> str:
        return ("index " if self.index else "") + ("optional " if self.optional else "")

    @property
    def is_time(self) -> bool:
        return self.type in TIME_TYPES


@dataclass
class Arg:
    name: str
    type: str
    dir: str = "I"
    unit: str = ""
    desc: str = ""
    default: object = None

    @property
    def type_name(self) -> str:
        return TYPE_NAMES.get(self.type, self.type)

    @property
    def dir_name(self) -> str:
        return {"I": "in", "O": "out", "IO": "in/out"}.get(self.dir, self.dir)


@dataclass
class Method:
    name: str
    desc: str = ""
    args: list[Arg] = field(default_factory=list)

    @property
    def in_args(self) -> list[Arg]:
        return [a for a in self.args if "I" in a.dir]


@dataclass
class SchemaClass:
    package: str
    name: str
    properties: list[Element]
    statistics: list[Element] = field(default_factory=list)
    methods: list[Method] = field(default_factory=list)
    kind: str = "table"

    @property
    def key(self) -> str:
        return "%s:%s" % (self.package, self.name)

    @property
    def index_names(self) -> list[str]:
        return [e.name for e in self.properties if e.index]

    def expanded_statistics(self) -> list[Element]:
        """Statistics as their values are named: hilo adds High/Low, mmaTime Samples/Min/Max/Average."""
        out = []
        for s in self.statistics:
            if s.type in ("hilo32", "hilo64"):
                out.append(s)
                out.append(Element(s.name + "High", s.type, unit=s.unit, desc=s.desc + " (High)", stat=True))
                out.append(Element(s.name + "Low", s.type, unit=s.unit, desc=s.desc + " (Low)", stat=True))
            elif s.type == "mmaTime":
                for suffix in ("Samples", "Min", "Max", "Average"):
                    out.append(Element(s.name + suffix, s.type, unit=s.unit,
                                       desc="%s (%s)" % (s.desc, suffix), stat=True))
            else:
                out.append(s)
        return out

    def elements(self) -> list[Element]:
        return list(self.properties) + self.expanded_statistics()

    def method(self, name: str) -> Method | None:
        for m in self.methods:
            if m.name == name:
                return m
        return None


#: value names an agent uses for mmaTime parts (the schema text says Samples/Average)
VALUE_ALIASES = {"Samples": "Count", "Average": "Avg"}


def P(name, type, access="RO", unit="", index=False, optional=False, desc=""):
    return Element(name, type, access, unit, index, optional, desc)


def S(name, type, unit="", desc=""):
    return Element(name, type, "", unit, False, False, desc, stat=True)


_ENQ_DEQ = [
    ("msgTotalEnqueues", "message", "Total messages enqueued"),
    ("msgTotalDequeues", "message", "Total messages dequeued"),
    ("msgTxnEnqueues", "message", "Transactional messages enqueued"),
    ("msgTxnDequeues", "message", "Transactional messages dequeued"),
    ("msgPersistEnqueues", "message", "Persistent messages enqueued"),
    ("msgPersistDequeues", "message", "Persistent messages dequeued"),
    ("msgDepth", "message", "Current number of messages on queue"),
    ("byteDepth", "octet", "Current size of queue in bytes"),
    ("byteTotalEnqueues", "octet", "Total messages enqueued"),
    ("byteTotalDequeues", "octet", "Total messages dequeued"),
    ("byteTxnEnqueues", "octet", "Transactional messages enqueued"),
    ("byteTxnDequeues", "octet", "Transactional messages dequeued"),
    ("bytePersistEnqueues", "octet", "Persistent messages enqueued"),
    ("bytePersistDequeues", "octet", "Persistent messages dequeued"),
    ("msgFtdEnqueues", "message", "Total message bodies released from memory and flowed-to-disk on broker"),
    ("msgFtdDequeues", "message", "Total message bodies dequeued from the broker having been flowed-to-disk"),
    ("byteFtdEnqueues", "octet", "Total bytes released from memory and flowed-to-disk on broker"),
    ("byteFtdDequeues", "octet", "Total bytes dequeued from the broker having been flowed-to-disk"),
    ("msgFtdDepth", "message", "Current number of messages flowed-to-disk"),
    ("byteFtdDepth", "octet", "Current number of bytes flowed-to-disk"),
    ("releases", "message", "Acquired messages reinserted into the queue"),
    ("acquires", "message", "Messages acquired from the queue"),
]
_DISCARDS = [
    ("discardsTtl", "Messages discarded due to TTL expiration"),
    ("discardsRing", "Messages discarded due to ring-queue overflow"),
    ("discardsLvq", "Messages discarded due to LVQ insert"),
    ("discardsOverflow", "Messages discarded due to reject-policy overflow"),
    ("discardsSubscriber", "Messages discarded due to subscriber reject"),
    ("discardsPurge", "Messages discarded due to management purge"),
    ("reroutes", "Messages dequeued to management re-route"),
]

QUEUE = SchemaClass(BROKER, "queue", [
    P("vhostRef", "objId", "RC", index=True),
    P("name", "sstr", "RC", index=True),
    P("durable", "bool", "RC"),
    P("autoDelete", "bool", "RC"),
    P("exclusive", "bool", "RO"),
    P("arguments", "map", "RO", desc="Arguments supplied in queue.declare"),
    P("altExchange", "objId", "RO", optional=True),
], [S(n, "count64", u, d) for n, u, d in _ENQ_DEQ]
   + [S(n, "count64", "message", d) for n, d in _DISCARDS]
   + [S("consumerCount", "hilo32", "consumer", "Current consumers on queue"),
      S("bindingCount", "hilo32", "binding", "Current bindings"),
      S("unackedMessages", "hilo32", "message", "Messages consumed but not yet acked"),
      S("messageLatency", "mmaTime", "nanosecond", "Broker latency through this queue"),
      S("flowStopped", "bool", desc="Flow control active."),
      S("flowStoppedCount", "count32", desc="Number of times flow control was activated for this queue"),
      S("redirectPeer", "sstr", desc="Name of the queue this queue is redirected to/from"),
      S("redirectSource", "bool", desc="This queue is the source of a redirect"),
      S("creator", "sstr", desc="Identity of the user who created this queue")],
   [Method("purge", "Discard all messages on queue", [
       Arg("request", "uint32", desc="0 for all messages or n>0 for n messages"),
       Arg("filter", "map", desc="if specified, purge only those messages matching this filter")]),
    Method("reroute", "Remove all or some messages on this queue and route them to an exchange", [
        Arg("request", "uint32", desc="0 for all messages or n>0 for n messages"),
        Arg("useAltExchange", "bool", desc="Iff true, use the queue's configured alternate exchange; "
                                           "iff false, use exchange named in the 'exchange' argument"),
        Arg("exchange", "sstr", desc="Name of the exchange to route the messages through"),
        Arg("filter", "map", desc="if specified, reroute only those messages matching this filter")])])

BROKER_CLASS = SchemaClass(BROKER, "broker", [
    P("name", "sstr", "RC", index=True, desc="Index for the broker at this agent"),
    P("systemRef", "objId", "RO", desc="System ID"),
    P("port", "uint16", "RO", desc="TCP Port for AMQP Service"),
    P("workerThreads", "uint16", "RO", desc="Thread pool size"),
    P("maxConns", "uint16", "RO", desc="Maximum allowed connections"),
    P("connBacklog", "uint16", "RO", desc="Connection backlog limit for listening socket"),
    P("stagingThreshold", "uint32", "RO", desc="Broker stages messages over this size to disk"),
    P("mgmtPublish", "bool", "RO", desc="Broker's management agent sends unsolicited data and event messages"),
    P("mgmtPubInterval", "uint16", "RW", unit="second", desc="Interval for management broadcasts"),
    P("version", "sstr", "RO", desc="Running software version"),
    P("dataDir", "lstr", "RO", optional=True, desc="Persistent configuration storage location"),
], [S("uptime", "deltaTime"), S("queueCount", "count64", "queue")]
   + [S(n, "count64", u, d.replace("queue", "broker") if n.startswith(("msgDepth", "byteDepth")) else d)
      for n, u, d in _ENQ_DEQ]
   + [S("discardsNoRoute", "count64", "message", "Messages discarded due to no-route from exchange")]
   + [S(n, "count64", "message", d) for n, d in _DISCARDS]
   + [S("abandoned", "count64", "message", "Messages left in a deleted queue"),
      S("abandonedViaAlt", "count64", "message", "Messages routed to alternate exchange from a deleted queue")],
   [Method("echo", "Request a response to test the path to the management broker", [
       Arg("sequence", "uint32", "IO"), Arg("body", "lstr", "IO")]),
    Method("connect", "Establish a connection to another broker", [
        Arg("host", "sstr"), Arg("port", "uint32"), Arg("durable", "bool"), Arg("authMechanism", "sstr"),
        Arg("username", "sstr"), Arg("password", "sstr"), Arg("transport", "sstr")]),
    Method("queueMoveMessages", "Move messages from one queue to another", [
        Arg("srcQueue", "sstr", desc="Source queue"), Arg("destQueue", "sstr", desc="Destination queue"),
        Arg("qty", "uint32", desc="# of messages to move. 0 means all messages"),
        Arg("filter", "map", desc="if specified, move only those messages matching this filter")]),
    Method("setLogLevel", "Set the log level", [Arg("level", "sstr")]),
    Method("getLogLevel", "Get the current log level", [Arg("level", "sstr", "O")]),
    Method("setTimestampConfig", "Set the message timestamping configuration",
           [Arg("receive", "bool", desc="Set true to enable timestamping received messages")]),
    Method("getTimestampConfig", "Get the message timestamping configuration",
           [Arg("receive", "bool", "O", desc="True if received messages are timestamped")]),
    Method("setLogHiresTimestamp", "Set the high resolution timestamp in logs", [Arg("logHires", "bool")]),
    Method("getLogHiresTimestamp", "Get the high resolution timestamp in logs", [Arg("logHires", "bool", "O")]),
    Method("create", "Create an object of the specified type", [
        Arg("type", "sstr", desc="The type of object to create"),
        Arg("name", "sstr", desc="The name of the object to create"),
        Arg("properties", "map", desc="Type specific object properties"),
        Arg("strict", "bool", desc="If specified, treat unrecognised object properties as an error")]),
    Method("delete", "Delete an object of the specified type", [
        Arg("type", "sstr", desc="The type of object to delete"),
        Arg("name", "sstr", desc="The name of the object to delete"),
        Arg("options", "map", desc="Type specific object options for deletion")]),
    Method("query", "Query the current state of an object.", [
        Arg("type", "sstr", desc="The type of object to query."),
        Arg("name", "sstr", desc="The name of the object to query"),
        Arg("results", "map", "O", desc="A snapshot of the object's state.")]),
    Method("queueRedirect", "Enable/disable delivery redirect for indicated queues", [
        Arg("sourceQueue", "sstr", desc="Source queue."),
        Arg("targetQueue", "sstr", desc="Redirect target queue. Blank disables redirect.")]),
    Method("shutdown", "Shutdown the broker"),
])

CLASSES: list[SchemaClass] = [
    BROKER_CLASS,
    SchemaClass(BROKER, "system", [
        P("systemId", "uuid", "RC", index=True), P("osName", "sstr", desc="Operating System Name"),
        P("nodeName", "sstr", desc="Node Name"), P("release", "sstr"), P("version", "sstr"),
        P("machine", "sstr")]),
    SchemaClass(BROKER, "memory", [
        P("name", "sstr", index=True, desc="Index for the broker at this agent"),
        P("malloc_arena", "uint64", optional=True, desc="Total size of memory allocated with `sbrk' by `malloc', in bytes"),
        P("malloc_ordblks", "uint64", optional=True, desc="Number of chunks not in use"),
        P("malloc_hblks", "uint64", optional=True, desc="Total number of chunks allocated with `mmap'"),
        P("malloc_hblkhd", "uint64", optional=True, desc="Total size of memory allocated with `mmap', in bytes"),
        P("malloc_uordblks", "uint64", optional=True, desc="Total size of memory occupied by chunks handed out by `malloc'"),
        P("malloc_fordblks", "uint64", optional=True, desc="Total size of memory occupied by free (not in use) chunks"),
        P("malloc_keepcost", "uint64", optional=True, desc="Size of the top-most releasable chunk that normally borders the end of the heap")]),
    SchemaClass(BROKER, "vhost", [
        P("brokerRef", "objId", "RC", index=True), P("name", "sstr", "RC", index=True),
        P("federationTag", "sstr")]),
    QUEUE,
    SchemaClass(BROKER, "exchange", [
        P("vhostRef", "objId", "RC", index=True), P("name", "sstr", "RC", index=True),
        P("type", "sstr", "RO"), P("durable", "bool", "RO"), P("autoDelete", "bool", "RO"),
        P("altExchange", "objId", "RO", optional=True),
        P("arguments", "map", "RO", desc="Arguments supplied in exchange.declare")],
        [S("producerCount", "hilo32", "producer", "Current producers on exchange"),
         S("bindingCount", "hilo32", "binding", "Current bindings"),
         S("msgReceives", "count64", "message", "Total messages received"),
         S("msgDrops", "count64", "message", "Total messages dropped (no matching key)"),
         S("msgRoutes", "count64", "message", "Total routed messages"),
         S("byteReceives", "count64", "octet", "Total bytes received"),
         S("byteDrops", "count64", "octet", "Total bytes dropped (no matching key)"),
         S("byteRoutes", "count64", "octet", "Total routed bytes")]),
    SchemaClass(BROKER, "binding", [
        P("exchangeRef", "objId", "RC", index=True), P("queueRef", "objId", "RC", index=True),
        P("bindingKey", "lstr", "RC", index=True),
        P("arguments", "map", "RC"), P("origin", "sstr", "RO", optional=True)],
        [S("msgMatched", "count64", "message")]),
    SchemaClass(BROKER, "subscription", [
        P("sessionRef", "objId", "RC", index=True), P("queueRef", "objId", "RC", index=True),
        P("name", "sstr", "RC", index=True), P("browsing", "bool", "RC"), P("acknowledged", "bool", "RC"),
        P("exclusive", "bool", "RC"), P("creditMode", "sstr", "RO", desc="WINDOW or CREDIT"),
        P("arguments", "map", "RC")],
        [S("delivered", "count64", "message", "Messages delivered")]),
    SchemaClass(BROKER, "connection", [
        P("vhostRef", "objId", "RC", index=True), P("address", "sstr", "RC", index=True),
        P("incoming", "bool", "RC"), P("SystemConnection", "bool", "RC", desc="Infrastructure/ Inter-system connection (Cluster, Federation, ...)"),
        P("userProxyAuth", "bool", "RO", desc="Authorization to proxy for users not on broker"),
        P("federationLink", "bool", "RO", desc="Is this a federation link"),
        P("authIdentity", "sstr", "RO", desc="authId of connection if authentication enabled"),
        P("remoteProcessName", "lstr", "RO", optional=True, desc="Name of executing program at client"),
        P("remotePid", "uint32", "RO", optional=True, desc="Process ID of client"),
        P("remoteParentPid", "uint32", "RO", optional=True, desc="Parent Process ID of client"),
        P("shadow", "bool", "RO", desc="True for shadow connections"),
        P("saslMechanism", "sstr", "RO", desc="SASL mechanism"),
        P("saslSsf", "uint16", "RO", desc="SASL security strength factor"),
        P("remoteProperties", "map", "RO", desc="optional map of identifying information sent by the remote side of the connection"),
        P("protocol", "sstr", "RO", desc="protocol in use")],
        [S("closing", "bool", desc="This client is closing by management request"),
         S("framesFromClient", "count64", "frame"), S("framesToClient", "count64", "frame"),
         S("bytesFromClient", "count64", "byte"), S("bytesToClient", "count64", "byte"),
         S("msgsFromClient", "count64", "message"), S("msgsToClient", "count64", "message")],
        [Method("close")]),
    SchemaClass(BROKER, "session", [
        P("vhostRef", "objId", "RC", index=True), P("name", "sstr", "RC", index=True),
        P("fullName", "lstr", "RO", optional=True), P("channelId", "uint16", "RO"),
        P("connectionRef", "objId", "RO"), P("detachedLifespan", "uint32", "RO", unit="second"),
        P("attached", "bool", "RO"), P("expireTime", "absTime", "RO", optional=True),
        P("maxClientRate", "uint32", "RO", unit="msgs/sec", optional=True)],
        [S("unackedMessages", "uint64", "message", "Unacknowledged messages in the session"),
         S("TxnStarts", "count64", "transaction", "Total transactions started"),
         S("TxnCommits", "count64", "transaction", "Total transactions committed"),
         S("TxnRejects", "count64", "transaction", "Total transactions rejected"),
         S("TxnCount", "count32", "transaction", "Current pending transactions"),
         S("clientCredit", "count32", "message", "Client credit for this session"),
         S("framesOutstanding", "count32", "frame", "Frames outstanding (not yet acknowledged)")],
        [Method("solicitAck"), Method("detach"), Method("resetLifespan"), Method("close")]),
    SchemaClass(BROKER, "incoming", [
        P("sessionRef", "objId", "RC"), P("containerid", "sstr", "RC", index=True),
        P("name", "sstr", "RC", index=True), P("source", "sstr", "RO"), P("target", "sstr", "RO"),
        P("domain", "sstr", "RO")],
        [S("transfers", "count64", "transfer", "Messages transferred")]),
    SchemaClass(BROKER, "outgoing", [
        P("sessionRef", "objId", "RC"), P("containerid", "sstr", "RC", index=True),
        P("name", "sstr", "RC", index=True), P("source", "sstr", "RO"), P("target", "sstr", "RO"),
        P("domain", "sstr", "RO")],
        [S("transfers", "count64", "transfer", "Messages transferred")]),
    SchemaClass(BROKER, "link", [
        P("vhostRef", "objId", "RC", index=True), P("name", "sstr", "RC", index=True),
        P("host", "sstr", "RO"), P("port", "uint16", "RO"), P("transport", "sstr", "RO"),
        P("durable", "bool", "RC"), P("connectionRef", "objId", "RO")],
        [S("state", "sstr", desc="Operational state of the link"),
         S("lastError", "lstr", desc="Reason link is not operational")],
        [Method("close"),
         Method("bridge", "Bridge messages over the link", [
             Arg("durable", "bool"), Arg("src", "sstr"), Arg("dest", "sstr"), Arg("key", "lstr"),
             Arg("tag", "sstr"), Arg("excludes", "sstr"), Arg("srcIsQueue", "bool"),
             Arg("srcIsLocal", "bool"), Arg("dynamic", "bool"), Arg("sync", "uint16"),
             Arg("credit", "uint32", default=0xFFFFFFFF)])]),
    SchemaClass(BROKER, "bridge", [
        P("linkRef", "objId", "RC", index=True), P("name", "sstr", "RC", index=True),
        P("channelId", "uint16", "RO"), P("durable", "bool", "RC"), P("src", "sstr", "RC"),
        P("dest", "sstr", "RC"), P("key", "lstr", "RC"), P("srcIsQueue", "bool", "RC"),
        P("srcIsLocal", "bool", "RC"), P("tag", "sstr", "RC"), P("excludes", "sstr", "RC"),
        P("dynamic", "bool", "RC"), P("sync", "uint16", "RC"), P("credit", "uint32", "RC")],
        [], [Method("close")]),
    SchemaClass(BROKER, "agent", [
        P("connectionRef", "objId", "RO", index=True), P("label", "sstr", "RO"),
        P("registeredTo", "objId", "RO"), P("systemId", "uuid", "RO"), P("brokerBank", "uint32", "RO"),
        P("agentBank", "uint32", "RO")]),
    SchemaClass(BROKER, "domain", [
        P("name", "sstr", "RC", index=True), P("durable", "bool", "RC"), P("url", "lstr", "RO"),
        P("mechanisms", "sstr", "RO"), P("username", "sstr", "RO"), P("password", "sstr", "RO")]),
    SchemaClass(BROKER, "topic", [
        P("name", "sstr", "RC", index=True), P("exchangeRef", "objId", "RO"), P("durable", "bool", "RC"),
        P("properties", "map", "RO")]),
    SchemaClass(BROKER, "queuepolicy", [P("name", "sstr", "RC", index=True), P("properties", "map", "RO")]),
    SchemaClass(BROKER, "topicpolicy", [P("name", "sstr", "RC", index=True), P("properties", "map", "RO")]),
    SchemaClass(BROKER, "managementsetupstate", [
        P("objectNum", "uint64", "RO"), P("bootSequence", "uint16", "RO")]),
    SchemaClass(ACL, "acl", [
        P("brokerRef", "objId", "RO", index=True), P("policyFile", "lstr", "RO", desc="Name of the policy file"),
        P("enforcingAcl", "bool", "RO", desc="Currently Enforcing ACL"),
        P("transferAcl", "bool", "RO", desc="Any transfer ACL rules in force"),
        P("lastAclLoad", "absTime", "RO", desc="Timestamp of last successful load of ACL"),
        P("maxConnections", "uint16", "RO", desc="Maximum allowed connections"),
        P("maxConnectionsPerIp", "uint16", "RO", desc="Maximum allowed connections per IP"),
        P("maxConnectionsPerUser", "uint16", "RO", desc="Maximum allowed connections per user"),
        P("maxQueuesPerUser", "uint16", "RO", desc="Maximum allowed queues per user")],
        [S("aclDenyCount", "count64", desc="Number of ACL requests denied"),
         S("connectionDenyCount", "count64", desc="Number of connections denied"),
         S("queueQuotaDenyCount", "count64", desc="Number of queue creations denied")],
        [Method("reloadACLFile", "Reload the ACL file")]),
    SchemaClass(HA, "habroker", [
        P("name", "sstr", "RC", index=True, desc="Primary Key"),
        P("status", "sstr", "RO", desc="HA status: primary or backup"),
        P("brokersUrl", "sstr", "RO", desc="URL listing each broker in the cluster"),
        P("publicUrl", "sstr", "RO", desc="URL advertized to clients to connect to the cluster"),
        P("replicateDefault", "sstr", "RO", desc="Replication for queues/exchanges with no qpid.replicate argument"),
        P("members", "list", "RO", desc="List of brokers in the cluster"),
        P("systemId", "uuid", "RO", desc="Identifies the system")],
        [], [Method("promote", "Promote a backup broker to primary."),
             Method("setBrokersUrl", "URL listing each broker in the cluster.", [Arg("url", "sstr")]),
             Method("setPublicUrl", "URL advertized to clients.", [Arg("url", "sstr")]),
             Method("replicate", "Replicate individual queue from remote broker.",
                    [Arg("broker", "sstr"), Arg("queue", "sstr")])]),
]

_EV = [("rhost", "sstr", "Address (i.e. DNS name, IP address, etc.) of a remotely connected host"),
       ("user", "sstr", "Authentication identity")]
_EVENT_ARGS = {
    "rhost": "sstr", "user": "sstr", "qName": "sstr", "exName": "sstr", "exType": "sstr", "altEx": "sstr",
    "dest": "sstr", "disp": "sstr", "qTarget": "sstr", "key": "lstr", "reason": "lstr", "durable": "bool",
    "excl": "bool", "autoDel": "bool", "args": "map", "properties": "map", "msgDepth": "count64",
    "byteDepth": "count64",
}
#: broker events: name -> (severity, argument names)
EVENTS = {
    "clientConnect": ("inform", ["rhost", "user", "properties"]),
    "clientConnectFail": ("warn", ["rhost", "user", "reason", "properties"]),
    "clientDisconnect": ("inform", ["rhost", "user", "properties"]),
    "brokerLinkUp": ("inform", ["rhost"]),
    "brokerLinkDown": ("warn", ["rhost"]),
    "queueDeclare": ("inform", ["rhost", "user", "qName", "durable", "excl", "autoDel", "altEx", "args", "disp"]),
    "queueDelete": ("inform", ["rhost", "user", "qName"]),
    "exchangeDeclare": ("inform", ["rhost", "user", "exName", "exType", "altEx", "durable", "autoDel", "args",
                                   "disp"]),
    "exchangeDelete": ("inform", ["rhost", "user", "exName"]),
    "bind": ("inform", ["rhost", "user", "exName", "qName", "key", "args"]),
    "unbind": ("inform", ["rhost", "user", "exName", "qName", "key"]),
    "subscribe": ("inform", ["rhost", "user", "qName", "dest", "excl", "args"]),
    "unsubscribe": ("inform", ["rhost", "user", "dest"]),
    "queueThresholdCrossedUpward": ("inform", ["qName", "msgDepth", "byteDepth"]),
    "queueThresholdCrossedDownward": ("inform", ["qName", "msgDepth", "byteDepth"]),
    "queueThresholdExceeded": ("warn", ["qName", "msgDepth", "byteDepth"]),
    "queueRedirect": ("inform", ["qName", "qTarget"]),
    "queueRedirectCancelled": ("inform", ["qName", "qTarget"]),
}
for _name, (_sev, _args) in EVENTS.items():
    CLASSES.append(SchemaClass(BROKER, _name, [Element(a, _EVENT_ARGS[a]) for a in _args], kind="event"))

_BY_KEY = {c.key: c for c in CLASSES}


def find(name: str) -> SchemaClass | None:
    """A class by ``class``, ``package:class`` or qpid-tool's old ``package.class`` form (case
    insensitive on the class name); table classes win over events of the same name."""
    if name in _BY_KEY:
        return _BY_KEY[name]
    package = None
    cls = name
    if ":" in name:
        package, cls = name.rsplit(":", 1)
    elif "." in name:
        package, cls = name.rsplit(".", 1)
    matches = [c for c in CLASSES if c.name.lower() == cls.lower()
               and (package is None or c.package == package or package == "qpid")]
    matches.sort(key=lambda c: c.kind != "table")
    return matches[0] if matches else None


def table_classes() -> list[SchemaClass]:
    return [c for c in CLASSES if c.kind == "table"]
