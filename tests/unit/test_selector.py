"""cypid.pyx.selector: the grammar (valid and invalid selectors with the positions of their errors),
the values of header fields and properties, SQL's three-valued logic, reading only the properties
named, and a queue's filtered consumers (non-matching messages stay for the others)."""
import pytest
from proton import Message as ProtonMessage
from proton import symbol, timestamp, ulong

from cypid.broker.settings import QueueSettings
from cypid.pyx.codec import encode
from cypid.pyx.message import Message
from cypid.pyx.queue import Queue
from cypid.pyx.selector import Selector, SelectorError
from tests.support.queue_fakes import LABELS, FakeConsumer


def message(**kw):
    return Message(ProtonMessage(**kw).encode())


# -- grammar ---------------------------------------------------------------------------------------
VALID = [
    "",
    "   ",
    "a = 1",
    "a <> 'x'",
    "a < 1 AND b > 2 OR c <= 3 AND d >= 4",
    "NOT a = 1",
    "not not a = 1",
    "(a = 1 OR b = 2) AND NOT (c = 3)",
    "a + b * c - d / e = -f",
    "- - 5 = 5",
    "+a = 1",
    "a IS NULL",
    "a IS NOT NULL",
    "a LIKE 'x%'",
    "a NOT LIKE 'x\\_%' ESCAPE '\\'",
    "a like 'x' escape '!'",
    "a BETWEEN 1 AND 2",
    "a NOT BETWEEN b - 1 AND b + 1",
    "a IN ('x', 'y', 'z')",
    "a NOT IN (1, 2.5, 'c')",
    "a = TRUE OR b = false",
    "flag",
    "TRUE",
    "\"quoted id\" = 1",
    "\"say \"\"hi\"\"\" = 'it''s'",
    "$a_b.c = 1",
    "0x1F = 31 AND 0b101 = 5 AND 017 = 15 AND 1_000 = 1000 AND 7L = 7",
    "1.5 > .5 AND 1e3 = 1000. AND 2.5E-3 < 1 AND 3f = 3d",
    "a = -9223372036854775808",
    "JMSPriority > 4 AND JMSType = 'x' AND amqp.delivery_count = 0",
]

INVALID = [
    # (selector, reason contains, position)
    ("a =", "expected an identifier or a literal, found the end", 3),
    ("a = = 1", "expected an identifier or a literal, found '='", 4),
    ("= 1", "expected an identifier or a literal, found '='", 0),
    ("a = 1 b", "unexpected identifier b after the expression", 6),
    ("a = 1 )", "unexpected ')' after the expression", 6),
    ("(a = 1", "expected ')', found the end", 6),
    ("a # 1", "illegal character '#'", 2),
    ("a = 'abc", "unterminated string", 4),
    ('"abc = 1', "unterminated quoted identifier", 0),
    ("a LIKE 5", "expected a string after LIKE, found number 5", 7),
    ("a LIKE 'x' ESCAPE 'ab'", "ESCAPE needs a single character", 18),
    ("a LIKE 'x' ESCAPE b", "expected a string after ESCAPE, found identifier b", 18),
    ("a IS 1", "expected NULL or NOT NULL after IS, found number 1", 5),
    ("a IS NOT 1", "expected NULL, found number 1", 9),
    ("a NOT 1", "expected LIKE, BETWEEN or IN after NOT, found number 1", 6),
    ("a BETWEEN 1 OR 2", "expected AND in BETWEEN, found OR", 12),
    ("a IN 1", "expected '(' after IN, found number 1", 5),
    ("a IN (1 2)", "expected ',' or ')' in the IN list, found number 2", 8),
    ("a IN ()", "expected an identifier or a literal, found ')'", 6),
    ("a = 9223372036854775808", "integer literal too big", 4),
    ("a = 99999999999999999999999", "integer literal too big", 4),
    ("a = 09", "invalid octal literal", 4),
    ("a = 1e999", "approximate literal out of range", 4),
    ("a AND", "expected an identifier or a literal, found the end", 5),
    ("NOT", "expected an identifier or a literal, found the end", 3),
    ("a = NULL", "expected an identifier or a literal, found NULL", 4),
    ("AND = 1", "expected an identifier or a literal, found AND", 0),
    ("(" * 150 + "a" + ")" * 150, "expression nested deeper than 100", 100),
    ("NOT " * 150 + "a", "expression nested deeper than 100", 400),
]


@pytest.mark.parametrize("text", VALID)
def test_valid_selectors_parse(text):
    assert Selector(text).text == text


@pytest.mark.parametrize("text,reason,position", INVALID)
def test_invalid_selectors_name_the_error_and_its_position(text, reason, position):
    with pytest.raises(SelectorError) as info:
        Selector(text)
    assert reason in info.value.reason
    assert info.value.position == position
    assert str(info.value).endswith("at position %d" % position)


def test_overlong_selector_refused():
    with pytest.raises(SelectorError, match="longer than"):
        Selector("a = 1 OR " * 10000 + "a = 1")


