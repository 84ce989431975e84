# cython: language_level=3
"""cypid.pyx.codec: the codec's C-level contract, gathered from the modules that implement it.

* cypid.pyx.values (values.pxd): the type model (Described, Array, the TypeCode and Descriptor enums),
  decode_value / skip_value over cypid.pyx.frb.FRBuffer, and the checked readers (need, read_u8...).
* cypid.pyx.encoder (encoder.pxd): WriteBuffer and its inline wb_* writers, encode_value.
* cypid.pyx.frames (frames.pxd): FrameReader and FrameView, decode_performative, decode_transfer,
  encode_frame, encode_transfer_frames.
* cypid.pyx.sections (sections.pxd): MessageInfo, scan_message, encode_header.

``from cypid.pyx.codec cimport X`` keeps working for every name that used to be declared here; new
code may cimport from the module that defines X.  The Python-level API is in docs/INTERFACES.md.
"""
from cypid.pyx.values cimport *
from cypid.pyx.encoder cimport *
from cypid.pyx.frames cimport *
from cypid.pyx.sections cimport *
