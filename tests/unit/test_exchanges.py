"""Exchanges, bindings and the registry (cypid.broker.exchanges)."""

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cypid.broker import errors
from cypid.broker.exchanges import (
    BUILTIN_EXCHANGES,
    DefaultExchange,
    ExchangeRegistry,
    make_exchange,
    normalize_topic,
    topic_match,
)


class Q:
    """A stand-in queue: hashable, with a name."""

    def __init__(self, name):
        self.name = name

    def __repr__(self):
        return f"Q({self.name})"


class Msg:
    def __init__(self, props=None, size=10):
        self._props = props
        self.size = size

    def application_properties(self):
        return {} if self._props is None else self._props


def names(queues):
    return [q.name for q in queues]


# -- construction -----------------------------------------------------------------------------
def test_make_exchange_types_and_attributes():
    for t in ("direct", "topic", "fanout", "headers"):
        ex = make_exchange("x", t, durable=True, auto_delete=True, alternate="alt", arguments={"a": 1})
        assert ex.type == t and ex.name == "x"
        assert ex.durable and ex.auto_delete and ex.alternate == "alt"
        assert ex.arguments == {"a": 1}
        assert ex.bindings == [] and ex.bindingCount == 0
        assert not ex.sequence and not ex.ive


def test_unknown_type_is_value_error_naming_it():
    with pytest.raises(ValueError, match="xml"):
        make_exchange("x", "xml")
    with pytest.raises(errors.AmqpError):
        make_exchange("x", "bogus")


@pytest.mark.parametrize("value,expected", [(1, True), ("1", True), (True, True), ("true", True),
                                            (0, False), ("0", False), ("false", False), (False, False)])
def test_sequence_and_ive_flags(value, expected):
    ex = make_exchange("x", "topic", arguments={"qpid.msg_sequence": value, "qpid.ive": value})
    assert ex.sequence is expected and ex.ive is expected


def test_arguments_are_copied():
    args = {"k": "v"}
    ex = make_exchange("x", "direct", arguments=args)
    args["k"] = "changed"
    assert ex.arguments == {"k": "v"}


# -- direct -----------------------------------------------------------------------------------
def test_direct_routing():
    ex = make_exchange("d", "direct")
    a, b, c = Q("a"), Q("b"), Q("c")
    assert ex.bind(a, "k1", None)
    assert ex.bind(b, "k1", {})
    assert ex.bind(c, "k2", {})
    assert names(ex.route("k1", Msg())) == ["a", "b"]
    assert names(ex.route("k2", Msg())) == ["c"]
    assert ex.route("nope", Msg()) == ()
    assert ex.route("", Msg()) == ()
    assert ex.bindingCount == 3


def test_direct_empty_key():
    ex = make_exchange("d", "direct")
    a = Q("a")
    ex.bind(a, "", {})
    assert names(ex.route("", None)) == ["a"]
    assert ex.route("x", None) == ()


def test_bind_twice_returns_false():
    for t in ("direct", "topic", "fanout", "headers"):
        ex = make_exchange("e", t)
        a = Q("a")
        assert ex.bind(a, "k", {"x-match": "any", "h": 1}) is True
        assert ex.bind(a, "k", {"x-match": "any", "h": 1}) is False
        assert ex.bindingCount == 1
        assert len(ex.bindings) == 1


def test_unbind():
    for t in ("direct", "topic", "fanout", "headers"):
        ex = make_exchange("e", t)
        a, b = Q("a"), Q("b")
        ex.bind(a, "k", {})
        ex.bind(b, "k", {})
        assert ex.unbind(a, "k") is True
        assert ex.unbind(a, "k") is False
        assert ex.unbind(Q("zz"), "k") is False
        assert names(ex.route("k", Msg())) == ["b"], t
        assert ex.bindingCount == 1
        assert ex.unbind(b, "k")
        assert ex.route("k", Msg()) == ()
        assert ex.bindingCount == 0 and ex.bindings == []


def test_unbind_queue_removes_all_its_bindings():
    ex = make_exchange("d", "direct")
    a, b = Q("a"), Q("b")
    for k in ("x", "y", "z"):
        ex.bind(a, k, {})
    ex.bind(b, "x", {})
    assert ex.unbind_queue(a) == 3
    assert ex.unbind_queue(a) == 0
    assert [(q.name, k) for q, k, _ in ex.bindings] == [("b", "x")]
    assert names(ex.route("x", Msg())) == ["b"]
    assert ex.route("y", Msg()) == ()
    assert ex.bindingCount == 1


