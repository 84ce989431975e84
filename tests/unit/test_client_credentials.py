"""cypid.client's broker addresses: the credentials forms qpidd's tools and AMQP URLs use."""
import pytest

from cypid.client import parse_url


@pytest.mark.parametrize("url, expected", [
    ("alice/secret@h:7", ("h", 7, "alice", "secret")),              # qpid tools: user/password@host:port
    ("alice@h", ("h", 5672, "alice", None)),
    ("amqp://alice:secret@h:2/vhost", ("h", 2, "alice", "secret")),
    ("amqp://alice/secret@h:2", ("h", 2, "alice", "secret")),        # qpidd's URL grammar allows both
    ("alice/pa:ss@h:3", ("h", 3, "alice", "pa:ss")),                  # the first separator splits
    ("alice@QPID/secret@h:4", ("h", 4, "alice@QPID", "secret")),     # a login with its realm
    ("amqps://h", ("h", 5671, None, None)),
    ("amqps://bob:pw@[::1]:9", ("::1", 9, "bob", "pw")),
    ("h:1", ("h", 1, None, None)),
    ("[::1]:3", ("::1", 3, None, None)),
])
def test_parse_url_credentials(url, expected):
    assert parse_url(url) == expected
