"""The broker's fast delivery-tag size check agrees with a full decode, whatever the encodings of the
handle and delivery-id before the tag (a list8 offset bug once read the list count as the handle)."""
import pytest
from hypothesis import given, strategies as st

from cypid.broker import errors
from cypid.broker.connection import _tag_size_fast, check_delivery_tag
from cypid.pyx.codec import decode_performative, encode_frame, uint

TRANSFER = 0x14


def transfer_body(handle, delivery_id, tag, more_fields=()):
    return encode_frame(0, TRANSFER, [uint(handle), uint(delivery_id), tag, *more_fields])[8:]


@given(handle=st.integers(0, 2**32 - 1), did=st.integers(0, 2**32 - 1),
       tag=st.binary(max_size=300), extra=st.integers(0, 3))
def test_fast_size_matches_a_full_decode(handle, did, tag, extra):
    body = transfer_body(handle, did, tag, [uint(0)] * extra)
    size = _tag_size_fast(body)
    assert size in (-1, len(tag))
    assert len(decode_performative(body)[1][2]) == len(tag)


@pytest.mark.parametrize("handle", [0, 1, 255, 70000])
def test_tag_over_32_bytes_is_a_decode_error(handle):
    check_delivery_tag(transfer_body(handle, 7, b"t" * 32))
    with pytest.raises(errors.AmqpDecodeError, match="33 bytes"):
        check_delivery_tag(transfer_body(handle, 7, b"t" * 33))