def test_bindings_list_in_binding_order_with_arguments():
    ex = make_exchange("d", "direct")
    a, b = Q("a"), Q("b")
    ex.bind(b, "k2", {"p": 1})
    ex.bind(a, "k1", None)
    assert ex.bindings == [(b, "k2", {"p": 1}), (a, "k1", {})]
    assert ex.is_bound(a) and ex.is_bound(a, "k1") and not ex.is_bound(a, "k2")
    assert ex.bound_queues() == [b, a]


def test_exclusive_binding_replaces_other_queue():
    ex = make_exchange("d", "direct")
    a, b, c = Q("a"), Q("b"), Q("c")
    ex.bind(a, "k", {})
    ex.bind(b, "k", {})
    ex.bind(a, "other", {})
    assert ex.bind(c, "k", {"qpid.exclusive-binding": True})
    assert names(ex.route("k", Msg())) == ["c"]
    assert names(ex.route("other", Msg())) == ["a"]  # other keys untouched
    assert ex.bindingCount == 2
    # rebinding the same queue exclusively keeps it
    assert ex.bind(c, "k", {"qpid.exclusive-binding": "1"}) is False
    assert names(ex.route("k", Msg())) == ["c"]
    # a later non-exclusive binding is simply added
    assert ex.bind(a, "k", {})
    assert names(ex.route("k", Msg())) == ["c", "a"]
    # exclusive by an already-bound queue still removes the others
    assert ex.bind(a, "k", {"qpid.exclusive-binding": 1}) is False
    assert names(ex.route("k", Msg())) == ["a"]


def test_exclusive_binding_false_value_is_not_exclusive():
    ex = make_exchange("d", "direct")
    a, b = Q("a"), Q("b")
    ex.bind(a, "k", {})
    ex.bind(b, "k", {"qpid.exclusive-binding": "false"})
    assert names(ex.route("k", Msg())) == ["a", "b"]


def test_route_result_is_immutable_and_cached():
    ex = make_exchange("d", "direct")
    ex.bind(Q("a"), "k", {})
    r = ex.route("k", None)
    assert isinstance(r, tuple)
    assert ex.route("k", None) is r


# -- counters ---------------------------------------------------------------------------------
def test_counters():
    ex = make_exchange("d", "direct")
    a, b = Q("a"), Q("b")
    ex.bind(a, "k", {})
    ex.bind(b, "k", {})
    ex.route("k", Msg(size=100))
    ex.route("none", Msg(size=7))
    ex.route("k", None, size=5)
    assert ex.msgReceives == 3
    assert ex.byteReceives == 112
    assert ex.msgRoutes == 4  # per queue, as qpidd
    assert ex.byteRoutes == 210
    assert ex.msgDrops == 1 and ex.byteDrops == 7
    assert ex.bindingCount == 2


def test_counters_all_types():
    for t, key in (("topic", "a.b"), ("fanout", "x"), ("headers", "")):
        ex = make_exchange("e", t)
        ex.bind(Q("q"), "a.b" if t == "topic" else "", {})
        ex.route(key, Msg(size=3))
        assert (ex.msgReceives, ex.msgRoutes, ex.msgDrops, ex.byteRoutes) == (1, 1, 0, 3), t
        ex.unbind_queue(Q("other"))
        ex2 = make_exchange("e2", t)
        ex2.route(key, Msg(size=3))
        assert (ex2.msgReceives, ex2.msgDrops, ex2.byteDrops) == (1, 1, 3)


# -- fanout -----------------------------------------------------------------------------------
def test_fanout_all_queues_once():
    ex = make_exchange("f", "fanout")
    a, b = Q("a"), Q("b")
    ex.bind(a, "", {})
    ex.bind(b, "x", {})
    ex.bind(a, "y", {})  # second binding of a: a still once
    assert names(ex.route("anything", Msg())) == ["a", "b"]
    assert ex.bindingCount == 3
    ex.unbind(a, "")
    assert names(ex.route("", Msg())) == ["a", "b"]
    ex.unbind(a, "y")
    assert names(ex.route("", Msg())) == ["b"]


