# cython: language_level=3
"""cypid.pyx.codec: the AMQP 1.0 codec's one import point.

The codec lives in four modules, each built only on those before it:

* cypid.pyx.values -- the value model (typed wrappers, Described, Array, DecodeError...) and decode;
* cypid.pyx.encoder -- WriteBuffer and encode;
* cypid.pyx.frames -- FrameReader, performatives (decode_performative, decode_transfer, encode_frame,
  encode_transfer_frames) and the descriptor/performative tables;
* cypid.pyx.sections -- messages: scan_message, MessageInfo, encode_header.

This module re-exports their Python API (docs/INTERFACES.md, codec section), so Python code imports
from ``cypid.pyx.codec`` only; codec.pxd does the same for Cython's cimport.
"""
from cypid.pyx import encoder as _encoder, frames as _frames, sections as _sections, values as _values

_EXPORTS = {
    _values: ("DecodeError", "EncodeError", "symbol", "char", "ubyte", "ushort", "uint", "ulong", "byte",
              "short", "int32", "timestamp", "float32", "decimal32", "decimal64", "decimal128",
              "Described", "Array", "decode", "decode_at"),
    _encoder: ("WriteBuffer", "encode"),
    _frames: ("AMQP_HEADER", "SASL_HEADER", "EMPTY_FRAME", "DESCRIPTOR_NAMES", "DESCRIPTOR_CODES",
              "PERFORMATIVE_FIELDS", "FrameReader", "decode_performative", "decode_transfer", "encode_frame",
              "encode_transfer_frames"),
    _sections: ("MessageInfo", "scan_message", "encode_header"),
}
# Set through the module dict: codec.pxd cimports these names, so a plain `from ... import` here
# would bind the C-level declarations, not module attributes.
globals().update({name: getattr(module, name) for module, names in _EXPORTS.items() for name in names})
__all__ = [name for names in _EXPORTS.values() for name in names]
del _EXPORTS, _encoder, _frames, _sections, _values
