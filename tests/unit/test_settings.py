"""Queue and exchange settings from node properties (cypid.broker.settings)."""

from types import SimpleNamespace

import pytest

from cypid.broker import errors
from cypid.broker.settings import (
    DEFAULT_GROUP,
    LIFETIME_DESCRIPTORS,
    LVQ_LEGACY_KEY,
    ExchangeSettings,
    QueueSettings,
    SettingsError,
)


class D:
    """A described value, as the codec gives it."""

    def __init__(self, descriptor, value):
        self.descriptor = descriptor
        self.value = value


def q(props=None, defaults=None):
    return QueueSettings.from_properties(props or {}, defaults)


def bad(props, match, defaults=None):
    with pytest.raises(SettingsError, match=match) as info:
        q(props, defaults)
    return info.value


# -- basics -----------------------------------------------------------------------------------
def test_defaults():
    s = q()
    assert not s.durable and not s.auto_delete and not s.exclusive
    assert s.alternate_exchange is None and s.lifetime_policy is None and s.lifetime == "manual"
    assert s.max_count == 0 and s.max_size == 104857600
    assert s.policy_type == "reject" and not s.ring and not s.self_destruct
    assert (s.flow_stop_count, s.flow_resume_count) == (0, 0)
    assert s.flow_stop_size == 83886080 and s.flow_resume_size == 73400320
    assert s.flow_control
    assert s.alert_count == 0 and s.alert_size == 83886080
    assert s.lvq_key is None and not s.lvq and s.priorities == 0
    assert s.group_header_key is None and s.default_group == DEFAULT_GROUP
    assert not s.browse_only and not s.no_local and not s.paging
    assert s.max_pages_loaded == 4 and s.page_factor == 1
    assert s.alert_repeat_gap == 60 and s.file_count == 8 and s.file_size == 24
    assert s.replicate == "none" and s.auto_delete_timeout == 0
    assert s.other == {} and s.as_arguments() == {}


def test_node_properties():
    s = q({"durable": True, "auto-delete": "true", "exclusive": 1, "alternate-exchange": "amq.fanout",
           "supported-dist-modes": "move"})
    assert s.durable and s.auto_delete and s.exclusive and s.alternate_exchange == "amq.fanout"
    assert s.lifetime == "delete-if-unused"
    assert s.as_arguments() == {}  # node-level keys are not arguments
    assert q({"alternate-exchange": ""}).alternate_exchange is None


def test_values_as_strings_like_qpid_config():
    s = q({"qpid.max_count": "1000", "qpid.max_size": " 2048 ", "qpid.browse-only": "True",
           "qpid.policy_type": "ring", "durable": "yes"})
    assert s.max_count == 1000 and s.max_size == 2048 and s.browse_only and s.durable and s.ring
    assert s.as_arguments() == {"qpid.max_count": 1000, "qpid.max_size": 2048,
                                "qpid.browse-only": True, "qpid.policy_type": "ring"}


def test_bytes_and_described_values_are_unwrapped():
    s = q({"qpid.max_count": D(0x99, 5), "qpid.last_value_queue_key": b"k"})
    assert s.max_count == 5 and s.lvq_key == "k"


def test_broker_defaults_object_and_dict():
    opts = SimpleNamespace(default_queue_limit=1000, default_flow_stop_threshold=50,
                           default_flow_resume_threshold=40, default_event_threshold_ratio=90,
                           num_jfiles=4, jfile_size_pgs=16)
    s = q({"qpid.max_count": 10}, opts)
    assert s.max_size == 1000
    assert (s.flow_stop_count, s.flow_resume_count, s.flow_stop_size, s.flow_resume_size) == (5, 4, 500, 400)
    assert s.alert_count == 9 and s.alert_size == 900
    assert s.file_count == 4 and s.file_size == 16
    s = q({}, {"default_queue_limit": 0, "ha_replicate": "all"})
    assert s.max_size == 0 and s.flow_stop_size == 0 and not s.flow_control and s.alert_size == 0
    assert s.replicate == "all"


def test_broker_options_dataclass():
    from cypid.broker.options import Options

    s = q({"qpid.max_count": 100}, Options())
    assert s.max_size == 104857600 and s.flow_stop_count == 80 and s.flow_resume_count == 70


