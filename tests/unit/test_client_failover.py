"""cypid.client.failover.parse_urls: qpidd's URL grammar and the other ways to give a broker list."""
import pytest
from cypid.client.failover import parse_urls


@pytest.mark.parametrize("text, expected", [
    ("amqp:tcp:h1:5673,tcp:h2:5674", ["h1:5673", "h2:5674"]),
    ("h1,h2:1", ["h1:5672", "h2:1"]),
    ("amqp:guest/secret@tcp:h1:1,h2", ["amqp://guest:secret@h1:1", "amqp://guest:secret@h2:5672"]),
    ("amqp://h1:1,amqp://u:p@h2:2", ["amqp://h1:1", "amqp://u:p@h2:2"]),
    ("tcp:[::1]:5000", ["[::1]:5000"]),
    (["h1:1", "amqp:tcp:h2:2,tcp:h3:3"], ["h1:1", "h2:2", "h3:3"]),
])
def test_parse_urls(text, expected):
    assert parse_urls(text) == expected


@pytest.mark.parametrize("text", ["", "amqp:", "ssl:h1:5671", "h1:port", []])
def test_parse_urls_refuses(text):
    with pytest.raises(ValueError):
        parse_urls(text)