def test_names_are_the_application_properties_read():
    s = Selector("a = 1 AND (b > a OR JMSPriority = 3) AND amqp.subject = 'x' AND \"c d\" IS NULL")
    assert s.names == ("a", "b", "c d")


# -- values ----------------------------------------------------------------------------------------
def test_header_and_properties_fields():
    m = message(body="x", durable=True, priority=7, id="mid", correlation_id=ulong(99), subject="subj",
                address="dest", reply_to="back", creation_time=1700000000.5, expiry_time=1800000000.25,
                annotations={symbol("x-opt-jms-type"): "jt"})
    values = {
        "JMSDeliveryMode": "PERSISTENT", "amqp.durable": True, "JMSPriority": 7,
        "amqp.delivery_count": 0, "JMSRedelivered": False, "JMSType": "subj", "amqp.subject": "subj",
        "JMSMessageID": "mid", "JMSCorrelationID": "99", "JMSDestination": "dest", "JMSReplyTo": "back",
        "JMSTimestamp": 1700000000500, "JMSExpiration": 1800000000250, "amqp.jms_type": "jt",
        "JMSXGroupID": None, "amqp.nothing": None,
    }
    for name, want in values.items():
        assert Selector('"%s" IS NULL OR TRUE' % name).matches(m)
        got = Selector(name).evaluate(m)
        assert got == want and type(got) is type(want), (name, got)


def test_defaults_when_the_message_says_nothing():
    m = message(body="x")
    assert Selector("JMSDeliveryMode").evaluate(m) == "NON_PERSISTENT"
    assert Selector("JMSPriority").evaluate(m) == 4
    for name in ("JMSType", "JMSMessageID", "JMSCorrelationID", "JMSDestination", "JMSReplyTo"):
        assert Selector(name).evaluate(m) is None, name
    assert Selector("JMSTimestamp").evaluate(m) == 0
    assert Selector("JMSExpiration").evaluate(m) == 0


def test_property_types():
    m = message(body="x", properties={
        "s": "str", "sym": symbol("sym"), "i": 5, "neg": -3, "big": ulong(2 ** 64 - 1), "f": 1.5,
        "t": True, "bin": b"bytes", "ts": timestamp(1000), "lst": [1, 2], "none": None})
    assert Selector("s").evaluate(m) == "str"
    assert Selector("sym").evaluate(m) == "sym"
    assert Selector("i + neg").evaluate(m) == 2
    assert Selector("big").evaluate(m) == float(2 ** 64 - 1)
    assert Selector("f * 2").evaluate(m) == 3.0
    assert Selector("t").evaluate(m) is True
    for name in ("bin", "ts", "lst", "none", "absent"):
        assert Selector(name).evaluate(m) is None, name


# The three-valued logic: (selector, value) for a message with a=1, s='abc', t=TRUE, n absent.
LOGIC = [
    ("a = 1", True), ("a = 2", False), ("n = 1", None), ("NOT n = 1", None),
    ("n = 1 AND a = 2", False), ("n = 1 AND a = 1", None), ("n = 1 OR a = 1", True),
    ("n = 1 OR a = 2", None), ("NOT (n = 1 OR a = 2)", None),
    ("a = 'abc'", None), ("s = 1", None), ("t = 1", None), ("t = TRUE", True), ("t > FALSE", None),
    ("s < 'abd'", True), ("s >= 'abc'", True), ("s <> 'x'", True),
    ("a = 1.0", True), ("a < 1.5", True), ("a + 0.5 = 1.5", True), ("a / 0 = 1", None),
    ("a / 2 = 0", True), ("-7 / 2 = -3", True), ("7 / -2 = -3", True), ("1.0 / 0 = 1", None),
    ("9223372036854775807 + a = 0", None), ("-9223372036854775808 - a = 0", None),
    ("- s = 1", None), ("s + 1 = 1", None),
    ("n IS NULL", True), ("a IS NULL", False), ("n IS NOT NULL", False), ("n + 1 IS NULL", True),
    ("s LIKE 'a%'", True), ("s LIKE '_b_'", True), ("s LIKE 'ab'", False), ("s NOT LIKE 'ab'", True),
    ("a LIKE '1'", None), ("n LIKE '%'", None), ("n NOT LIKE '%'", None),
    ("s BETWEEN 'a' AND 'b'", True), ("a BETWEEN 2 AND 3", False), ("a NOT BETWEEN 2 AND 3", True),
    ("a BETWEEN n AND 3", None), ("a BETWEEN n AND 0", False), ("a NOT BETWEEN n AND 0", True),
    ("a IN (1, 2)", True), ("a IN (2, 3)", False), ("a IN (2, n)", None), ("a IN (n, 1)", True),
    ("a NOT IN (2, 3)", True), ("a NOT IN (2, n)", None), ("n IN (1)", None), ("a IN ('1')", None),
    ("t", True), ("a", 1), ("s", "abc"), ("n", None), ("", True),
    ("t AND a = 1", True), ("a AND t", None), ("a OR t", True),
]