def test_explicit_zero_max_size_is_unlimited():
    s = q({"qpid.max_size": 0})
    assert s.max_size == 0 and s.flow_stop_size == 0 and s.alert_size == 0


def test_other_keys_kept():
    s = q({"qpid.unknown_thing": "x", "x-custom": 3, "qpid.max_count": 1})
    assert s.other == {"qpid.unknown_thing": "x", "x-custom": 3}
    assert s.as_arguments() == {"qpid.max_count": 1, "qpid.unknown_thing": "x", "x-custom": 3}


# -- lifetime ---------------------------------------------------------------------------------
@pytest.mark.parametrize("code,policy", sorted((c, p) for p, c in LIFETIME_DESCRIPTORS.items()))
def test_lifetime_policy_descriptor_codes(code, policy):
    s = q({"lifetime-policy": D(code, [])})
    assert s.lifetime_policy == policy and s.auto_delete and s.lifetime == policy
    assert "lifetime-policy" not in s.as_arguments()


@pytest.mark.parametrize("symbol,policy", [
    ("amqp:delete-on-close:list", "delete-on-close"),
    ("amqp:delete-on-no-links:list", "delete-if-unused"),
    ("amqp:delete-on-no-messages:list", "delete-if-empty"),
    ("amqp:delete-on-no-links-or-messages:list", "delete-if-unused-and-empty"),
])
def test_lifetime_policy_symbols(symbol, policy):
    assert q({"lifetime-policy": D(symbol, [])}).lifetime_policy == policy
    assert q({"lifetime-policy": symbol}).lifetime_policy == policy  # plain value


def test_lifetime_policy_with_codec_described():
    codec = pytest.importorskip("cypid.pyx.codec")
    s = q({"lifetime-policy": codec.Described(codec.ulong(0x2B), [])})
    assert s.lifetime_policy == "delete-on-close" and s.auto_delete


def test_qpid_lifetime_policy():
    s = q({"qpid.lifetime-policy": "delete-if-unused-and-empty"})
    assert s.auto_delete and s.lifetime == "delete-if-unused-and-empty"
    assert s.as_arguments() == {"qpid.lifetime-policy": "delete-if-unused-and-empty"}
    s = q({"qpid.lifetime-policy": "manual"})
    assert not s.auto_delete and s.lifetime == "manual"
    assert q({"qpid.lifetime-policy": "manual", "auto-delete": True}).auto_delete


def test_unknown_lifetime_policy():
    bad({"lifetime-policy": D(0x99, [])}, r"lifetime-policy.*0x99")
    bad({"lifetime-policy": "forever"}, "lifetime-policy")
    bad({"qpid.lifetime-policy": "forever"}, "qpid.lifetime-policy")


def test_auto_delete_timeout_implies_auto_delete():
    s = q({"qpid.auto_delete_timeout": "30"})
    assert s.auto_delete_timeout == 30 and s.auto_delete
    s = q({"qpid.auto_delete_timeout": 0})
    assert not s.auto_delete


# -- policy and flow --------------------------------------------------------------------------
@pytest.mark.parametrize("policy", ["reject", "ring", "ring_strict", "flow_to_disk", "self-destruct"])
def test_policy_types(policy):
    s = q({"qpid.policy_type": policy})
    assert s.policy_type == policy
    assert s.ring == (policy in ("ring", "ring_strict"))
    assert s.ring_strict == (policy == "ring_strict")
    assert s.flow_to_disk == (policy == "flow_to_disk")
    assert s.self_destruct == (policy == "self-destruct")


def test_unknown_policy_type():
    bad({"qpid.policy_type": "drop"}, r"qpid.policy_type.*'drop'")


def test_ring_queue_has_no_flow_control():
    s = q({"qpid.policy_type": "ring", "qpid.max_count": 10, "qpid.flow_stop_count": 5})
    assert not s.flow_control and s.flow_stop_count == 0 and s.flow_stop_size == 0


