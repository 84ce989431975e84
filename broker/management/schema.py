"""The QMF schema cypid's agent speaks: qpidd's classes, properties, statistics, methods and events
(package ``org.apache.qpid.broker``; ../shared/reference/qmf2.md section 6), and how values of each
schema type are encoded in a QMF v2 ``_values`` map.

Tables only: nothing here reads the broker. ``objects.py`` fills the values, ``agent.py`` sends them.
"""
import hashlib
import uuid

from cypid.pyx.codec import ubyte, uint, ulong, ushort

PACKAGE = "org.apache.qpid.broker"
BROKER_OBJECT_NAME = PACKAGE + ":broker:amqp-broker"

# -- types ------------------------------------------------------------------------------------
# QMF type codes (qmf2.md section 7), for the schema hash and for the tools' reference.
TYPE_CODES = {
    "uint8": 1, "uint16": 2, "uint32": 3, "uint64": 4, "sstr": 6, "lstr": 7, "absTime": 8,
    "deltaTime": 9, "objId": 10, "bool": 11, "float": 12, "double": 13, "uuid": 14, "map": 15,
    "int8": 16, "int16": 17, "int32": 18, "int64": 19, "list": 21,
    # statistics kinds, sent as their base type
    "count32": 3, "count64": 4, "hilo32": 3, "mmaTime": 9,
}
_U8, _U16, _U32, _U64 = 0xFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFFFFFFFFFF


def _unsigned(wrap, limit):
    def enc(value):
        v = int(value or 0)
        return wrap(0 if v < 0 else limit if v > limit else v)
    return enc


def wire_str(value):
    """A string as qpidd's agent sends one: AMQP binary holding its UTF-8 bytes (qpidd's Variant
    strings carry no encoding, so its AMQP 1.0 codec writes them as binary; consoles written for
    qpidd call ``.decode()`` on them). Whatever the value is, it becomes text first: a client's
    odd property can never break the encoding of a whole reply."""
    if value is None:
        return b""
    if isinstance(value, bytes):
        return value
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    return str(value).encode("utf-8", "surrogateescape")


def _map(value):
    return {str(k): v for k, v in (value or {}).items()}


def _objid(value):
    return {"_object_name": wire_str(value)} if value else None


_ENCODERS = {
    "uint8": _unsigned(ubyte, _U8),
    "uint16": _unsigned(ushort, _U16),
    "uint32": _unsigned(uint, _U32),
    "count32": _unsigned(uint, _U32),
    "hilo32": _unsigned(uint, _U32),
    "uint64": _unsigned(ulong, _U64),
    "count64": _unsigned(ulong, _U64),
    "deltaTime": _unsigned(ulong, _U64),
    "mmaTime": _unsigned(ulong, _U64),
    "absTime": lambda v: int(v or 0),
    "int64": lambda v: int(v or 0),
    "bool": bool,
    "sstr": wire_str,
    "lstr": wire_str,
    "uuid": lambda v: v if isinstance(v, uuid.UUID) else uuid.UUID(str(v)),
    "map": _map,
    "list": lambda v: list(v or ()),
    "objId": _objid,
}


def encode_value(type_name, value):
    """A Python value as QMF v2 sends a value of this schema type (codec wrappers for widths)."""
    return _ENCODERS[type_name](value)


# -- classes ----------------------------------------------------------------------------------
class Prop:
    """A property (configuration) or statistic of a class."""
    __slots__ = ("name", "type", "access", "index", "optional", "unit", "desc")

    def __init__(self, name, type, access="RO", index=False, optional=False, unit="", desc=""):
        self.name, self.type, self.access, self.index = name, type, access, index
        self.optional, self.unit, self.desc = optional, unit, desc

    def value_names(self):
        """The keys this element takes in ``_values`` (watermarks and mma stats expand)."""
        if self.type == "hilo32":
            return (self.name, self.name + "High", self.name + "Low")
        if self.type == "mmaTime":
            return tuple(self.name + s for s in ("Count", "Min", "Max", "Avg"))
        return (self.name,)


