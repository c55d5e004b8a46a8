"""Frozen configuration records, built once at the edge and passed down.

Place in the pipeline: the very bottom. This package imports nothing else
from audiocopy, and every other layer receives the parameters it needs as one
of these immutable records instead of reading globals. It is one place for
every parameter record, grouped by the stage that reads them:

* ``signal``: ``AudioParams`` (rate, window, hop), ``FeatureParams`` (the
  log-frequency spectrogram);
* ``engines``: ``EncoderParams``, ``MatchParams``, ``IndexParams``,
  ``CnnParams``;
* ``decision``: ``DecisionParams`` (how windows become plays);
* ``training``: ``AugmentParams``, ``DatasetParams``, ``TrainParams``,
  ``CalibrationParams``, ``EncoderTrainParams``;
* ``server``: ``ServerSettings`` (the defaults; the command-line and
  environment parsing lives in ``web.settings``);
* ``records``: ``as_dict``/``from_dict``/``check_compatible``, how a saved
  artifact keeps the records it was built with and a loader compares them
  with the running code's, so that a model trained on one feature layout is
  never silently fed another.

Units are in the field names: ``*_seconds``/``*_s``, ``*_hz``, ``*_samples``,
``*_frames`` (feature frames of ``FeatureParams.hop_length`` samples).
"""
from .decision import DecisionParams
from .engines import CnnParams, EncoderParams, IndexParams, MatchParams
from .records import as_dict, check_compatible, from_dict
from .server import MIB, ServerSettings
from .signal import AudioParams, FeatureParams
from .training import ENCODER_AUGMENT, AugmentParams, CalibrationParams, DatasetParams, EncoderTrainParams, TrainParams

__all__ = ["AudioParams", "AugmentParams", "CalibrationParams", "CnnParams", "DatasetParams", "DecisionParams", "EncoderParams",
           "EncoderTrainParams", "ENCODER_AUGMENT", "FeatureParams", "IndexParams", "MatchParams", "MIB",
           "ServerSettings", "TrainParams", "as_dict", "check_compatible", "from_dict"]