def test_explicit_flow_thresholds():
    s = q({"qpid.max_count": 100, "qpid.flow_stop_count": 50, "qpid.flow_resume_count": 20})
    assert (s.flow_stop_count, s.flow_resume_count) == (50, 20)
    assert s.flow_stop_size == 0 and s.flow_resume_size == 0  # only what was given
    s = q({"qpid.flow_stop_size": 1000})
    assert s.flow_stop_size == 1000 and s.flow_resume_size == 0 and s.flow_stop_count == 0
    s = q({"qpid.flow_stop_count": 0, "qpid.flow_stop_size": 0})
    assert not s.flow_control


def test_flow_resume_above_stop():
    bad({"qpid.flow_stop_count": 10, "qpid.flow_resume_count": 20}, "qpid.flow_resume_count=20")
    bad({"qpid.flow_stop_size": 10, "qpid.flow_resume_size": 20}, "qpid.flow_resume_size=20")


def test_flow_resume_without_stop():
    bad({"qpid.flow_resume_count": 5}, "qpid.flow_resume_count")
    bad({"qpid.flow_resume_size": 5}, "qpid.flow_resume_size")


def test_flow_default_ratios_round_like_qpidd():
    s = q({"qpid.max_count": 7, "qpid.max_size": 7})
    assert s.flow_stop_count == 6 and s.flow_resume_count == 4  # 5.6+0.5 -> 6, 4.9 -> 4
    assert s.flow_stop_size == 6 and s.flow_resume_size == 4


# -- LVQ, priorities, fairshare, groups -------------------------------------------------------
def test_lvq_key_and_legacy():
    assert q({"qpid.last_value_queue_key": "k"}).lvq_key == "k"
    s = q({"qpid.last_value_queue": 1})
    assert s.lvq_key == LVQ_LEGACY_KEY and s.lvq and not s.lvq_no_browse
    s = q({"qpid.last_value_queue_no_browse": "1"})
    assert s.lvq_key == LVQ_LEGACY_KEY and s.lvq_no_browse
    assert q({"qpid.last_value_queue": "false"}).lvq_key is None
    assert q({"qpid.last_value_queue": "anything"}).lvq_key == LVQ_LEGACY_KEY  # presence counts
    # the explicit key wins whatever the order
    assert q({"qpid.last_value_queue_key": "k", "qpid.last_value_queue": 1}).lvq_key == "k"
    assert q({"qpid.last_value_queue": 1, "qpid.last_value_queue_key": "k"}).lvq_key == "k"


def test_priorities_and_alias():
    assert q({"qpid.priorities": "5"}).priorities == 5
    assert q({"x-qpid-priorities": 3}).priorities == 3
    assert q({"x-qpid-priorities": 3, "qpid.priorities": 4}).priorities == 4
    assert q({"qpid.priorities": 4, "x-qpid-priorities": 3}).priorities == 4
    assert q({"qpid.priorities": 255}).priorities == 10  # clamped


def test_fairshare():
    s = q({"qpid.priorities": 4, "qpid.fairshare": 2, "qpid.fairshare-3": 5, "x-qpid-fairshare-1": "7"})
    assert s.fairshare == 2 and s.fairshare_levels == {3: 5, 1: 7}
    assert q({"qpid.priorities": 4, "x-qpid-fairshare": 3}).fairshare == 3
    assert s.as_arguments()["qpid.fairshare-3"] == 5


def test_fairshare_without_priorities():
    bad({"qpid.fairshare": 2}, "qpid.fairshare.*requires qpid.priorities")
    bad({"qpid.fairshare-1": 2}, "requires qpid.priorities")


def test_fairshare_level_beyond_priorities():
    bad({"qpid.priorities": 3, "qpid.fairshare-3": 1}, "qpid.fairshare-3")


def test_fairshare_level_not_a_number():
    bad({"qpid.priorities": 3, "qpid.fairshare-x": 1}, "qpid.fairshare-x")


def test_lvq_with_priorities():
    bad({"qpid.last_value_queue_key": "k", "qpid.priorities": 3}, "qpid.last_value_queue_key")


def test_groups():
    s = q({"qpid.group_header_key": "g", "qpid.shared_msg_group": "1", "qpid.group_timestamp": True})
    assert s.group_header_key == "g" and s.shared_msg_group and s.group_timestamp


def test_group_key_without_shared_groups():
    bad({"qpid.group_header_key": "g"}, "qpid.group_header_key.*shared")


