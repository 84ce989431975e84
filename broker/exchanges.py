"""Exchanges and bindings: direct, topic, fanout, headers, the default exchange, and the registry.

Routing is on the per-message hot path, so every ``route()`` is a dictionary lookup or two in the
common case and returns a *shared, immutable tuple* of queues (no allocation per message):

* direct  - ``key -> tuple`` table rebuilt for one key on bind/unbind;
* topic   - a word trie of the binding patterns (qpidd semantics: words split on ``.``, ``*`` is
            exactly one word, ``#`` zero or more words) walked as an automaton, one pass over the
            key's words (linear), plus a per-routing-key result cache that is cleared on every
            bind/unbind (bounded in size); keys are capped at TOPIC_KEY_LIMIT bytes;
* fanout  - one tuple of every bound queue;
* headers - per-binding compiled matchers run against the message's application-properties
            (nothing to cache: the result depends on the message).

Each queue appears once per route, ordered by its first matching binding (binding order).
Queues are any hashable objects with ``.name``. No module-level mutable state: any number of
:class:`ExchangeRegistry` objects may coexist.
"""

from .errors import InvalidArgument, InvalidField, NotAllowed, NotFound, PreconditionFailed

__all__ = [
    "Exchange",
    "DirectExchange",
    "TopicExchange",
    "FanoutExchange",
    "HeadersExchange",
    "DefaultExchange",
    "ExchangeRegistry",
    "make_exchange",
    "EXCHANGE_TYPES",
    "BUILTIN_EXCHANGES",
    "topic_match",
    "compile_headers",
    "normalize_topic",
]

_EMPTY = ()
_MISSING = object()
_FALSE_STRINGS = frozenset(("", "0", "false", "no", "off", "f", "n"))

#: binding argument of a direct exchange that makes the key unique to one queue
EXCLUSIVE_BINDING = "qpid.exclusive-binding"
#: exchange arguments kept as attributes (behaviour implemented by the broker)
MSG_SEQUENCE = "qpid.msg_sequence"
IVE = "qpid.ive"

#: when a topic exchange's route cache holds this many keys it is emptied
TOPIC_CACHE_LIMIT = 65536
#: the longest routing key (a message's subject) and binding key a topic exchange takes, in bytes
#: of UTF-8: AMQP 0-10's limit for routing keys (str8), which qpidd's 0-10 clients always had.
#: Longer keys are refused with ``amqp:invalid-field`` naming the limit (a bound on matching work).
TOPIC_KEY_LIMIT = 255


def _count_binding(queue, delta):
    """Keep the queue's own binding counters (management reads them: a query of one queue costs
    O(1)); a stand-in queue without them (tests) is left alone."""
    try:
        n = queue.bindingCount = queue.bindingCount + delta
        if n > queue.bindingCountHigh:
            queue.bindingCountHigh = n
        elif n < queue.bindingCountLow:
            queue.bindingCountLow = n
    except AttributeError:
        pass


def _flag(value):
    """qpidd-style truthiness of an argument value that may arrive as a string ("1", "true")."""
    if isinstance(value, (bytes, bytearray)):
        value = bytes(value).decode("utf-8", "replace")
    if isinstance(value, str):
        return value.strip().lower() not in _FALSE_STRINGS
    return bool(value)


