"""The shared encoder: one-second sub-windows of features in, unit vectors out.

Place in the pipeline: between ``signal.features`` and the engines. The
fingerprint engine searches its vectors in an index; cnnbin's embedding
heads score them per track. Enrolment and queries embed through the same
``Encoder``, so the two sides can never cut, normalise or embed sub-windows
differently.

* ``subwindows``: cutting, flooring and standardising one-second sub-windows
  (each on its own, so the same second of music gives the same input at
  enrolment, in a file and in a live stream);
* ``forward``: the network's forward pass on NumPy or CuPy (serving never
  imports TensorFlow);
* ``model``: ``Encoder``, the loaded weights and the embedding calls;
* ``artifact``: saving, loading, checking and copying the weights and their
  record.

Sub-windows. A 2.5 s query window is 75 feature frames; the encoder sees
``EncoderParams.frames`` = 30 of them (about one second). One second is short
enough that several fit in every query (ten, 0.16 s apart), which is what
lets the matcher vote on a consistent time offset, and long enough to hold a
few notes or beats.
"""
from .artifact import SHIPPED_ENCODER, copy_encoder, load_encoder, read_encoder_record, save_encoder
from .model import Encoder

__all__ = ["SHIPPED_ENCODER", "Encoder", "copy_encoder", "load_encoder", "read_encoder_record", "save_encoder"]