def test_group_with_lvq_or_priorities():
    bad({"qpid.group_header_key": "g", "qpid.shared_msg_group": 1, "qpid.last_value_queue_key": "k"},
        "qpid.group_header_key.*last-value")
    bad({"qpid.group_header_key": "g", "qpid.shared_msg_group": 1, "qpid.priorities": 2},
        "qpid.group_header_key.*priorities")


def test_shared_or_timestamp_without_group_key():
    bad({"qpid.shared_msg_group": 1}, "qpid.shared_msg_group")
    bad({"qpid.group_timestamp": 1}, "qpid.group_timestamp")


# -- paging -----------------------------------------------------------------------------------
def test_paging():
    s = q({"qpid.paging": True, "qpid.max_pages_loaded": 8, "qpid.page_factor": "2"})
    assert s.paging and s.max_pages_loaded == 8 and s.page_factor == 2


def test_paging_conflicts():
    bad({"qpid.paging": 1, "qpid.last_value_queue_key": "k"}, "qpid.paging.*last-value")
    bad({"qpid.paging": 1, "qpid.priorities": 2}, "qpid.paging.*priorities")
    bad({"qpid.paging": 1, "qpid.group_header_key": "g", "qpid.shared_msg_group": 1}, "qpid.paging.*groups")


def test_paging_options_without_paging():
    bad({"qpid.max_pages_loaded": 8}, "qpid.max_pages_loaded")
    bad({"qpid.page_factor": 2}, "qpid.page_factor")


def test_paging_zero_values():
    bad({"qpid.paging": 1, "qpid.page_factor": 0}, "qpid.page_factor")
    bad({"qpid.paging": 1, "qpid.max_pages_loaded": 0}, "qpid.max_pages_loaded")


# -- misc arguments ---------------------------------------------------------------------------
def test_string_arguments():
    s = q({"qpid.queue_msg_sequence": "seq", "qpid.filter": "a = 1", "qpid.trace.id": "b1",
           "qpid.trace.exclude": "b2,b3", "no-local": True, "qpid.browse-only": 1})
    assert s.queue_msg_sequence == "seq" and s.filter == "a = 1"
    assert s.trace_id == "b1" and s.trace_exclude == "b2,b3" and s.no_local and s.browse_only


def test_alerts_and_aliases():
    s = q({"qpid.alert_count": 10, "qpid.alert_size": 100, "qpid.alert_count_down": 2,
           "qpid.alert_size_down": 20, "qpid.alert_repeat_gap": 5})
    assert (s.alert_count, s.alert_size, s.alert_count_down, s.alert_size_down, s.alert_repeat_gap) == \
        (10, 100, 2, 20, 5)
    s = q({"x-qpid-maximum-message-count": 3, "x-qpid-maximum-message-size": 30,
           "x-qpid-minimum-alert-repeat-gap": 9})
    assert (s.alert_count, s.alert_size, s.alert_repeat_gap) == (3, 30, 9)
    # precedence: _up, then the qpid. name, then the x- alias, whatever the order
    s = q({"x-qpid-maximum-message-count": 3, "qpid.alert_count_up": 7, "qpid.alert_count": 5})
    assert s.alert_count == 7
    s = q({"qpid.alert_size": 5, "x-qpid-maximum-message-size": 3})
    assert s.alert_size == 5
    # an explicit alert threshold is not replaced by the default ratio
    assert q({"qpid.max_count": 100, "qpid.alert_count": 0}).alert_count == 0
    assert q({"qpid.max_count": 100}).alert_count == 80


def test_store_arguments():
    s = q({"qpid.file_count": "16", "qpid.file_size": 48, "qpid.efp_partition_num": 1,
           "qpid.efp_pool_file_size": 2048})
    assert (s.file_count, s.file_size, s.efp_partition_num, s.efp_pool_file_size) == (16, 48, 1, 2048)
    bad({"qpid.file_count": 0}, "qpid.file_count")
    bad({"qpid.file_size": 0}, "qpid.file_size")


def test_replicate():
    for level in ("none", "configuration", "all"):
        assert q({"qpid.replicate": level}).replicate == level
    bad({"qpid.replicate": "some"}, "qpid.replicate")


