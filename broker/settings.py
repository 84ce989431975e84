"""Node settings: the one place where queue and exchange properties/arguments are understood.

``QueueSettings.from_properties(props, defaults)`` and ``ExchangeSettings.from_properties(props)``
turn a property map - AMQP 1.0 node properties (dynamic-node-properties / terminus properties),
QMF ``create`` properties, or stored arguments - into typed settings, with qpidd's names, types,
defaults and validation (amqp10-mapping.md sections 4, 8 and 9).

Values may arrive as strings (qpid-config sends strings), ints, bools, bytes, AMQP typed wrappers
or described values (anything with ``.descriptor`` and ``.value``); they are coerced, and anything
that cannot be raises :class:`SettingsError` (a ValueError carrying ``amqp:invalid-field``) with a
message that names the argument. Unrecognised keys are kept in ``.other`` (qpidd hands them to the
store and shows them in QMF ``arguments``); nothing is logged here.

Differences from qpidd 1.39, on purpose: ``ring_strict`` and ``flow_to_disk`` are accepted policy
types (qpidd 1.36's tools document them); an unknown ``qpid.policy_type`` value is an error rather
than a warning; ``qpid.priorities`` above 10 is clamped to 10 (AMQP has ten priorities).
"""

from cypid.pyx.journal_format import FILE_COUNT_RANGE as JOURNAL_FILE_COUNT
from cypid.pyx.journal_format import FILE_SIZE_RANGE as JOURNAL_FILE_SIZE

from .errors import InvalidArgument

__all__ = [
    "SettingsError",
    "QueueSettings",
    "ExchangeSettings",
    "LIFETIME_MANUAL",
    "LIFETIME_DELETE_ON_CLOSE",
    "LIFETIME_DELETE_IF_UNUSED",
    "LIFETIME_DELETE_IF_EMPTY",
    "LIFETIME_DELETE_IF_UNUSED_AND_EMPTY",
    "LIFETIME_DESCRIPTORS",
    "POLICY_TYPES",
    "EXCHANGE_TYPES",
    "REPLICATE_LEVELS",
]


class SettingsError(InvalidArgument):
    """A node property/argument that cannot be used (a ValueError; AMQP ``amqp:invalid-field``)."""


# -- vocabularies -----------------------------------------------------------------------------
LIFETIME_MANUAL = "manual"
LIFETIME_DELETE_ON_CLOSE = "delete-on-close"
LIFETIME_DELETE_IF_UNUSED = "delete-if-unused"
LIFETIME_DELETE_IF_EMPTY = "delete-if-empty"
LIFETIME_DELETE_IF_UNUSED_AND_EMPTY = "delete-if-unused-and-empty"

#: lifetime policy -> the AMQP 1.0 descriptor code of its described list (for reply terminus)
LIFETIME_DESCRIPTORS = {
    LIFETIME_DELETE_ON_CLOSE: 0x2B,
    LIFETIME_DELETE_IF_UNUSED: 0x2C,
    LIFETIME_DELETE_IF_EMPTY: 0x2D,
    LIFETIME_DELETE_IF_UNUSED_AND_EMPTY: 0x2E,
}
#: AMQP 1.0 descriptor symbols
LIFETIME_SYMBOLS = {
    LIFETIME_DELETE_ON_CLOSE: "amqp:delete-on-close:list",
    LIFETIME_DELETE_IF_UNUSED: "amqp:delete-on-no-links:list",
    LIFETIME_DELETE_IF_EMPTY: "amqp:delete-on-no-messages:list",
    LIFETIME_DELETE_IF_UNUSED_AND_EMPTY: "amqp:delete-on-no-links-or-messages:list",
}
_LIFETIME_BY_NAME = {}
for _policy, _code in LIFETIME_DESCRIPTORS.items():
    _LIFETIME_BY_NAME[_code] = _policy
    _LIFETIME_BY_NAME[_policy] = _policy
    _sym = LIFETIME_SYMBOLS[_policy]
    _LIFETIME_BY_NAME[_sym] = _policy
    _LIFETIME_BY_NAME[_sym[len("amqp:"):-len(":list")]] = _policy  # "delete-on-no-links"
_LIFETIME_BY_NAME[LIFETIME_MANUAL] = LIFETIME_MANUAL
del _policy, _code, _sym