# -- topic ------------------------------------------------------------------------------------
TOPIC_CASES = [
    # pattern, key, matches
    ("#", "", True),
    ("#", "a", True),
    ("#", "a.b.c", True),
    ("*", "", True),  # "" is one empty word (qpidd)
    ("*", "a", True),
    ("*", "a.b", False),
    ("", "", True),
    ("", "a", False),
    ("a", "a", True),
    ("a", "a.b", False),
    ("a.#", "a", True),
    ("a.#", "a.b", True),
    ("a.#", "a.b.c", True),
    ("a.#", "b.a", False),
    ("a.#", "ab", False),
    ("#.b", "b", True),
    ("#.b", "a.b", True),
    ("#.b", "x.y.b", True),
    ("#.b", "b.a", False),
    ("a.*.c", "a.b.c", True),
    ("a.*.c", "a.c", False),
    ("a.*.c", "a.b.b.c", False),
    ("a.*.c", "a..c", True),
    ("a.#.c", "a.c", True),  # zero words
    ("a.#.c", "a.b.c", True),
    ("a.#.c", "a.b.x.c", True),
    ("a.#.c", "a.b.x.d", False),
    ("a.#.c", "a.c.c", True),
    ("#.a.#", "a", True),
    ("#.a.#", "x.a.y", True),
    ("#.a.#", "x.y", False),
    ("*.#", "", True),
    ("*.#", "a.b", True),
    ("#.*", "", True),
    ("*.*", "a", False),
    ("*.*", "a.b", True),
    ("#.#", "", True),
    ("a.#.#.b", "a.b", True),
    ("a.b", "a.b.", False),
    ("a.b.", "a.b.", True),
]


@pytest.mark.parametrize("pattern,key,expected", TOPIC_CASES)
def test_topic_cases(pattern, key, expected):
    ex = make_exchange("t", "topic")
    q = Q("q")
    ex.bind(q, pattern, {})
    assert (ex.route(key, Msg()) == (q,)) is expected
    assert topic_match(pattern, key) is expected
    assert reference_match(pattern, key) is expected and regex_match(pattern, key) is expected


def test_topic_each_queue_once_in_binding_order():
    ex = make_exchange("t", "topic")
    a, b, c = Q("a"), Q("b"), Q("c")
    ex.bind(b, "x.#", {})
    ex.bind(a, "#", {})
    ex.bind(b, "x.y", {})
    ex.bind(c, "*.y", {})
    ex.bind(a, "x.*", {})
    assert names(ex.route("x.y", Msg())) == ["b", "a", "c"]
    assert names(ex.route("z.y", Msg())) == ["a", "c"]
    assert names(ex.route("z", Msg())) == ["a"]


def test_topic_cache_invalidated_on_bind_and_unbind():
    ex = make_exchange("t", "topic")
    a, b = Q("a"), Q("b")
    ex.bind(a, "x.*", {})
    assert names(ex.route("x.y", Msg())) == ["a"]
    ex.bind(b, "#.y", {})
    assert names(ex.route("x.y", Msg())) == ["a", "b"]
    ex.unbind(a, "x.*")
    assert names(ex.route("x.y", Msg())) == ["b"]
    ex.unbind_queue(b)
    assert ex.route("x.y", Msg()) == ()


def test_topic_unbind_prunes_and_keeps_shared_prefixes():
    ex = make_exchange("t", "topic")
    a, b = Q("a"), Q("b")
    ex.bind(a, "x.y.z", {})
    ex.bind(b, "x.y", {})
    ex.bind(a, "x.#", {})
    ex.unbind(a, "x.y.z")
    assert names(ex.route("x.y", Msg())) == ["b", "a"]
    assert names(ex.route("x.y.z", Msg())) == ["a"]
    ex.unbind(a, "x.#")
    ex.unbind(b, "x.y")
    assert ex._root.empty()


def test_topic_unbind_unknown_pattern_is_false():
    ex = make_exchange("t", "topic")
    ex.bind(Q("a"), "x.y", {})
    assert ex.unbind(Q("a"), "x.z") is False
    assert ex.unbind(Q("a"), "x.y.z") is False
    assert ex.bindingCount == 1