# -- coercion errors --------------------------------------------------------------------------
@pytest.mark.parametrize("value", ["ten", "1.5", -1, "-3", [1], None, 2.5, 1 << 64])
def test_bad_uint(value):
    bad({"qpid.max_count": value}, "qpid.max_count")


def test_uint_accepts_integral_floats():
    assert q({"qpid.max_count": 5.0}).max_count == 5
    assert q({"qpid.max_count": "7.0"}).max_count == 7


@pytest.mark.parametrize("value", ["maybe", 2.5, [True], None])
def test_bad_bool(value):
    bad({"qpid.browse-only": value}, "qpid.browse-only")


@pytest.mark.parametrize("key", ["durable", "auto-delete", "exclusive", "qpid.paging",
                                 "qpid.shared_msg_group", "no-local"])
def test_bad_bool_names_argument(key):
    bad({key: "perhaps"}, key)


def test_bad_string():
    bad({"qpid.group_header_key": [1]}, "qpid.group_header_key")
    bad({"alternate-exchange": {"a": 1}}, "alternate-exchange")


def test_non_string_key():
    with pytest.raises(SettingsError):
        q({1: 2})


def test_settings_error_is_value_error_and_amqp_error():
    e = bad({"qpid.max_count": "x"}, "qpid.max_count")
    assert isinstance(e, ValueError) and isinstance(e, errors.AmqpError)
    assert e.condition == "amqp:invalid-field"
    assert "qpid.max_count" in e.description


# -- exchanges --------------------------------------------------------------------------------
def test_exchange_defaults():
    e = ExchangeSettings.from_properties({})
    assert e.type == "topic" and e.exchange_type == "topic"
    assert not e.durable and not e.auto_delete and e.alternate_exchange is None
    assert not e.sequence and not e.ive and e.arguments == {} and e.replicate == "none"


def test_exchange_properties():
    e = ExchangeSettings.from_properties({
        "exchange-type": "headers", "durable": "1", "auto-delete": False, "alternate-exchange": "alt",
        "qpid.msg_sequence": 1, "qpid.ive": "true", "qpid.replicate": "all", "x-extra": 5,
        "supported-dist-modes": "copy",
    })
    assert e.type == "headers" and e.durable and not e.auto_delete and e.alternate_exchange == "alt"
    assert e.sequence and e.ive and e.replicate == "all"
    assert e.arguments == {"qpid.msg_sequence": 1, "qpid.ive": "true", "qpid.replicate": "all", "x-extra": 5}
    assert e.other == {"x-extra": 5}
    assert e.as_arguments() == e.arguments


def test_exchange_arguments_feed_make_exchange():
    from cypid.broker.exchanges import make_exchange

    e = ExchangeSettings.from_properties({"exchange-type": "fanout", "qpid.msg_sequence": "1"})
    ex = make_exchange("x", e.type, e.durable, e.auto_delete, e.alternate_exchange, e.arguments)
    assert ex.type == "fanout" and ex.sequence and not ex.ive


def test_exchange_lifetime():
    e = ExchangeSettings.from_properties({"lifetime-policy": D(0x2C, [])})
    assert e.auto_delete and e.lifetime_policy == "delete-if-unused"
    e = ExchangeSettings.from_properties({"qpid.lifetime-policy": "manual", "durable": True})
    assert not e.auto_delete and e.arguments == {"qpid.lifetime-policy": "manual"}


def test_exchange_errors():
    with pytest.raises(SettingsError, match="exchange-type.*'xml'"):
        ExchangeSettings.from_properties({"exchange-type": "xml"})
    with pytest.raises(SettingsError, match="durable"):
        ExchangeSettings.from_properties({"durable": "sometimes"})
    with pytest.raises(SettingsError, match="qpid.msg_sequence"):
        ExchangeSettings.from_properties({"qpid.msg_sequence": "often"})
    with pytest.raises(SettingsError, match="qpid.replicate"):
        ExchangeSettings.from_properties({"qpid.replicate": "x"})
    with pytest.raises(SettingsError, match="lifetime-policy"):
        ExchangeSettings.from_properties({"lifetime-policy": D(1, [])})


def test_exchange_replicate_default_from_broker():
    assert ExchangeSettings.from_properties({}, {"ha_replicate": "all"}).replicate == "all"