POLICY_REJECT = "reject"
POLICY_RING = "ring"
POLICY_RING_STRICT = "ring_strict"
POLICY_FLOW_TO_DISK = "flow_to_disk"
POLICY_SELF_DESTRUCT = "self-destruct"
POLICY_TYPES = (POLICY_REJECT, POLICY_RING, POLICY_RING_STRICT, POLICY_FLOW_TO_DISK, POLICY_SELF_DESTRUCT)

EXCHANGE_TYPES = ("direct", "topic", "fanout", "headers")
REPLICATE_LEVELS = ("none", "configuration", "all")

#: the header of legacy LVQs (qpid.last_value_queue / qpid.last_value_queue_no_browse)
LVQ_LEGACY_KEY = "qpid.LVQ_key"
#: the group of a message without the group header
DEFAULT_GROUP = "qpid.no-group"
#: AMQP has priorities 0-9
MAX_PRIORITY_LEVELS = 10

UINT64_MAX = (1 << 64) - 1

_TRUE = frozenset(("1", "true", "yes", "on", "t", "y"))
_FALSE = frozenset(("0", "false", "no", "off", "f", "n", ""))


# -- coercion ---------------------------------------------------------------------------------
def _plain(value):
    """Unwrap a described value; decode bytes."""
    if hasattr(value, "descriptor") and hasattr(value, "value"):
        value = value.value
    if isinstance(value, (bytes, bytearray, memoryview)):
        try:
            value = bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            pass
    return value


def as_bool(key, value):
    value = _plain(value)
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value != 0
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
    if isinstance(value, float) and value in (0.0, 1.0):
        return value == 1.0
    raise SettingsError(f"{key}: expected a boolean (true/false/1/0), got {value!r}")


def as_uint(key, value, maximum=UINT64_MAX):
    value = _plain(value)
    if isinstance(value, bool):
        number = int(value)
    elif isinstance(value, int):
        number = int(value)
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    elif isinstance(value, str):
        text = value.strip()
        try:
            number = int(text, 10)
        except ValueError:
            try:
                f = float(text)
            except ValueError:
                f = None
            if f is None or not f.is_integer():
                raise SettingsError(f"{key}: expected a non-negative integer, got {value!r}") from None
            number = int(f)
    else:
        raise SettingsError(f"{key}: expected a non-negative integer, got {value!r}")
    if number < 0:
        raise SettingsError(f"{key}: must not be negative, got {number}")
    if number > maximum:
        raise SettingsError(f"{key}: {number} is too large (maximum {maximum})")
    return number