class Method:
    __slots__ = ("name", "args", "desc")

    def __init__(self, name, args=(), desc=""):
        self.name = name
        self.args = args   # (name, type, dir) with dir "I", "O" or "IO"
        self.desc = desc


class SchemaClass:
    def __init__(self, name, properties, statistics=(), methods=(), package=PACKAGE, kind="_data"):
        self.name = name
        self.package = package
        self.kind = kind
        self.properties = tuple(properties)
        self.statistics = tuple(statistics)
        self.methods = {m.name: m for m in methods}
        self.elements = self.properties + self.statistics
        self.hash = schema_hash(self)

    def schema_id(self):
        return {"_package_name": wire_str(self.package), "_class_name": wire_str(self.name),
                "_type": wire_str(self.kind), "_hash": self.hash}

    def index_names(self):
        return [p.name for p in self.properties if p.index]


def schema_hash(cls):
    """A stable uuid for a class (qpidd sends an md5 of its schema; consoles only compare it)."""
    h = hashlib.md5()
    h.update(("%s:%s:%s" % (cls.package, cls.name, cls.kind)).encode())
    for e in getattr(cls, "elements", ()):
        h.update(("|%s:%d:%s" % (e.name, TYPE_CODES.get(e.type, 0), e.access)).encode())
    for m in getattr(cls, "methods", {}).values():
        h.update(("|%s(%s)" % (m.name, ",".join("%s:%s:%s" % a for a in m.args))).encode())
    for a in getattr(cls, "args", ()):
        h.update(("|%s:%s" % a).encode())
    return uuid.UUID(bytes=h.digest())


P = Prop
RC, RW = "RC", "RW"


def _ST(name, type="count64", unit="message", desc=""):
    """A statistic."""
    return Prop(name, type, unit=unit, desc=desc)


_FLOW_STATS = (
    "msgTotalEnqueues", "msgTotalDequeues", "msgTxnEnqueues", "msgTxnDequeues", "msgPersistEnqueues",
    "msgPersistDequeues", "msgDepth", "byteDepth", "byteTotalEnqueues", "byteTotalDequeues",
    "byteTxnEnqueues", "byteTxnDequeues", "bytePersistEnqueues", "bytePersistDequeues",
    "msgFtdEnqueues", "msgFtdDequeues", "byteFtdEnqueues", "byteFtdDequeues", "msgFtdDepth",
    "byteFtdDepth", "releases", "acquires", "discardsTtl", "discardsRing", "discardsLvq",
    "discardsOverflow", "discardsSubscriber", "discardsPurge", "reroutes",
)


def _unit(name):
    return "octet" if name.startswith("byte") else "message"