class Exchange:
    """Common state: identity, settings, bindings, and the management counters.

    Counters (plain ints, read by management): ``msgReceives``, ``msgDrops``, ``msgRoutes``,
    ``byteReceives``, ``byteDrops``, ``byteRoutes``, ``bindingCount``. As in qpidd,
    ``msgRoutes``/``byteRoutes`` grow by the number of queues a message went to.
    """

    type = None

    def __init__(self, name, durable=False, auto_delete=False, alternate=None, arguments=None):
        self.name = name
        self.durable = bool(durable)
        self.auto_delete = bool(auto_delete)
        self.alternate = alternate or None
        self.arguments = dict(arguments) if arguments else {}
        self.sequence = _flag(self.arguments[MSG_SEQUENCE]) if MSG_SEQUENCE in self.arguments else False
        self.ive = _flag(self.arguments[IVE]) if IVE in self.arguments else False
        # Kept by the broker (nodes.py): the last qpid.msg_sequence stamped, the last message routed
        # through an IVE exchange (a copy), producer links attached (an auto-delete exchange stays
        # while it has any, as qpidd's "other users").
        self.sequence_no = 0
        self.last_message = None
        self.users = 0
        # (queue, key) -> arguments, in binding order
        self._bindings = {}
        # queue -> {key: None}: to unbind a queue without scanning every binding
        self._by_queue = {}
        self.msgReceives = 0
        self.msgDrops = 0
        self.msgRoutes = 0
        self.byteReceives = 0
        self.byteDrops = 0
        self.byteRoutes = 0
        self.bindingCount = 0

    # -- bindings ---------------------------------------------------------------------------
    @property
    def bindings(self):
        """``[(queue, key, arguments), ...]`` in binding order (a copy)."""
        return [(q, k, a) for (q, k), a in self._bindings.items()]

    def is_bound(self, queue, key=None):
        """Whether ``queue`` is bound (with ``key``, or with any key when key is None)."""
        if key is None:
            return queue in self._by_queue
        return (queue, self._key(key)) in self._bindings

    def bound_queues(self):
        """The distinct bound queues, in first-binding order."""
        return list(self._by_queue)

    def _key(self, key):
        return "" if key is None else key

    def bind(self, queue, key, arguments=None):
        """Bind ``queue`` with ``key``; False (and nothing changed) if that binding existed.
        Bad binding arguments raise InvalidArgument (a ValueError) before anything changes."""
        key = self._key(key)
        arguments = dict(arguments) if arguments else {}
        prepared = self._prepare(queue, key, arguments)
        if (queue, key) in self._bindings:
            return False
        self._bindings[(queue, key)] = arguments
        self._by_queue.setdefault(queue, {})[key] = None
        self.bindingCount += 1
        _count_binding(queue, 1)
        self._added(queue, key, arguments, prepared)
        return True

    def unbind(self, queue, key):
        """Remove the binding of ``queue`` with ``key``; False if there was none."""
        key = self._key(key)
        if self._bindings.pop((queue, key), _MISSING) is _MISSING:
            return False
        keys = self._by_queue.get(queue)
        if keys is not None:
            keys.pop(key, None)
            if not keys:
                del self._by_queue[queue]
        self.bindingCount -= 1
        _count_binding(queue, -1)
        self._removed(queue, key)
        return True

    def unbind_queue(self, queue):
        """Remove every binding of ``queue``; returns how many were removed."""
        keys = self._by_queue.get(queue)
        if not keys:
            return 0
        count = 0
        for key in list(keys):
            if self.unbind(queue, key):
                count += 1
        return count

    # subclass hooks: _prepare validates (may raise; runs before the existence check, nothing
    # changed yet) and returns what _added needs; _added/_removed keep the routing index.
    def _prepare(self, queue, key, arguments):
        return None

    def _added(self, queue, key, arguments, prepared):
        raise NotImplementedError

    def _removed(self, queue, key):
        raise NotImplementedError

    # -- routing ------------------------------------------------------------------------------
    def route(self, key, message=None, size=None):
        """The queues for a message with routing ``key``, counted in the exchange's statistics: a
        shared tuple, do not mutate.

        ``message`` gives ``application_properties()`` (headers exchange) and ``.size`` (byte
        counters) unless ``size`` is passed.
        """
        queues = self.match(key, message)
        if size is None:
            size = getattr(message, "size", 0)
        self.msgReceives += 1
        self.byteReceives += size
        n = len(queues)
        if n:
            self.msgRoutes += n
            self.byteRoutes += n * size
        else:
            self.msgDrops += 1
            self.byteDrops += size
        return queues

    def match(self, key, message=None):
        """The queues a message with routing ``key`` goes to, leaving the counters alone (each
        exchange type's own matching; also used for an IVE replay)."""
        raise NotImplementedError

    def __repr__(self):
        return f"<{type(self).__name__} {self.name!r} bindings={self.bindingCount}>"