def test_topic_normalisation_identifies_equivalent_patterns():
    assert normalize_topic("#.#") == "#"
    assert normalize_topic("a.#.*.#.b") == "a.*.#.b"
    assert normalize_topic("a.b") == "a.b"
    ex = make_exchange("t", "topic")
    q = Q("q")
    assert ex.bind(q, "a.#.#", {})
    assert ex.bind(q, "a.#", {}) is False
    assert ex.unbind(q, "a.#.#.#")
    assert ex.bindingCount == 0


def test_topic_cache_is_bounded(monkeypatch):
    from cypid.broker import exchanges

    monkeypatch.setattr(exchanges, "TOPIC_CACHE_LIMIT", 4)
    ex = make_exchange("t", "topic")
    q = Q("q")
    ex.bind(q, "#", {})
    for i in range(20):
        assert ex.route(f"k{i}", None) == (q,)
    assert len(ex._cache) <= 4


# reference matcher: regex built from the pattern's words, the obvious way
def reference_match(pattern, key):
    pw = pattern.split(".")
    kw = key.split(".")

    def rec(i, j):
        if i == len(pw):
            return j == len(kw)
        if pw[i] == "#":
            return any(rec(i + 1, k) for k in range(j, len(kw) + 1))
        if j == len(kw):
            return False
        return (pw[i] == "*" or pw[i] == kw[j]) and rec(i + 1, j + 1)

    return rec(0, 0)


def regex_match(pattern, key):
    # every word is preceded by a dot: '*' = one dot-word, '#' = any number of dot-words
    rx = "".join(
        r"(?:\.[^.]*)*" if w == "#" else r"\.[^.]*" if w == "*" else r"\." + re.escape(w)
        for w in pattern.split(".")
    )
    return re.fullmatch(rx, "." + key) is not None


def bound_and_routed_as_reference(patterns, keys, reference):
    """A topic exchange with queue i bound by patterns[i] (lists of words); every key must route to
    the queues whose pattern the ``reference`` matcher says it matches, in binding order."""
    ex = make_exchange("t", "topic")
    queues = [Q(f"q{i}") for i in range(len(patterns))]
    for q, p in zip(queues, patterns):
        ex.bind(q, ".".join(p), {})
    for k in keys:
        key = ".".join(k)
        expected = [q for q, p in zip(queues, patterns) if reference(".".join(p), key)]
        assert list(ex.route(key, None)) == expected, (patterns, key)
    return ex


WORDS = st.sampled_from(["a", "b", "c", ""])
PWORDS = st.sampled_from(["a", "b", "c", "", "*", "#"])


@settings(max_examples=400, deadline=None)
@given(st.lists(st.lists(PWORDS, min_size=1, max_size=5), min_size=1, max_size=6),
       st.lists(st.lists(WORDS, min_size=1, max_size=6), min_size=1, max_size=8))
def test_topic_matcher_against_reference(patterns, keys):
    ex = bound_and_routed_as_reference(patterns, keys, reference_match)
    for k in keys:
        key = ".".join(k)
        assert list(ex.route(key, None)) == list(ex._match(key))  # cached
        for p in patterns:
            pattern = ".".join(p)
            assert topic_match(pattern, key) == reference_match(pattern, key) == regex_match(pattern, key)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.lists(PWORDS, min_size=1, max_size=4), st.booleans()),
                max_size=30),
       st.lists(st.lists(WORDS, min_size=1, max_size=5), min_size=1, max_size=5))
def test_topic_bind_unbind_sequence_against_model(ops, keys):
    ex = make_exchange("t", "topic")
    queues = [Q(f"q{i}") for i in range(4)]
    model = {}  # (qi, normalized pattern) -> None, binding order
    for qi, words, is_bind in ops:
        pattern = ".".join(words)
        norm = normalize_topic(pattern)
        if is_bind:
            assert ex.bind(queues[qi], pattern, {}) == ((qi, norm) not in model)
            model.setdefault((qi, norm), None)
        else:
            assert ex.unbind(queues[qi], pattern) == ((qi, norm) in model)
            model.pop((qi, norm), None)
        for k in keys:
            key = ".".join(k)
            expected = list(dict.fromkeys(queues[qi] for qi, p in model if reference_match(p, key)))
            assert list(ex.route(key, None)) == expected
    assert ex.bindingCount == len(model)