@pytest.mark.parametrize("text,want", LOGIC)
def test_three_valued_logic(text, want):
    m = message(body="x", properties={"a": 1, "s": "abc", "t": True})
    s = Selector(text)
    assert s.evaluate(m) is want if isinstance(want, bool) or want is None else s.evaluate(m) == want
    assert s.matches(m) is (want is True)


def test_like_escape_and_special_characters():
    m = message(body="x", properties={"p": "50%_off.[x]*", "nl": "a\nb"})
    assert Selector("p LIKE '50!%!_off%' ESCAPE '!'").matches(m)
    assert not Selector("p LIKE '50!%!_ofx%' ESCAPE '!'").matches(m)
    assert Selector("p LIKE '%.[x]*'").matches(m)       # regex characters are literal
    assert not Selector("p LIKE '%.(x)*'").matches(m)
    assert Selector("nl LIKE 'a_b'").matches(m)         # _ matches a newline too
    assert Selector("nl LIKE 'a%'").matches(m)


# -- reading only what is named ----------------------------------------------------------------------
def bad_utf8_properties_message():
    """A message whose application-properties hold a key 'bad' with invalid UTF-8 as a string,
    before a key 'good' = 7."""
    good = encode({"good": 7})
    # Build the map by hand: 'bad' -> str8 of b'\xff\xfe', 'good' -> int 7.
    body = bytes([0xa1, 3]) + b"bad" + bytes([0xa1, 2, 0xff, 0xfe]) + good[3:]
    ap = bytes([0xc1, len(body) + 1, 4]) + body
    return Message(bytes([0x00, 0x53, 0x74]) + ap + bytes([0x00, 0x53, 0x77, 0x40]))


def test_only_the_named_properties_are_decoded():
    m = bad_utf8_properties_message()
    with pytest.raises(Exception):
        m.application_properties()          # decoding the whole map fails ...
    assert Selector("good = 7").matches(m)   # ... the selector reads 'good' only
    assert Selector("good = 7 AND JMSPriority = 4").matches(m)
    # Naming the broken one: it reads as NULL (the message does not match), nothing raises.
    assert Selector("bad IS NULL").matches(m)


# -- a queue's filtered consumers ----------------------------------------------------------------------
def queue_of(messages, **settings):
    q = Queue("q", QueueSettings.from_properties(settings), lambda m, x: None)
    for label, msg in messages:
        LABELS[id(msg)] = label
        q.enqueue(msg)
    return q


def colour_messages(n=10):
    return [("m%d" % i, message(body=i, properties={"colour": ("red", "green")[i % 3 == 0], "i": i},
                                 priority=i % 10))
            for i in range(n)]


def consumer(name, selector=None, credit=100):
    c = FakeConsumer(name)
    c.selector = Selector(selector) if selector is not None else None
    c.credit = credit
    return c


def test_queue_consumer_gets_matches_others_stay():
    q = queue_of(colour_messages())
    green = consumer("g", "colour = 'green'")
    q.add_consumer(green)
    q.dispatch()
    assert green.received == ["m0", "m3", "m6", "m9"]
    assert q.depth == 6
    assert not q.has_message_for(green)
    plain = consumer("p")
    q.add_consumer(plain)
    q.dispatch()
    assert plain.received == ["m1", "m2", "m4", "m5", "m7", "m8"]


def test_released_message_is_seen_again_by_a_selecting_consumer():
    q = queue_of(colour_messages(4))
    green = consumer("g", "colour = 'green'", credit=1)
    q.add_consumer(green)
    q.dispatch()
    assert green.received == ["m0"]
    q.release(green.unsettled.pop())       # behind the consumer's scan mark: found again
    green.credit = 5
    q.dispatch()
    assert green.received == ["m0", "m0", "m3"]


def test_selecting_consumer_on_a_priority_queue_takes_the_highest_first():
    q = queue_of(colour_messages(), **{"qpid.priorities": 10})
    red = consumer("r", "colour = 'red'")
    q.add_consumer(red)
    q.dispatch()
    assert red.received == ["m8", "m7", "m5", "m4", "m2", "m1"]


def test_selecting_browser_sees_matches_only_and_takes_nothing():
    q = queue_of(colour_messages(6))
    b = FakeConsumer("b", browsing=True)
    b.selector = Selector("i >= 3")
    b.credit = 10
    q.add_consumer(b)
    q.dispatch()
    assert b.received == ["m3", "m4", "m5"]
    assert q.depth == 6


def test_message_groups_and_selectors():
    msgs = [("m%d" % i, message(body=i, properties={"g": "A" if i < 3 else "B", "i": i})) for i in range(6)]
    q = queue_of(msgs, **{"qpid.group_header_key": "g", "qpid.shared_msg_group": 1})
    first = consumer("c1", "i <> 1", credit=1)   # takes m0: group A is now its
    q.add_consumer(first)
    q.dispatch()
    assert first.received == ["m0"]
    second = consumer("c2", "i >= 0")
    q.add_consumer(second)
    q.dispatch()
    assert second.received == ["m3", "m4", "m5"]     # group A belongs to c1
    first.credit = 5
    q.dispatch()
    assert first.received == ["m0", "m2"]             # m1 is not for c1's selector
    assert q.depth == 1