BROKER = SchemaClass("broker", [
    P("name", "sstr", RC, index=True, desc="Index for the broker at this agent"),
    P("systemRef", "objId", desc="System ID"),
    P("port", "uint16", desc="TCP Port for AMQP Service"),
    P("workerThreads", "uint16", desc="Thread pool size"),
    P("maxConns", "uint16", desc="Maximum allowed connections"),
    P("connBacklog", "uint16", desc="Connection backlog limit for listening socket"),
    P("stagingThreshold", "uint32", desc="Broker stages messages over this size to disk"),
    P("mgmtPublish", "bool", desc="Broker's management agent sends unsolicited data and events"),
    P("mgmtPubInterval", "uint16", RW, unit="second", desc="Interval for management broadcasts"),
    P("version", "sstr", desc="Running software version"),
    P("dataDir", "lstr", optional=True, desc="Persistent configuration storage location"),
], [_ST("uptime", "deltaTime", "nanosecond"), _ST("queueCount", "count64", "queue")]
    + [_ST(n, unit=_unit(n)) for n in (
        "msgTotalEnqueues", "msgTotalDequeues", "byteTotalEnqueues", "byteTotalDequeues", "msgDepth",
        "byteDepth", "msgPersistEnqueues", "msgPersistDequeues", "bytePersistEnqueues",
        "bytePersistDequeues", "msgTxnEnqueues", "msgTxnDequeues", "byteTxnEnqueues", "byteTxnDequeues",
        "msgFtdEnqueues", "msgFtdDequeues", "byteFtdEnqueues", "byteFtdDequeues", "msgFtdDepth",
        "byteFtdDepth", "releases", "acquires", "discardsNoRoute", "discardsTtl", "discardsRing",
        "discardsLvq", "discardsOverflow", "discardsSubscriber", "discardsPurge", "reroutes",
        "abandoned", "abandonedViaAlt")],
    [
        Method("echo", (("sequence", "uint32", "IO"), ("body", "lstr", "IO"))),
        Method("connect", (("host", "sstr", "I"), ("port", "uint32", "I"), ("durable", "bool", "I"),
                           ("authMechanism", "sstr", "I"), ("username", "sstr", "I"),
                           ("password", "sstr", "I"), ("transport", "sstr", "I"))),
        Method("queueMoveMessages", (("srcQueue", "sstr", "I"), ("destQueue", "sstr", "I"),
                                     ("qty", "uint32", "I"), ("filter", "map", "I"))),
        Method("setLogLevel", (("level", "sstr", "I"),)),
        Method("getLogLevel", (("level", "sstr", "O"),)),
        Method("setTimestampConfig", (("receive", "bool", "I"),)),
        Method("getTimestampConfig", (("receive", "bool", "O"),)),
        Method("setLogHiresTimestamp", (("logHires", "bool", "I"),)),
        Method("getLogHiresTimestamp", (("logHires", "bool", "O"),)),
        Method("create", (("type", "sstr", "I"), ("name", "sstr", "I"), ("properties", "map", "I"),
                          ("strict", "bool", "I"))),
        Method("delete", (("type", "sstr", "I"), ("name", "sstr", "I"), ("options", "map", "I"))),
        Method("query", (("type", "sstr", "I"), ("name", "sstr", "I"), ("results", "map", "O"))),
        Method("queueRedirect", (("sourceQueue", "sstr", "I"), ("targetQueue", "sstr", "I"))),
        Method("shutdown"),
    ])

SYSTEM = SchemaClass("system", [
    P("systemId", "uuid", RC, index=True),
    P("osName", "sstr", desc="Operating System Name"),
    P("nodeName", "sstr", desc="Node Name"),
    P("release", "sstr"),
    P("version", "sstr"),
    P("machine", "sstr"),
])

MEMORY = SchemaClass("memory", [P("name", "sstr", index=True, desc="Index for the broker at this agent")]
                     + [P(n, "uint64", optional=True) for n in (
                         "malloc_arena", "malloc_ordblks", "malloc_hblks", "malloc_hblkhd",
                         "malloc_uordblks", "malloc_fordblks", "malloc_keepcost")])

VHOST = SchemaClass("vhost", [
    P("brokerRef", "objId", RC, index=True),
    P("name", "sstr", RC, index=True),
    P("federationTag", "sstr"),
])