# longer random patterns: runs of '#' and '*', empty words, more words than the keys
LONG_PWORDS = st.sampled_from(["a", "b", "", "*", "#", "#", "a"])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(LONG_PWORDS, min_size=1, max_size=9), min_size=1, max_size=8),
       st.lists(st.lists(st.sampled_from(["a", "b", ""]), min_size=1, max_size=12), min_size=1, max_size=6))
def test_topic_automaton_against_reference_on_longer_patterns(patterns, keys):
    bound_and_routed_as_reference(patterns, keys, regex_match)


def _lines_run(func, *args):
    """How many lines of Python ``func`` (and what it calls) executes: a measure of work that does
    not depend on the machine's speed."""
    import sys

    count = 0

    def tracer(frame, event, arg):
        nonlocal count
        if event == "line":
            count += 1
        return tracer

    sys.settrace(tracer)
    try:
        func(*args)
    finally:
        sys.settrace(None)
    return count


@pytest.mark.parametrize("pattern,word", [("#.error.#", "error"), ("#.a.#.a.#", "a"), ("#.a.#.a.#", "b"),
                                          ("*.#.*.a", "a")])
def test_topic_matching_work_is_linear_in_the_key_words(pattern, word):
    # Doubling a key's words at most doubles the matcher's work (quadratic before: x4).
    ex = make_exchange("t", "topic")
    ex.bind(Q("q"), pattern, {})
    ex.bind(Q("r"), "x.#", {})
    short = _lines_run(ex._match, ".".join([word] * 300))
    long = _lines_run(ex._match, ".".join([word] * 600))
    assert long <= 2.1 * short, (short, long)


def test_topic_routing_key_over_the_limit_is_refused_naming_it():
    from cypid.broker.exchanges import TOPIC_KEY_LIMIT

    assert TOPIC_KEY_LIMIT == 255
    ex = make_exchange("t", "topic")
    q = Q("q")
    ex.bind(q, "#", {})
    assert ex.route("a" * 255, Msg()) == (q,)
    assert ex.route("\u00e9" * 127, Msg()) == (q,)     # 254 bytes of UTF-8
    for key in ("a" * 256, "\u00e9" * 128, ".".join(["a"] * 4000)):
        with pytest.raises(errors.InvalidField) as info:
            ex.route(key, Msg())
        assert info.value.condition == "amqp:invalid-field"
        assert "exceeds the limit of 255 bytes" in info.value.description
    assert ex.msgReceives == 2     # a refused message is not counted as received


def test_topic_binding_key_over_the_limit_is_refused_naming_it():
    ex = make_exchange("t", "topic")
    with pytest.raises(errors.InvalidArgument) as info:
        ex.bind(Q("q"), ".".join(["#.a"] * 100), {})
    assert "topic binding key of 399 bytes exceeds the limit of 255 bytes" in info.value.description
    assert ex.bindingCount == 0 and ex._root.empty()
    assert ex.bind(Q("q"), "a" * 255, {})


# -- headers ----------------------------------------------------------------------------------
def hdr_route(bind_args, props):
    ex = make_exchange("h", "headers")
    q = Q("q")
    ex.bind(q, "k", bind_args)
    return ex.route("ignored", Msg(props)) == (q,)


def test_headers_all_with_values():
    args = {"x-match": "all", "a": 1, "b": "two"}
    assert hdr_route(args, {"a": 1, "b": "two"})
    assert hdr_route(args, {"a": 1, "b": "two", "c": 3})
    assert not hdr_route(args, {"a": 1})
    assert not hdr_route(args, {"a": 2, "b": "two"})
    assert not hdr_route(args, {})


def test_headers_default_is_all():
    assert hdr_route({"a": 1, "b": 2}, {"a": 1, "b": 2})
    assert not hdr_route({"a": 1, "b": 2}, {"a": 1})


def test_headers_any_with_values():
    args = {"x-match": "any", "a": 1, "b": "two"}
    assert hdr_route(args, {"a": 1})
    assert hdr_route(args, {"b": "two", "a": 99})
    assert not hdr_route(args, {"a": 2, "b": "three"})
    assert not hdr_route(args, {})