class DirectExchange(Exchange):
    """Routes to the queues bound with exactly the routing key.

    Binding argument ``qpid.exclusive-binding``: binding the key to a queue removes the key's
    bindings to every other queue.
    """

    type = "direct"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._table = {}  # key -> {queue: None}, binding order
        self._routes = {}  # key -> tuple of queues

    def _prepare(self, queue, key, arguments):
        if EXCLUSIVE_BINDING in arguments and _flag(arguments[EXCLUSIVE_BINDING]):
            others = [q for q in self._table.get(key, _EMPTY) if q != queue]
            for other in others:
                self.unbind(other, key)

    def _added(self, queue, key, arguments, prepared):
        queues = self._table.setdefault(key, {})
        queues[queue] = None
        self._routes[key] = tuple(queues)

    def _removed(self, queue, key):
        queues = self._table.get(key)
        if queues is None:
            return
        queues.pop(queue, None)
        if queues:
            self._routes[key] = tuple(queues)
        else:
            del self._table[key]
            del self._routes[key]

    def match(self, key, message=None):
        return self._routes.get(key, _EMPTY)


class FanoutExchange(Exchange):
    """Routes to every bound queue (the key is ignored)."""

    type = "fanout"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._all = _EMPTY

    def _added(self, queue, key, arguments, prepared):
        self._all = tuple(self._by_queue)

    def _removed(self, queue, key):
        self._all = tuple(self._by_queue)

    def match(self, key, message=None):
        return self._all


# -- topic ------------------------------------------------------------------------------------
def normalize_topic(pattern):
    """qpidd's normalisation of a topic binding key: a run of wildcards made only of ``#`` and
    ``*`` words becomes its ``*`` words followed by one ``#`` (same set of matched keys)."""
    if "#" not in pattern:
        return pattern
    words = pattern.split(".")
    out = []
    i = 0
    n = len(words)
    while i < n:
        w = words[i]
        if w != "#" and w != "*":
            out.append(w)
            i += 1
            continue
        stars = 0
        hashes = 0
        while i < n and (words[i] == "#" or words[i] == "*"):
            if words[i] == "#":
                hashes += 1
            else:
                stars += 1
            i += 1
        out.extend(["*"] * stars)
        if hashes:
            out.append("#")
    return ".".join(out)


def topic_match(pattern, key):
    """Whether routing ``key`` matches topic ``pattern`` (a plain function, for filters and
    one-off checks; exchanges use the trie)."""
    p = normalize_topic(pattern).split(".")
    k = key.split(".")
    # positions in p reachable after consuming a prefix of k
    states = {0}
    np = len(p)

    def close(states):
        # a '#' may match zero words: skip over it
        out = set(states)
        todo = list(states)
        while todo:
            i = todo.pop()
            if i < np and p[i] == "#" and i + 1 not in out:
                out.add(i + 1)
                todo.append(i + 1)
        return out

    states = close(states)
    for word in k:
        nxt = set()
        for i in states:
            if i < np:
                pw = p[i]
                if pw == "#":
                    nxt.add(i)
                elif pw == "*" or pw == word:
                    nxt.add(i + 1)
        if not nxt:
            return False
        states = close(nxt)
    return np in states


class _Node:
    """One state of the topic automaton: a trie node reached by a prefix of some pattern.

    ``loops``: reached by a ``#`` word, so it may also consume any further word and stay here."""

    __slots__ = ("children", "star", "hash", "queues", "loops")

    def __init__(self, loops=False):
        self.children = {}
        self.star = None
        self.hash = None
        self.queues = None  # {queue: binding seq} at a pattern's end
        self.loops = loops

    def empty(self):
        return not self.children and self.star is None and self.hash is None and not self.queues


def _enter(active, node):
    """Add ``node`` to the ``active`` set, with the ``#`` nodes below it (``#`` may match no word)."""
    while node is not None and node not in active:
        active[node] = None
        node = node.hash


def _check_key_size(key, error, kind):
    """Raise ``error`` if a topic ``kind`` key is longer than TOPIC_KEY_LIMIT bytes of UTF-8."""
    size = len(key)
    if size > TOPIC_KEY_LIMIT // 4:  # only then can its UTF-8 form exceed the limit
        size = len(key.encode("utf-8", "surrogatepass"))
        if size > TOPIC_KEY_LIMIT:
            raise error(f"topic {kind} key of {size} bytes exceeds the limit of {TOPIC_KEY_LIMIT} bytes")