QUEUE = SchemaClass("queue", [
    P("vhostRef", "objId", RC, index=True),
    P("name", "sstr", RC, index=True),
    P("durable", "bool", RC),
    P("autoDelete", "bool", RC),
    P("exclusive", "bool"),
    P("arguments", "map", desc="Arguments supplied in queue.declare"),
    P("altExchange", "objId", optional=True),
], [_ST(n, unit=_unit(n)) for n in _FLOW_STATS] + [
    _ST("consumerCount", "hilo32", "consumer", "Current consumers on queue"),
    _ST("bindingCount", "hilo32", "binding", "Current bindings"),
    _ST("unackedMessages", "hilo32", "message", "Messages consumed but not yet acked"),
    _ST("messageLatency", "mmaTime", "nanosecond", "Broker latency through this queue"),
    _ST("flowStopped", "bool", "", "Flow control active."),
    _ST("flowStoppedCount", "count32", "", "Number of times flow control was activated for this queue"),
    _ST("redirectPeer", "sstr", "", "Name of the queue this queue is redirected to"),
    _ST("redirectSource", "bool", "", "Whether this queue is the source of a redirect"),
    _ST("creator", "sstr", "", "Identity of the user who created this queue"),
], [
    Method("purge", (("request", "uint32", "I"), ("filter", "map", "I"))),
    Method("reroute", (("request", "uint32", "I"), ("useAltExchange", "bool", "I"),
                       ("exchange", "sstr", "I"), ("filter", "map", "I"))),
])

EXCHANGE = SchemaClass("exchange", [
    P("vhostRef", "objId", RC, index=True),
    P("name", "sstr", RC, index=True),
    P("type", "sstr", RC),
    P("durable", "bool", RC),
    P("autoDelete", "bool", RC),
    P("altExchange", "objId", optional=True),
    P("arguments", "map", desc="Arguments supplied in exchange.declare"),
], [
    _ST("producerCount", "hilo32", "producer"),
    _ST("bindingCount", "hilo32", "binding"),
] + [_ST(n, unit=_unit(n)) for n in (
    "msgReceives", "msgDrops", "msgRoutes", "byteReceives", "byteDrops", "byteRoutes")])

BINDING = SchemaClass("binding", [
    P("exchangeRef", "objId", RC, index=True),
    P("queueRef", "objId", RC, index=True),
    P("bindingKey", "lstr", RC, index=True),
    P("arguments", "map", RC),
    P("origin", "sstr", optional=True),
], [_ST("msgMatched", "count64")])

SUBSCRIPTION = SchemaClass("subscription", [
    P("sessionRef", "objId", RC, index=True),
    P("queueRef", "objId", RC, index=True),
    P("name", "sstr", RC, index=True),
    P("browsing", "bool", RC),
    P("acknowledged", "bool", RC),
    P("exclusive", "bool", RC),
    P("creditMode", "sstr", desc="WINDOW or CREDIT"),
    P("arguments", "map", RC),
], [_ST("delivered", "count64", "message", "Messages delivered")])

CONNECTION = SchemaClass("connection", [
    P("vhostRef", "objId", RC, index=True),
    P("address", "sstr", RC, index=True),
    P("incoming", "bool", RC),
    P("SystemConnection", "bool", RC, desc="Infrastructure/ Inter-system connection"),
    P("userProxyAuth", "bool", RW, desc="Authorization to proxy for users not on broker"),
    P("federationLink", "bool", desc="Is this a federation link"),
    P("authIdentity", "sstr", desc="authId of connection if authentication enabled"),
    P("remoteProcessName", "lstr", optional=True, desc="Name of executing program at client"),
    P("remotePid", "uint32", optional=True, desc="Process ID of client"),
    P("remoteParentPid", "uint32", optional=True, desc="Parent Process ID of client"),
    P("shadow", "bool", desc="True for shadow connections"),
    P("saslMechanism", "sstr", desc="SASL mechanism"),
    P("saslSsf", "uint16", desc="SASL security strength factor"),
    P("remoteProperties", "map", desc="optional map of identifying information sent by the remote"),
    P("protocol", "sstr", desc="protocol in use"),
], [
    _ST("closing", "bool", "", "This client is closing by management request"),
    _ST("framesFromClient", "count64", "frame"), _ST("framesToClient", "count64", "frame"),
    _ST("bytesFromClient", "count64", "byte"), _ST("bytesToClient", "count64", "byte"),
    _ST("msgsFromClient", "count64"), _ST("msgsToClient", "count64"),
], [Method("close")])

