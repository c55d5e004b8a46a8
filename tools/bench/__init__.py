"""The benchmark toolkit: what ``tools/evaluate.py`` and the other ``tools/bench_*.py`` scripts share.

Place in the project: beside the package, never inside it. Nothing under
``audiocopy/`` imports this; the scripts in ``tools/`` put ``tools/`` on
``sys.path`` (a script's own folder is there already) and import
``bench.<module>``. Library-like modules here log (``logging``); only the
scripts print.

The accuracy benchmark is a pipeline of cached steps, one module each:

* ``corpus``: the corpus manifest (track id, Debian package, WAV, duration)
  and the folders a split is laid out in;
* ``split``: which tracks play which role (catalogue, unseen negatives,
  "wrong" tracks, the encoder's training music), by Debian package so that
  no composer is on both sides; ``split.json`` and its hashes; the tracks
  ``tools/train_encoder.py`` must not train on;
* ``provenance``: the encoder's record checked against the split;
* ``conditions``, ``external``, ``distortions``, ``room``: the test
  conditions and how each query is distorted with sox, ffmpeg/lame and
  espeak-ng (never with ``audiocopy.training.augment``, which the models
  were trained with: an independent implementation is the point);
* ``queries``: the query plan (same source offsets in every condition) and
  the query WAVs;
* ``enrol``: enrolling the catalogue with either engine;
* ``scoring``: every query answered exactly as ``audiocopy identify``
  answers it, and the metrics at two operating points;
* ``report`` (with ``report_cnnbin``): the markdown of the accuracy section;
* ``speed``: cnnbin's scoring cost;
* ``pipeline``: the steps in order (what ``tools/evaluate.py`` runs).

Shared with the other benchmarks: ``fpscale`` and ``report_fingerprint``
(``tools/bench_fingerprint.py``), ``gpu`` (``tools/bench_features.py``,
``tools/bench_heads.py``), ``faults`` (``tools/fault_inject.py``), and at the bottom ``common``, ``machine``,
``doc``: the error type, JSON files, seeds, machine facts and load, timing,
measured child processes, the sectioned ``docs/benchmarks.md``.
"""