class TopicExchange(Exchange):
    """qpidd topic semantics with an automaton over every binding and a per-key route cache.

    The binding patterns form one trie (a ``*`` or ``#`` word is an edge of its own); matching a
    key walks it once, word by word, keeping the set of trie nodes the words so far can reach
    (a node reached by ``#`` stays in the set). The set never holds a node twice, so a key of w
    words costs at most w x (trie nodes) steps, whatever its patterns; keys and binding keys are
    also capped at TOPIC_KEY_LIMIT bytes (``amqp:invalid-field`` naming the limit).
    """

    type = "topic"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._root = _Node()
        self._cache = {}
        self._seq = 0

    def _key(self, key):
        return normalize_topic("" if key is None else key)

    def _prepare(self, queue, key, arguments):
        _check_key_size(key, InvalidArgument, "binding")

    def _added(self, queue, key, arguments, prepared):
        node = self._root
        for word in key.split("."):
            if word == "*":
                if node.star is None:
                    node.star = _Node()
                node = node.star
            elif word == "#":
                if node.hash is None:
                    node.hash = _Node(loops=True)
                node = node.hash
            else:
                child = node.children.get(word)
                if child is None:
                    child = node.children[word] = _Node()
                node = child
        if node.queues is None:
            node.queues = {}
        self._seq += 1
        node.queues[queue] = self._seq
        self._cache.clear()

    def _removed(self, queue, key):
        path = []  # (parent, word) pairs leading to the pattern's node
        node = self._root
        for word in key.split("."):
            path.append((node, word))
            if word == "*":
                node = node.star
            elif word == "#":
                node = node.hash
            else:
                node = node.children.get(word)
            if node is None:
                return
        if node.queues:
            node.queues.pop(queue, None)
            if not node.queues:
                node.queues = None
        # prune empty nodes bottom-up
        while path and node.empty():
            parent, word = path.pop()
            if word == "*":
                parent.star = None
            elif word == "#":
                parent.hash = None
            else:
                del parent.children[word]
            node = parent
        self._cache.clear()

    def _match(self, key):
        """The queues bound by a pattern matching ``key`` (no cache, no size check)."""
        active = {}
        _enter(active, self._root)
        for word in key.split("."):
            reached = {}
            for node in active:
                if node.loops and node not in reached:
                    _enter(reached, node)  # its '#' takes this word too
                child = node.children.get(word)
                if child is not None and child not in reached:
                    _enter(reached, child)
                child = node.star
                if child is not None and child not in reached:
                    _enter(reached, child)
            if not reached:
                return _EMPTY
            active = reached
        found = None
        for node in active:
            queues = node.queues
            if queues:
                if found is None:
                    found = dict(queues)
                else:
                    for q, seq in queues.items():
                        old = found.get(q)
                        if old is None or seq < old:
                            found[q] = seq
        if not found:
            return _EMPTY
        if len(found) == 1:
            return tuple(found)
        return tuple(sorted(found, key=found.__getitem__))

    def match(self, key, message=None):
        queues = self._cache.get(key)
        if queues is None:
            _check_key_size(key, InvalidField, "routing")
            queues = self._match(key)
            cache = self._cache
            if len(cache) >= TOPIC_CACHE_LIMIT:
                cache.clear()
            cache[key] = queues
        return queues


# -- headers ----------------------------------------------------------------------------------
_PRESENT = object()
_SCALARS = (int, float, bytes)


