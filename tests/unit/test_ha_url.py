"""qpidd's broker URL grammar (ha/url.py), as --ha-brokers-url and setBrokersUrl take it."""
import pytest

from cypid.ha.url import UrlError, parse_url


@pytest.mark.parametrize("text, printed", [
    ("h1,h2,h3", "amqp:tcp:h1:5672,tcp:h2:5672,tcp:h3:5672"),
    ("amqp:tcp:10.0.0.1:5673,ssl:host-b:5671", "amqp:tcp:10.0.0.1:5673,ssl:host-b:5671"),
    ("amqp:user/secret@h1:1,h2", "amqp:user/secret@tcp:h1:1,tcp:h2:5672"),
    ("bob:pw@[::1]:5672", "amqp:bob/pw@tcp:[::1]:5672"),
    ("my_host.example%2Dx~", "amqp:tcp:my_host.example%2Dx~:5672"),
    ("", ""),
])
def test_parse_and_print(text, printed):
    assert str(parse_url(text)) == printed


def test_addresses_and_credentials():
    url = parse_url("amqp:u/p@tcp:a:1,b")
    assert (url.user, url.password) == ("u", "p")
    assert [(a.protocol, a.host, a.port) for a in url] == [("tcp", "a", 1), ("tcp", "b", 5672)]


@pytest.mark.parametrize("text, fault", [
    ("h1:99999", "bad port"), ("h1:", "empty port"), ("h1,,h2", "bad host"), ("a b", "bad host"),
    ("@h1", "empty user"), ("[::1", "unclosed"), ("h1:x", "bad port"),
])
def test_malformed(text, fault):
    with pytest.raises(UrlError) as info:
        parse_url(text)
    assert fault in str(info.value) and text in str(info.value)