SESSION = SchemaClass("session", [
    P("vhostRef", "objId", RC, index=True),
    P("name", "sstr", RC, index=True),
    P("fullName", "lstr", optional=True),
    P("channelId", "uint16"),
    P("connectionRef", "objId"),
    P("detachedLifespan", "uint32", unit="second"),
    P("attached", "bool"),
    P("expireTime", "absTime", optional=True),
    P("maxClientRate", "uint32", optional=True, unit="msgs/sec"),
], [
    _ST("unackedMessages", "uint64", "message", "Unacknowledged messages in the session"),
    _ST("TxnStarts", "count64", "transaction"), _ST("TxnCommits", "count64", "transaction"),
    _ST("TxnRejects", "count64", "transaction"), _ST("TxnCount", "count32", "transaction"),
    _ST("clientCredit", "count32", "message"), _ST("framesOutstanding", "count32", "frame"),
], [Method("solicitAck"), Method("detach"), Method("resetLifespan"), Method("close")])

_LINK_PROPS = [
    P("sessionRef", "objId", RC),
    P("containerid", "sstr", RC, index=True),
    P("name", "sstr", RC, index=True),
    P("source", "sstr", RC),
    P("target", "sstr", RC),
    P("domain", "sstr", RC),
]
INCOMING = SchemaClass("incoming", _LINK_PROPS, [_ST("transfers", "count64")])
OUTGOING = SchemaClass("outgoing", _LINK_PROPS, [_ST("transfers", "count64")])

ACL_PACKAGE = "org.apache.qpid.acl"
ACL_OBJECT_NAME = "%s:acl:%s" % (ACL_PACKAGE, BROKER_OBJECT_NAME)
ACL = SchemaClass("acl", [
    P("brokerRef", "objId", RC, index=True),
    P("policyFile", "lstr"),
    P("enforcingAcl", "bool"),
    P("transferAcl", "bool"),
    P("lastAclLoad", "absTime"),
    P("maxConnections", "uint16"),
    P("maxConnectionsPerIp", "uint16"),
    P("maxConnectionsPerUser", "uint16"),
    P("maxQueuesPerUser", "uint16"),
], [_ST("aclDenyCount", "count64", unit=""), _ST("connectionDenyCount", "count64", unit=""),
    _ST("queueQuotaDenyCount", "count64", unit="")], [
    Method("reloadACLFile", desc="Reload the ACL file"),
    Method("Lookup", (("userId", "sstr", "I"), ("action", "sstr", "I"), ("object", "sstr", "I"),
                      ("objectName", "lstr", "I"), ("propertyMap", "map", "I"), ("result", "lstr", "O")),
           desc="Lookup: user action object [name] [properties]"),
    Method("LookupPublish", (("userId", "sstr", "I"), ("exchangeName", "sstr", "I"),
                             ("routingKey", "lstr", "I"), ("result", "lstr", "O")),
           desc="Lookup: user publish exchange routingkey"),
], package=ACL_PACKAGE)

LINK = SchemaClass("link", [
    P("vhostRef", "objId", RC, index=True),
    P("name", "sstr", RC, index=True),
    P("host", "sstr", RC),
    P("port", "uint16", RC),
    P("transport", "sstr", RC),
    P("durable", "bool", RC),
    P("connectionRef", "objId"),
], [_ST("state", "sstr", unit=""), _ST("lastError", "lstr", unit="")], [
    Method("close"),
    Method("bridge", (("durable", "bool", "I"), ("src", "sstr", "I"), ("dest", "sstr", "I"),
                      ("key", "lstr", "I"), ("tag", "sstr", "I"), ("excludes", "sstr", "I"),
                      ("srcIsQueue", "bool", "I"), ("srcIsLocal", "bool", "I"), ("dynamic", "bool", "I"),
                      ("sync", "uint16", "I"), ("credit", "uint32", "I")),
           desc="Bridge messages over the link"),
])