def test_headers_presence_only_with_none_value():
    assert hdr_route({"x-match": "all", "a": None}, {"a": "anything"})
    assert hdr_route({"x-match": "all", "a": None}, {"a": None})
    assert not hdr_route({"x-match": "all", "a": None}, {"b": 1})
    assert hdr_route({"x-match": "any", "a": None, "b": 5}, {"a": 0})
    assert hdr_route({"x-match": "all", "a": None, "b": 5}, {"a": 0, "b": 5})
    assert not hdr_route({"x-match": "all", "a": None, "b": 5}, {"a": 0, "b": 6})


def test_headers_empty_string_is_a_value():
    assert hdr_route({"a": ""}, {"a": ""})
    assert not hdr_route({"a": ""}, {"a": "x"})


def test_headers_x_keys_ignored():
    assert hdr_route({"x-match": "all", "x-other": "zz", "a": 1}, {"a": 1})
    assert not hdr_route({"x-match": "any", "x-other": "zz"}, {"x-other": "zz"})
    # all with no keys to match: everything matches; any with none: nothing
    assert hdr_route({"x-match": "all"}, {})
    assert not hdr_route({"x-match": "any"}, {"q": 1})


def test_headers_string_binding_values_match_scalar_properties():
    # qpid-config sends binding values as strings
    assert hdr_route({"n": "5"}, {"n": 5})
    assert hdr_route({"flag": "true"}, {"flag": True})
    assert not hdr_route({"flag": "True"}, {"flag": True})
    assert hdr_route({"n": 5}, {"n": "5"})
    assert not hdr_route({"n": "5"}, {"n": 6})


def test_headers_booleans_are_not_numbers():
    assert not hdr_route({"a": 1}, {"a": True})
    assert not hdr_route({"a": True}, {"a": 1})
    assert hdr_route({"a": True}, {"a": True})
    assert not hdr_route({"a": False}, {"a": True})


def test_headers_bad_x_match_rejected_before_binding():
    ex = make_exchange("h", "headers")
    with pytest.raises(ValueError, match="x-match"):
        ex.bind(Q("q"), "k", {"x-match": "some"})
    with pytest.raises(errors.AmqpError):
        ex.bind(Q("q"), "k", {"x-match": 3})
    assert ex.bindingCount == 0 and ex.bindings == []
    assert ex.bind(Q("q"), "k", {"x-match": "ANY", "a": 1})  # case-insensitive


def test_headers_each_queue_once_in_binding_order():
    ex = make_exchange("h", "headers")
    a, b = Q("a"), Q("b")
    ex.bind(b, "k1", {"x-match": "any", "p": 1})
    ex.bind(a, "k1", {"x-match": "any", "p": 1})
    ex.bind(b, "k2", {"x-match": "any", "p": 1})
    assert names(ex.route("", Msg({"p": 1}))) == ["b", "a"]
    assert ex.route("", Msg({"p": 2})) == ()
    assert ex.route("", None) == ()
    ex.unbind(b, "k1")
    assert names(ex.route("", Msg({"p": 1}))) == ["a", "b"]


def test_headers_message_without_properties():
    ex = make_exchange("h", "headers")
    q = Q("q")
    ex.bind(q, "", {"x-match": "all"})
    assert ex.route("", Msg(None)) == (q,)


# -- default exchange and registry ------------------------------------------------------------
def make_registry(queues=None, **kw):
    queues = {} if queues is None else queues
    return ExchangeRegistry(queues.get, queues.values, **kw), queues


def test_registry_builtins():
    reg, _ = make_registry()
    expected = {
        "": "direct",
        "amq.direct": "direct",
        "amq.topic": "topic",
        "amq.fanout": "fanout",
        "amq.match": "headers",
        "qmf.default.direct": "direct",
        "qmf.default.topic": "topic",
        "qpid.management": "topic",
    }
    assert {ex.name: ex.type for ex in reg} == expected
    assert dict(BUILTIN_EXCHANGES) == expected
    assert len(reg) == 8 and "amq.topic" in reg and reg.names()[0] == ""
    assert isinstance(reg.default, DefaultExchange) and reg.get("") is reg.default
    for name in expected:
        assert ExchangeRegistry.is_builtin(name)
        assert not reg.get(name).durable


def test_builtins_durable_with_store():
    reg, _ = make_registry(store_enabled=True)
    assert reg.get("amq.direct").durable and reg.get("").durable
    assert not reg.get("qpid.management").durable