def as_str(key, value):
    value = _plain(value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    raise SettingsError(f"{key}: expected a string, got {value!r}")


def _choice(key, value, choices):
    text = as_str(key, value).strip()
    if text not in choices:
        raise SettingsError(f"{key}: {text!r} is not one of {', '.join(choices)}")
    return text


def _lifetime(key, value):
    """A lifetime policy from a described list (code or symbol descriptor) or a name."""
    if hasattr(value, "descriptor") and hasattr(value, "value"):
        name = value.descriptor
    else:
        name = value
    name = _plain(name)
    if isinstance(name, bool):
        name = None
    elif isinstance(name, str):
        name = name.strip()
    policy = _LIFETIME_BY_NAME.get(name) if isinstance(name, (int, str)) else None
    if policy is None:
        shown = hex(name) if isinstance(name, int) and not isinstance(name, bool) else repr(name)
        raise SettingsError(f"{key}: unknown lifetime policy {shown}")
    return policy


def _default(defaults, name, fallback):
    if defaults is None:
        return fallback
    if isinstance(defaults, dict):
        value = defaults.get(name, fallback)
    else:
        value = getattr(defaults, name, fallback)
    return fallback if value is None else value


# node-level keys (not arguments); "exchange-type"/"supported-dist-modes" are informational for a queue
_NODE_KEYS = frozenset(
    ("durable", "auto-delete", "auto_delete", "exclusive", "alternate-exchange", "lifetime-policy",
     "supported-dist-modes", "exchange-type")
)


# -- queues -----------------------------------------------------------------------------------
class QueueSettings:
    """A queue's settings. Limits use 0 for "none" (``max_count``, ``max_size``, thresholds).

    Attributes (qpidd argument in brackets):
      durable, auto_delete, exclusive, alternate_exchange, lifetime_policy (None or one of the
      LIFETIME_* names; see ``lifetime`` for the effective one), auto_delete_timeout [seconds],
      max_count, max_size [bytes; default the broker's --default-queue-limit], policy_type (+ the
      booleans ring, ring_strict, flow_to_disk, self_destruct), flow_stop_count,
      flow_resume_count, flow_stop_size, flow_resume_size, lvq_key (None or header name),
      lvq_no_browse, priorities, fairshare, fairshare_levels ({level: n}), group_header_key,
      shared_msg_group, group_timestamp, browse_only, no_local, paging, max_pages_loaded,
      page_factor, queue_msg_sequence, filter, trace_id, trace_exclude, alert_count, alert_size,
      alert_count_down, alert_size_down, alert_repeat_gap [seconds], file_count (3..64), file_size
      [64 KiB pages, 1..32767], journal_max_size [MiB; 0 none; never above the broker's
      --journal-max-size], efp_partition_num, efp_pool_file_size [KiB], replicate, other (unrecognised
      keys, raw), given (the recognised arguments as given, typed: see as_arguments()).
    """

    def __init__(self):
        self.durable = False
        self.auto_delete = False
        self.exclusive = False
        self.alternate_exchange = None
        self.lifetime_policy = None
        self.auto_delete_timeout = 0
        self.max_count = 0
        self.max_size = 0
        self.policy_type = POLICY_REJECT
        self.flow_stop_count = 0
        self.flow_resume_count = 0
        self.flow_stop_size = 0
        self.flow_resume_size = 0
        self.lvq_key = None
        self.lvq_no_browse = False
        self.priorities = 0
        self.fairshare = 0
        self.fairshare_levels = {}
        self.group_header_key = None
        self.shared_msg_group = False
        self.group_timestamp = False
        self.default_group = DEFAULT_GROUP
        self.browse_only = False
        self.no_local = False
        self.paging = False
        self.max_pages_loaded = 4
        self.page_factor = 1
        self.queue_msg_sequence = None
        self.filter = None
        self.trace_id = None
        self.trace_exclude = None
        self.alert_count = 0
        self.alert_size = 0
        self.alert_count_down = 0
        self.alert_size_down = 0
        self.alert_repeat_gap = 60
        self.file_count = 8
        self.file_size = 24
        self.journal_max_size = 4096
        self._broker_journal_max = 4096
        self.efp_partition_num = None
        self.efp_pool_file_size = None
        self.replicate = "none"
        self.other = {}
        self.given = {}

    # -- derived ----------------------------------------------------------------------------
    @property
    def ring(self):
        return self.policy_type in (POLICY_RING, POLICY_RING_STRICT)

    @property
    def ring_strict(self):
        return self.policy_type == POLICY_RING_STRICT

    @property
    def flow_to_disk(self):
        return self.policy_type == POLICY_FLOW_TO_DISK

    @property
    def self_destruct(self):
        return self.policy_type == POLICY_SELF_DESTRUCT

    @property
    def lvq(self):
        return self.lvq_key is not None

    @property
    def lifetime(self):
        """The effective lifetime policy: ``manual`` unless auto-delete; then the one asked for,
        or ``delete-if-unused``."""
        if not self.auto_delete:
            return LIFETIME_MANUAL
        if self.lifetime_policy is None or self.lifetime_policy == LIFETIME_MANUAL:
            return LIFETIME_DELETE_IF_UNUSED
        return self.lifetime_policy

    @property
    def flow_control(self):
        return bool(self.flow_stop_count or self.flow_stop_size)

    def as_arguments(self):
        """The queue arguments as set (keys as given, values typed) plus the unrecognised ones:
        what QMF shows as the queue's ``arguments``."""
        out = dict(self.given)
        out.update(self.other)
        return out

    def __repr__(self):
        args = self.as_arguments()
        return f"<QueueSettings {args!r} durable={self.durable} auto_delete={self.auto_delete}>"

    # -- parsing ----------------------------------------------------------------------------
    @classmethod
    def from_properties(cls, props, defaults=None):
        """Settings from a property/argument map. ``defaults``: the broker options (an object or
        dict with ``default_queue_limit``, ``default_flow_stop_threshold``,
        ``default_flow_resume_threshold``, ``default_event_threshold_ratio``, ``num_jfiles``,
        ``jfile_size_pgs``, ``ha_replicate``), or None for qpidd's defaults."""
        self = cls()
        seen = {}
        for key, value in (props or {}).items():
            key = _plain(key)
            if not isinstance(key, str):
                raise SettingsError(f"queue property names must be strings, got {key!r}")
            handler = _QUEUE_KEYS.get(key)
            if handler is None:
                if key.startswith(("qpid.fairshare-", "x-qpid-fairshare-")):
                    self._fairshare_level(key, value)
                    continue
                if key not in _NODE_KEYS:
                    self.other[key] = value
                continue
            typed = handler(self, key, value, seen)
            if typed is not _NODE and key not in _NODE_KEYS:
                self.given[key] = typed
        self._finish(seen, defaults)
        self._validate(seen)
        return self

    def _fairshare_level(self, key, value):
        suffix = key.rsplit("-", 1)[1]
        if not suffix.isdigit():
            raise SettingsError(f"{key}: the priority level after '-' must be a number")
        n = as_uint(key, value)
        self.fairshare_levels[int(suffix)] = n
        self.given[key] = n

    def _finish(self, seen, defaults):
        """Defaults that depend on other settings and on the broker's options."""
        if "max_size" not in seen:
            limit = _default(defaults, "default_queue_limit", 104857600)
            self.max_size = as_uint("default-queue-limit", limit)
        stop_ratio = _default(defaults, "default_flow_stop_threshold", 80)
        resume_ratio = _default(defaults, "default_flow_resume_threshold", 70)
        if self.ring or self.flow_to_disk:
            # no producer flow control on ring queues (qpidd), nor where the limit is where messages
            # start to flow to disk (flow_to_disk predates qpidd's flow control)
            self.flow_stop_count = self.flow_resume_count = 0
            self.flow_stop_size = self.flow_resume_size = 0
        elif "flow_stop_count" in seen or "flow_stop_size" in seen:
            pass  # given explicitly: what was not given stays 0
        elif "flow_resume_count" not in seen and "flow_resume_size" not in seen and stop_ratio:
            self.flow_stop_count = int(self.max_count * stop_ratio / 100.0 + 0.5)
            self.flow_resume_count = int(self.max_count * resume_ratio / 100.0)
            self.flow_stop_size = int(self.max_size * stop_ratio / 100.0 + 0.5)
            self.flow_resume_size = int(self.max_size * resume_ratio / 100.0)
        ratio = _default(defaults, "default_event_threshold_ratio", 80)
        if "alert_count" not in seen and self.max_count and ratio:
            self.alert_count = int(self.max_count * ratio / 100.0)
        if "alert_size" not in seen and self.max_size and ratio:
            self.alert_size = int(self.max_size * ratio / 100.0)
        if "file_count" not in seen:
            self.file_count = _default(defaults, "num_jfiles", 8)
        if "file_size" not in seen:
            self.file_size = _default(defaults, "jfile_size_pgs", 24)
        self._broker_journal_max = _default(defaults, "journal_max_size", 4096)
        if "journal_max_size" not in seen:
            self.journal_max_size = self._broker_journal_max
        if "replicate" not in seen:
            self.replicate = _default(defaults, "ha_replicate", "none")
        if self.lifetime_policy is not None and self.lifetime_policy != LIFETIME_MANUAL:
            self.auto_delete = True
        elif self.lifetime_policy == LIFETIME_MANUAL and "auto-delete" not in seen:
            self.auto_delete = False
        if self.auto_delete_timeout:
            self.auto_delete = True
        if self.priorities > MAX_PRIORITY_LEVELS:
            self.priorities = MAX_PRIORITY_LEVELS

    def _validate(self, seen):
        def fail(message):
            raise SettingsError(message)

        lvq = self.lvq_key is not None
        if lvq and self.priorities:
            fail("qpid.last_value_queue_key: a last-value queue cannot also have qpid.priorities")
        if (self.fairshare or self.fairshare_levels) and not self.priorities:
            fail("qpid.fairshare: fairshare requires qpid.priorities")
        for level in self.fairshare_levels:
            if level >= self.priorities:
                fail(
                    f"qpid.fairshare-{level}: priority level {level} is beyond the queue's "
                    f"{self.priorities} qpid.priorities levels"
                )
        if self.group_header_key is not None:
            if lvq:
                fail("qpid.group_header_key: message groups cannot be used with a last-value queue")
            if self.priorities:
                fail("qpid.group_header_key: message groups cannot be used with qpid.priorities")
            if not self.shared_msg_group:
                fail("qpid.group_header_key: only shared groups are supported: set qpid.shared_msg_group=1")
        else:
            if self.shared_msg_group:
                fail("qpid.shared_msg_group: requires qpid.group_header_key")
            if self.group_timestamp:
                fail("qpid.group_timestamp: requires qpid.group_header_key")
        if self.paging:
            if lvq:
                fail("qpid.paging: a paged queue cannot be a last-value queue")
            if self.priorities:
                fail("qpid.paging: a paged queue cannot have qpid.priorities")
            if self.group_header_key is not None:
                fail("qpid.paging: a paged queue cannot have message groups")
        else:
            if "max_pages_loaded" in seen:
                fail("qpid.max_pages_loaded: only valid with qpid.paging")
            if "page_factor" in seen:
                fail("qpid.page_factor: only valid with qpid.paging")
        if self.flow_resume_count > self.flow_stop_count:
            fail(
                f"qpid.flow_resume_count={self.flow_resume_count} must be less than "
                f"qpid.flow_stop_count={self.flow_stop_count}"
            )
        if self.flow_resume_size > self.flow_stop_size:
            fail(
                f"qpid.flow_resume_size={self.flow_resume_size} must be less than "
                f"qpid.flow_stop_size={self.flow_stop_size}"
            )
        if not JOURNAL_FILE_COUNT[0] <= self.file_count <= JOURNAL_FILE_COUNT[1]:
            fail("qpid.file_count: a journal has %d..%d files, not %d"
                 % (JOURNAL_FILE_COUNT + (self.file_count,)))
        if not JOURNAL_FILE_SIZE[0] <= self.file_size <= JOURNAL_FILE_SIZE[1]:
            fail("qpid.file_size: a journal file has %d..%d pages of 64 KiB, not %d"
                 % (JOURNAL_FILE_SIZE + (self.file_size,)))
        top = self._broker_journal_max
        if "journal_max_size" in seen and top and not 0 < self.journal_max_size <= top:
            fail("qpid.journal_max_size: a queue's journal may have 1..%d MiB (the broker's "
                 "--journal-max-size), not %d" % (top, self.journal_max_size))
        limit = self.journal_max_size << 20
        initial = self.file_count * (4096 + self.file_size * 65536)
        if limit and initial > limit:
            fail("qpid.file_count x qpid.file_size: %d files of %d pages of 64 KiB (%d MiB) are over the "
                 "journal limit of %d MiB (--journal-max-size or qpid.journal_max_size)"
                 % (self.file_count, self.file_size, (initial + (1 << 20) - 1) >> 20, self.journal_max_size))
        if self.page_factor < 1:
            fail("qpid.page_factor: must be at least 1")
        if self.max_pages_loaded < 1:
            fail("qpid.max_pages_loaded: must be at least 1")


_NODE = object()  # handler result: a node-level key, not an argument


def _q_bool(attr, seen_as=None):
    def handle(s, key, value, seen):
        v = as_bool(key, value)
        setattr(s, attr, v)
        seen[seen_as or attr] = key
        return v

    return handle


def _q_uint(attr, seen_as=None):
    def handle(s, key, value, seen):
        v = as_uint(key, value)
        setattr(s, attr, v)
        seen[seen_as or attr] = key
        return v

    return handle


def _q_str(attr):
    def handle(s, key, value, seen):
        v = as_str(key, value)
        setattr(s, attr, v)
        seen[attr] = key
        return v

    return handle


def _q_node_bool(attr, seen_as):
    def handle(s, key, value, seen):
        setattr(s, attr, as_bool(key, value))
        seen[seen_as] = key
        return _NODE

    return handle


def _q_alternate(s, key, value, seen):
    value = _plain(value)
    s.alternate_exchange = None if value is None or value == "" else as_str(key, value)
    return _NODE


def _q_lifetime(s, key, value, seen):
    policy = _lifetime(key, value)
    s.lifetime_policy = policy
    seen["lifetime"] = key
    if key == "lifetime-policy":
        return _NODE
    return policy


def _q_policy(s, key, value, seen):
    s.policy_type = _choice(key, value, POLICY_TYPES)
    seen["policy_type"] = key
    return s.policy_type


def _q_lvq_legacy(no_browse):
    """qpid.last_value_queue / qpid.last_value_queue_no_browse: an LVQ keyed on qpid.LVQ_key.
    qpidd looks only at the key's presence; an explicit false value turns it off here."""

    def handle(s, key, value, seen):
        try:
            on = as_bool(key, value)
        except SettingsError:
            on = True
        if on:
            if "lvq_key" not in seen:  # qpid.last_value_queue_key wins whatever the order
                s.lvq_key = LVQ_LEGACY_KEY
            if no_browse:
                s.lvq_no_browse = True
        return on

    return handle


def _q_lvq_key(s, key, value, seen):
    s.lvq_key = as_str(key, value)
    seen["lvq_key"] = key
    return s.lvq_key


def _q_priorities(s, key, value, seen):
    # qpid.priorities wins over its alias whatever the order
    v = as_uint(key, value)
    if key == "qpid.priorities" or seen.get("priorities") != "qpid.priorities":
        s.priorities = v
        seen["priorities"] = key
    return v


def _q_fairshare(s, key, value, seen):
    v = as_uint(key, value)
    if key == "qpid.fairshare" or seen.get("fairshare") != "qpid.fairshare":
        s.fairshare = v
        seen["fairshare"] = key
    return v


def _q_ranked(attr, ranking):
    """An argument with aliases: the earlier name in ``ranking`` wins whatever the order."""

    def handle(s, key, value, seen):
        v = as_uint(key, value)
        current = seen.get(attr)
        if current is None or ranking.index(key) <= ranking.index(current):
            setattr(s, attr, v)
            seen[attr] = key
        return v

    return handle


def _q_replicate(s, key, value, seen):
    s.replicate = _choice(key, value, REPLICATE_LEVELS)
    seen["replicate"] = key
    return s.replicate


_QUEUE_KEYS = {
    # node-level
    "durable": _q_node_bool("durable", "durable"),
    "auto-delete": _q_node_bool("auto_delete", "auto-delete"),
    "auto_delete": _q_node_bool("auto_delete", "auto-delete"),
    "exclusive": _q_node_bool("exclusive", "exclusive"),
    "alternate-exchange": _q_alternate,
    "lifetime-policy": _q_lifetime,
    "qpid.lifetime-policy": _q_lifetime,
    # limits and policy
    "qpid.max_count": _q_uint("max_count"),
    "qpid.max_size": _q_uint("max_size"),
    "qpid.policy_type": _q_policy,
    "qpid.flow_stop_count": _q_uint("flow_stop_count"),
    "qpid.flow_resume_count": _q_uint("flow_resume_count"),
    "qpid.flow_stop_size": _q_uint("flow_stop_size"),
    "qpid.flow_resume_size": _q_uint("flow_resume_size"),
    # ordering
    "qpid.last_value_queue_key": _q_lvq_key,
    "qpid.last_value_queue": _q_lvq_legacy(False),
    "qpid.last_value_queue_no_browse": _q_lvq_legacy(True),
    "qpid.priorities": _q_priorities,
    "x-qpid-priorities": _q_priorities,
    "qpid.fairshare": _q_fairshare,
    "x-qpid-fairshare": _q_fairshare,
    "qpid.group_header_key": _q_str("group_header_key"),
    "qpid.shared_msg_group": _q_bool("shared_msg_group"),
    "qpid.group_timestamp": _q_bool("group_timestamp"),
    # lifetime
    "qpid.auto_delete_timeout": _q_uint("auto_delete_timeout"),
    # consumers
    "qpid.browse-only": _q_bool("browse_only"),
    "no-local": _q_bool("no_local"),
    # paging
    "qpid.paging": _q_bool("paging"),
    "qpid.max_pages_loaded": _q_uint("max_pages_loaded"),
    "qpid.page_factor": _q_uint("page_factor"),
    # annotations, filters, federation
    "qpid.queue_msg_sequence": _q_str("queue_msg_sequence"),
    "qpid.filter": _q_str("filter"),
    "qpid.trace.id": _q_str("trace_id"),
    "qpid.trace.exclude": _q_str("trace_exclude"),
    # threshold events
    "qpid.alert_count_up": _q_ranked(
        "alert_count", ("qpid.alert_count_up", "qpid.alert_count", "x-qpid-maximum-message-count")
    ),
    "qpid.alert_count": _q_ranked(
        "alert_count", ("qpid.alert_count_up", "qpid.alert_count", "x-qpid-maximum-message-count")
    ),
    "x-qpid-maximum-message-count": _q_ranked(
        "alert_count", ("qpid.alert_count_up", "qpid.alert_count", "x-qpid-maximum-message-count")
    ),
    "qpid.alert_size_up": _q_ranked(
        "alert_size", ("qpid.alert_size_up", "qpid.alert_size", "x-qpid-maximum-message-size")
    ),
    "qpid.alert_size": _q_ranked(
        "alert_size", ("qpid.alert_size_up", "qpid.alert_size", "x-qpid-maximum-message-size")
    ),
    "x-qpid-maximum-message-size": _q_ranked(
        "alert_size", ("qpid.alert_size_up", "qpid.alert_size", "x-qpid-maximum-message-size")
    ),
    "qpid.alert_count_down": _q_uint("alert_count_down"),
    "qpid.alert_size_down": _q_uint("alert_size_down"),
    "qpid.alert_repeat_gap": _q_ranked(
        "alert_repeat_gap", ("qpid.alert_repeat_gap", "x-qpid-minimum-alert-repeat-gap")
    ),
    "x-qpid-minimum-alert-repeat-gap": _q_ranked(
        "alert_repeat_gap", ("qpid.alert_repeat_gap", "x-qpid-minimum-alert-repeat-gap")
    ),
    # store
    "qpid.file_count": _q_uint("file_count"),
    "qpid.file_size": _q_uint("file_size"),
    "qpid.journal_max_size": _q_uint("journal_max_size"),
    "qpid.efp_partition_num": _q_uint("efp_partition_num"),
    "qpid.efp_pool_file_size": _q_uint("efp_pool_file_size"),
    # HA
    "qpid.replicate": _q_replicate,
}


# -- exchanges --------------------------------------------------------------------------------
class ExchangeSettings:
    """An exchange's settings.

    Attributes: type (``exchange-type``, default ``topic``; also ``exchange_type``), durable,
    auto_delete, alternate_exchange, lifetime_policy, sequence (``qpid.msg_sequence``), ive
    (``qpid.ive``), replicate, arguments (every property that is not a node-level one, raw: what
    ``make_exchange(arguments=...)`` takes and QMF shows), other (the unrecognised ones).
    """

    def __init__(self):
        self.type = "topic"
        self.durable = False
        self.auto_delete = False
        self.alternate_exchange = None
        self.lifetime_policy = None
        self.sequence = False
        self.ive = False
        self.replicate = "none"
        self.arguments = {}
        self.other = {}

    @property
    def exchange_type(self):
        return self.type

    def as_arguments(self):
        return dict(self.arguments)

    def __repr__(self):
        return f"<ExchangeSettings type={self.type} {self.arguments!r}>"

    @classmethod
    def from_properties(cls, props, defaults=None):
        self = cls()
        auto_delete_given = False
        for key, value in (props or {}).items():
            key = _plain(key)
            if not isinstance(key, str):
                raise SettingsError(f"exchange property names must be strings, got {key!r}")
            if key == "exchange-type":
                text = as_str(key, value).strip()
                if text not in EXCHANGE_TYPES:
                    raise SettingsError(
                        f"exchange-type: unknown exchange type {text!r} (one of {', '.join(EXCHANGE_TYPES)})"
                    )
                self.type = text
            elif key == "durable":
                self.durable = as_bool(key, value)
            elif key in ("auto-delete", "auto_delete"):
                self.auto_delete = as_bool(key, value)
                auto_delete_given = True
            elif key == "alternate-exchange":
                plain = _plain(value)
                self.alternate_exchange = None if plain is None or plain == "" else as_str(key, plain)
            elif key in ("lifetime-policy", "qpid.lifetime-policy"):
                self.lifetime_policy = _lifetime(key, value)
                if key == "qpid.lifetime-policy":
                    self.arguments[key] = self.lifetime_policy
            elif key == "supported-dist-modes":
                pass
            else:
                if key == "qpid.msg_sequence":
                    self.sequence = as_bool(key, value)
                elif key == "qpid.ive":
                    self.ive = as_bool(key, value)
                elif key == "qpid.replicate":
                    self.replicate = _choice(key, value, REPLICATE_LEVELS)
                else:
                    self.other[key] = value
                self.arguments[key] = value
        if self.lifetime_policy is not None:
            if self.lifetime_policy != LIFETIME_MANUAL:
                self.auto_delete = True
            elif not auto_delete_given:
                self.auto_delete = False
        if "qpid.replicate" not in self.arguments:
            self.replicate = _default(defaults, "ha_replicate", "none")
        return self