BRIDGE = SchemaClass("bridge", [
    P("linkRef", "objId", RC, index=True),
    P("name", "sstr", RC, index=True),
    P("channelId", "uint16"),
    P("durable", "bool", RC),
    P("src", "sstr", RC),
    P("dest", "sstr", RC),
    P("key", "lstr", RC),
    P("srcIsQueue", "bool", RC),
    P("srcIsLocal", "bool", RC),
    P("tag", "sstr", RC),
    P("excludes", "sstr", RC),
    P("dynamic", "bool", RC),
    P("sync", "uint16", RC),
    P("credit", "uint32", RC),
], [], [Method("close")])

HA_PACKAGE = "org.apache.qpid.ha"
HABROKER_OBJECT_NAME = HA_PACKAGE + ":habroker:ha-broker"
HABROKER = SchemaClass("habroker", [
    P("name", "sstr", RC, index=True, desc="Primary Key"),
    P("status", "sstr", desc="HA status: joining, catchup, ready, recovering, active or standalone"),
    P("brokersUrl", "sstr", desc="URL listing each broker in the cluster"),
    P("publicUrl", "sstr", desc="URL advertized to clients to connect to the cluster"),
    P("replicateDefault", "sstr", desc="Replication for queues/exchanges that do not set qpid.replicate"),
    P("members", "list", desc="List of brokers in the cluster"),
    P("systemId", "uuid", desc="Identifies the system"),
], [], [
    Method("promote", desc="Promote a backup broker to primary."),
    Method("setBrokersUrl", (("url", "sstr", "I"),)),
    Method("setPublicUrl", (("url", "sstr", "I"),)),
    Method("replicate", (("broker", "sstr", "I"), ("queue", "sstr", "I")),
           desc="Replicate an individual queue from a remote broker (not supported by cypid yet)"),
], package=HA_PACKAGE)

CLASSES = {c.name: c for c in (BROKER, SYSTEM, MEMORY, VHOST, QUEUE, EXCHANGE, BINDING, SUBSCRIPTION,
                               CONNECTION, SESSION, INCOMING, OUTGOING, ACL, HABROKER, LINK, BRIDGE)}


# -- events -----------------------------------------------------------------------------------
SEVERITY_INFORM, SEVERITY_NOTICE, SEVERITY_WARN, SEVERITY_ERROR = 6, 5, 4, 3
#: severity number -> the word used in event routing keys
SEVERITY_WORDS = {0: "emerg", 1: "alert", 2: "crit", 3: "error", 4: "warn", 5: "note", 6: "info",
                  7: "debug"}

EVENT_ARG_TYPES = {
    "rhost": "sstr", "user": "sstr", "qName": "sstr", "exName": "sstr", "exType": "sstr",
    "altEx": "sstr", "dest": "sstr", "disp": "sstr", "qTarget": "sstr", "key": "lstr", "reason": "lstr",
    "durable": "bool", "excl": "bool", "autoDel": "bool", "args": "map", "properties": "map",
    "msgDepth": "count64", "byteDepth": "count64", "members": "list",
    # the ACL module's events (package org.apache.qpid.acl)
    "userId": "sstr", "action": "sstr", "objectType": "sstr", "objectName": "sstr", "arguments": "map",
    "clientAddr": "sstr", "queueName": "sstr",
}


class EventClass:
    def __init__(self, name, severity, args, package=PACKAGE):
        self.name = name
        self.package = package
        self.severity = severity
        self.args = tuple((a, EVENT_ARG_TYPES[a]) for a in args)
        self.kind = "_event"
        self.hash = schema_hash(self)
        self.routing_part = "agent.ind.event.%s.%s.%s." % (
            package.replace(".", "_"), name, SEVERITY_WORDS[severity])

    def schema_id(self):
        return {"_package_name": wire_str(self.package), "_class_name": wire_str(self.name),
                "_type": b"_event", "_hash": self.hash}


