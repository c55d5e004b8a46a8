"""audiocopy: recognise copyrighted music in live audio from 2.5 s fragments.

The package is laid out by pipeline stage, and data flows one way::

    signal/  ->  encoder/  ->  engines/  ->  decision/  ->  plays/  ->  web/, cli
    decode,      1 s sub-      margins of    windows ->    store,       server,
    windows,     windows ->    every track   detections    exports      command
    FFT bands    vectors       per window    -> plays

    config/, errors, atomic_files   at the bottom: parameters, errors, safe writes
    training/                       the offline side: data, distortions, fitting,
                                    enrolment and calibration

Where to look: a window's features are computed in ``signal/features.py``;
its embedding is searched in ``engines/fingerprint/`` (``stream.py``: the
path every window takes; ``index/``: the vector index); a play is decided
in ``decision/stream.py``. Imports only go downward (checked by the
import-linter contracts in ``setup.cfg``).

Importing ``audiocopy`` is cheap, and serving never imports TensorFlow: the
encoder runs on NumPy or CuPy (``encoder/forward.py``). Only ``training``
(and the optional spectrogram CNNs of ``engines/cnnbin``) need it.
"""
__version__ = "0.2.0"