def test_default_exchange_routes_by_queue_name():
    reg, queues = make_registry()
    a = Q("a")
    queues["a"] = a
    d = reg.default
    assert d.route("a", Msg(size=4)) == (a,)
    assert d.route("b", Msg(size=4)) == ()
    assert (d.msgReceives, d.msgRoutes, d.msgDrops, d.byteRoutes, d.byteDrops) == (2, 1, 1, 4, 4)
    assert d.bindings == [(a, "a", {})]
    assert d.bindingCount == 1
    assert d.is_bound(a) and d.is_bound(a, "a") and not d.is_bound(Q("a"))
    with pytest.raises(errors.NotAllowed):
        d.bind(a, "x", {})
    with pytest.raises(errors.NotAllowed):
        d.unbind(a, "a")
    assert d.unbind_queue(a) == 0


def test_default_exchange_without_lookup():
    d = DefaultExchange()
    assert d.route("x", None) == () and d.bindings == [] and d.bindingCount == 0


def test_declare_create_and_existing():
    reg, _ = make_registry()
    ex, created = reg.declare("e", "topic", durable=True, alternate="amq.fanout",
                              arguments={"qpid.msg_sequence": 1})
    assert created and ex.type == "topic" and ex.durable and ex.alternate == "amq.fanout"
    assert ex.sequence
    ex2, created2 = reg.declare("e", "topic")
    assert ex2 is ex and not created2
    ex3, created3 = reg.declare("amq.direct", "direct")
    assert not created3 and ex3.name == "amq.direct"
    assert reg.get("e") is ex and reg.find("e") is ex and reg["e"] is ex


def test_declare_different_type_refused():
    reg, _ = make_registry()
    reg.declare("e", "topic")
    with pytest.raises(errors.PreconditionFailed) as info:
        reg.declare("e", "direct")
    assert info.value.condition == "amqp:precondition-failed"
    assert "different type" in info.value.description
    with pytest.raises(errors.PreconditionFailed):
        reg.declare("amq.topic", "fanout")
    assert reg.get("e").type == "topic"


def test_declare_unknown_type():
    reg, _ = make_registry()
    with pytest.raises(ValueError, match="bogus"):
        reg.declare("e", "bogus")
    assert reg.get("e") is None


def test_delete():
    reg, _ = make_registry()
    ex, _ = reg.declare("e", "fanout")
    assert reg.delete("e") is ex
    assert reg.get("e") is None and "e" not in reg
    with pytest.raises(errors.NotFound):
        reg.delete("e")
    with pytest.raises(errors.NotFound) as info:
        reg.find("e")
    assert info.value.condition == "amqp:not-found"
    for name, _ in BUILTIN_EXCHANGES:
        with pytest.raises(errors.NotAllowed):
            reg.delete(name)
        assert name in reg


def test_registry_unbind_queue_everywhere():
    reg, _ = make_registry()
    q = Q("q")
    reg.get("amq.direct").bind(q, "k", {})
    reg.get("amq.topic").bind(q, "#", {})
    reg.get("amq.match").bind(q, "", {})
    reg.unbind_queue(q)
    assert all(ex.bindingCount == 0 for ex in reg if ex.name)


def test_add_recovered_exchange():
    reg, _ = make_registry()
    ex = make_exchange("r", "direct", durable=True)
    assert reg.add(ex) is ex and reg.get("r") is ex
    with pytest.raises(errors.PreconditionFailed):
        reg.add(make_exchange("r", "direct"))


def test_two_registries_are_independent():
    q1, q2 = {"a": Q("a1")}, {"a": Q("a2")}
    r1 = ExchangeRegistry(q1.get, q1.values)
    r2 = ExchangeRegistry(q2.get, q2.values)
    r1.declare("only1", "direct")
    assert r2.get("only1") is None
    assert r1.get("amq.direct") is not r2.get("amq.direct")
    r1.get("amq.direct").bind(Q("x"), "k", {})
    assert r2.get("amq.direct").bindingCount == 0
    assert names(r1.default.route("a", None)) == ["a1"]
    assert names(r2.default.route("a", None)) == ["a2"]
    r1.get("amq.topic").route("z", None)
    assert r2.get("amq.topic").msgReceives == 0