_I, _W = SEVERITY_INFORM, SEVERITY_WARN
EVENTS = {e.name: e for e in (
    EventClass("clientConnect", _I, ("rhost", "user", "properties")),
    EventClass("clientConnectFail", _W, ("rhost", "user", "reason", "properties")),
    EventClass("clientDisconnect", _I, ("rhost", "user", "properties")),
    EventClass("brokerLinkUp", _I, ("rhost",)),
    EventClass("brokerLinkDown", _W, ("rhost",)),
    EventClass("queueDeclare", _I, ("rhost", "user", "qName", "durable", "excl", "autoDel", "altEx",
                                    "args", "disp")),
    EventClass("queueDelete", _I, ("rhost", "user", "qName")),
    EventClass("exchangeDeclare", _I, ("rhost", "user", "exName", "exType", "altEx", "durable", "autoDel",
                                       "args", "disp")),
    EventClass("exchangeDelete", _I, ("rhost", "user", "exName")),
    EventClass("bind", _I, ("rhost", "user", "exName", "qName", "key", "args")),
    EventClass("unbind", _I, ("rhost", "user", "exName", "qName", "key")),
    EventClass("subscribe", _I, ("rhost", "user", "qName", "dest", "excl", "args")),
    EventClass("unsubscribe", _I, ("rhost", "user", "dest")),
    EventClass("queueThresholdCrossedUpward", _I, ("qName", "msgDepth", "byteDepth")),
    EventClass("queueThresholdCrossedDownward", _I, ("qName", "msgDepth", "byteDepth")),
    EventClass("queueThresholdExceeded", _W, ("qName", "msgDepth", "byteDepth")),
    EventClass("queueRedirect", _I, ("qName", "qTarget")),
    EventClass("queueRedirectCancelled", _I, ("qName", "qTarget")),
    EventClass("membersUpdate", _I, ("members",), package=HA_PACKAGE),
    # qpidd's ACL events: allow/deny for *-log rules, connection and queue quota refusals, reloads
    EventClass("allow", _I, ("userId", "action", "objectType", "objectName", "arguments"), package=ACL_PACKAGE),
    EventClass("deny", SEVERITY_NOTICE, ("userId", "action", "objectType", "objectName", "arguments"),
               package=ACL_PACKAGE),
    EventClass("connectionDeny", SEVERITY_NOTICE, ("userId", "clientAddr"), package=ACL_PACKAGE),
    EventClass("queueQuotaDeny", SEVERITY_NOTICE, ("userId", "queueName"), package=ACL_PACKAGE),
    EventClass("fileLoaded", _I, ("userId",), package=ACL_PACKAGE),
    EventClass("fileLoadFailed", SEVERITY_ERROR, ("userId", "reason"), package=ACL_PACKAGE),
)}


# -- names ------------------------------------------------------------------------------------
def object_name(cls_name, key):
    """``<package>:<class>:<key>`` (memory's name is its bare key, as qpidd's)."""
    if cls_name == "memory":
        return key
    return "%s:%s:%s" % (CLASSES[cls_name].package if cls_name in CLASSES else PACKAGE, cls_name, key)


def split_object_name(name):
    """(class name, key) of an object name, or (None, None) if it is not one of ours."""
    if name == "amqp-broker":
        return "memory", name
    if name.startswith(ACL_PACKAGE + ":acl:"):
        return "acl", name[len(ACL_PACKAGE) + 5:]
    if name.startswith(HA_PACKAGE + ":habroker:"):
        return "habroker", name[len(HA_PACKAGE) + 10:]
    prefix = PACKAGE + ":"
    if not name.startswith(prefix):
        return None, None
    cls, sep, key = name[len(prefix):].partition(":")
    if not sep:
        return None, None
    return cls, key