def _as_text(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", "replace")
    return str(value)


def _values_match(bound, actual):
    bound_bool = isinstance(bound, bool)
    actual_bool = isinstance(actual, bool)
    if bound_bool or actual_bool:
        # AMQP keeps booleans apart from numbers (Python has True == 1)
        if bound_bool and actual_bool:
            return bound is actual
    elif bound == actual:
        return True
    # binding values from qpid-config arrive as strings: compare a string with a scalar's text
    if isinstance(bound, str):
        return not isinstance(actual, str) and isinstance(actual, _SCALARS) and bound == _as_text(actual)
    if isinstance(actual, str):
        return isinstance(bound, _SCALARS) and actual == _as_text(bound)
    return False


class _HeadersBinding:
    __slots__ = ("queue", "any", "pairs")

    def __init__(self, queue, match_any, pairs):
        self.queue = queue
        self.any = match_any
        self.pairs = pairs  # tuple of (key, value or _PRESENT)

    def matches(self, props):
        if self.any:
            for k, v in self.pairs:
                if k in props and (v is _PRESENT or _values_match(v, props[k])):
                    return True
            return False
        for k, v in self.pairs:
            if k not in props:
                return False
            if v is not _PRESENT and not _values_match(v, props[k]):
                return False
        return True


def compile_headers(queue, arguments):
    """A headers binding's matcher for ``arguments`` (x-match and the pairs); federation matches a
    remote headers exchange's subscriptions with it too."""
    mode = arguments.get("x-match", "all")
    if isinstance(mode, (bytes, bytearray)):
        mode = bytes(mode).decode("utf-8", "replace")
    mode = mode.lower() if isinstance(mode, str) else mode
    if mode not in ("all", "any"):
        raise InvalidArgument(
            f"Invalid x-match value {arguments.get('x-match')!r} binding to headers exchange:"
            ' must be "all" or "any"'
        )
    pairs = tuple(
        (str(k), _PRESENT if v is None else v)
        for k, v in arguments.items()
        if not str(k).startswith("x-")
    )
    return _HeadersBinding(queue, mode == "any", pairs)


class HeadersExchange(Exchange):
    """Matches binding arguments against the message's application-properties.

    ``x-match`` = ``all`` (default) or ``any``; keys starting with ``x-`` are not matched. A
    binding value of None (AMQP null, qpidd's "void") matches on the key's presence; any other
    value must be equal (a string binding value also matches a number/boolean property whose text
    is that string, since qpid-config sends binding values as strings). ``all`` with no keys
    matches every message; ``any`` with no keys matches none.
    """

    type = "headers"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._matchers = {}  # (queue, key) -> _HeadersBinding, binding order
        self._list = _EMPTY

    def _prepare(self, queue, key, arguments):
        return compile_headers(queue, arguments)

    def _added(self, queue, key, arguments, prepared):
        self._matchers[(queue, key)] = prepared
        self._list = tuple(self._matchers.values())

    def _removed(self, queue, key):
        self._matchers.pop((queue, key), None)
        self._list = tuple(self._matchers.values())

    def match(self, key, message=None):
        matchers = self._list
        if matchers:
            props = message.application_properties() if message is not None else None
            if not props:
                props = {}
            out = []
            for m in matchers:
                # (inlined _HeadersBinding.matches: this runs per binding per message)
                if m.any:
                    for k, v in m.pairs:
                        if k in props:
                            pv = props[k]
                            if v is _PRESENT or (v == pv and type(v) is type(pv)) or _values_match(v, pv):
                                out.append(m.queue)
                                break
                else:
                    for k, v in m.pairs:
                        if k not in props:
                            break
                        if v is not _PRESENT:
                            pv = props[k]
                            if not ((v == pv and type(v) is type(pv)) or _values_match(v, pv)):
                                break
                    else:
                        out.append(m.queue)
            if len(out) > 1 and len(self._by_queue) != len(matchers):
                queues = tuple(dict.fromkeys(out))  # a queue with several bindings: once
            else:
                queues = tuple(out)
        else:
            queues = _EMPTY
        return queues


# -- default ----------------------------------------------------------------------------------
class DefaultExchange(Exchange):
    """The nameless exchange: every queue is implicitly bound with its own name.

    ``lookup(name) -> queue | None`` finds the queue for a routing key; ``queues() -> iterable``
    (optional) lists every queue, for the implicit ``bindings`` and ``bindingCount``. Explicit
    bind/unbind are refused (NotAllowed), as qpidd does.
    """

    type = "direct"

    def __init__(self, lookup=None, queues=None, durable=False):
        super().__init__("", durable=durable)
        self._lookup = lookup if lookup is not None else (lambda name: None)
        self._queues = queues

    @property
    def bindingCount(self):
        return sum(1 for _ in self._queues()) if self._queues is not None else 0

    @bindingCount.setter
    def bindingCount(self, value):
        pass  # computed from the queues

    @property
    def bindings(self):
        if self._queues is None:
            return []
        return [(q, q.name, {}) for q in self._queues()]

    def is_bound(self, queue, key=None):
        if self._lookup(queue.name) is not queue:
            return False
        return key is None or key == queue.name

    def bound_queues(self):
        return list(self._queues()) if self._queues is not None else []

    def bind(self, queue, key, arguments=None):
        raise NotAllowed("Cannot bind to the default exchange")

    def unbind(self, queue, key):
        raise NotAllowed("Cannot unbind from the default exchange")

    def unbind_queue(self, queue):
        return 0

    def match(self, key, message=None):
        q = self._lookup(key)
        return _EMPTY if q is None else (q,)


# -- construction and the registry ------------------------------------------------------------
EXCHANGE_TYPES = {
    "direct": DirectExchange,
    "topic": TopicExchange,
    "fanout": FanoutExchange,
    "headers": HeadersExchange,
}


def make_exchange(name, type, durable=False, auto_delete=False, alternate=None, arguments=None):
    """A new exchange of ``type`` (direct, topic, fanout, headers); ValueError for another type."""
    cls = EXCHANGE_TYPES.get(type)
    if cls is None:
        raise InvalidArgument(f"Unknown exchange type: {type!r}")
    return cls(name, durable=durable, auto_delete=auto_delete, alternate=alternate, arguments=arguments)


#: the exchanges every broker has: (name, type), in declaration order ("" is the default)
BUILTIN_EXCHANGES = (
    ("", "direct"),
    ("amq.direct", "direct"),
    ("amq.topic", "topic"),
    ("amq.fanout", "fanout"),
    ("amq.match", "headers"),
    ("qmf.default.direct", "direct"),
    ("qmf.default.topic", "topic"),
    ("qpid.management", "topic"),
)
_BUILTIN_NAMES = frozenset(name for name, _ in BUILTIN_EXCHANGES)
# qpidd makes "" and amq.* durable when a store is loaded; the management ones never
_DURABLE_WITH_STORE = frozenset(("", "amq.direct", "amq.topic", "amq.fanout", "amq.match"))


class ExchangeRegistry:
    """A broker's exchanges by name, with the built-ins pre-declared.

    ``queue_lookup(name) -> queue | None`` and ``queues() -> iterable`` back the default exchange.
    ``store_enabled``: the built-in ``""``/``amq.*`` exchanges report durable (as qpidd does when
    it has a store).
    """

    def __init__(self, queue_lookup=None, queues=None, store_enabled=False):
        self._exchanges = {}
        for name, type_ in BUILTIN_EXCHANGES:
            durable = store_enabled and name in _DURABLE_WITH_STORE
            if name == "":
                ex = DefaultExchange(queue_lookup, queues, durable=durable)
            else:
                ex = make_exchange(name, type_, durable=durable)
            self._exchanges[name] = ex

    @property
    def default(self):
        return self._exchanges[""]

    @staticmethod
    def is_builtin(name):
        return name in _BUILTIN_NAMES

    def declare(self, name, type, durable=False, auto_delete=False, alternate=None, arguments=None):
        """``(exchange, created)``. An existing exchange of another type raises PreconditionFailed;
        an unknown type raises InvalidArgument (a ValueError)."""
        ex = self._exchanges.get(name)
        if ex is not None:
            if type is not None and type != ex.type:
                raise PreconditionFailed(
                    f"Exchange of different type already exists: {name!r} is {ex.type}, not {type}"
                )
            return ex, False
        ex = make_exchange(name, type, durable, auto_delete, alternate, arguments)
        self._exchanges[name] = ex
        return ex, True

    def add(self, exchange):
        """Register an exchange object made elsewhere (recovery); PreconditionFailed if taken."""
        if exchange.name in self._exchanges:
            raise PreconditionFailed(f"Exchange already exists: {exchange.name!r}")
        self._exchanges[exchange.name] = exchange
        return exchange

    def get(self, name):
        """The exchange called ``name``, or None."""
        return self._exchanges.get(name)

    def find(self, name):
        """The exchange called ``name``; NotFound if there is none."""
        ex = self._exchanges.get(name)
        if ex is None:
            raise NotFound(f"Exchange not found: {name}")
        return ex

    def delete(self, name):
        """Remove and return the exchange (its bindings are the caller's to tidy up).
        Built-ins raise NotAllowed, unknown names NotFound."""
        if name in _BUILTIN_NAMES:
            raise NotAllowed(f"Cannot delete default exchange: '{name}'")
        ex = self._exchanges.pop(name, None)
        if ex is None:
            raise NotFound(f"Delete failed. No such exchange: {name}")
        return ex

    def unbind_queue(self, queue):
        """Remove ``queue``'s bindings from every exchange (when the queue is deleted)."""
        for ex in self._exchanges.values():
            ex.unbind_queue(queue)

    def names(self):
        return list(self._exchanges)

    def __iter__(self):
        return iter(list(self._exchanges.values()))

    def __len__(self):
        return len(self._exchanges)

    def __contains__(self, name):
        return name in self._exchanges

    def __getitem__(self, name):
        return self._exchanges[name]
