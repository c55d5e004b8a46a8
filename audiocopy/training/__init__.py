"""The offline side: training data, distortions, fitting models, enrolment and calibration.

Place in the pipeline: beside the serving stages, never imported by them.
``sources`` decides which tracks play which role; ``augment`` distorts audio
(edits and whole acoustic chains); ``music`` generates training music;
``dataset`` builds cnnbin's window shards; ``fit_cnnbin``/``fit_head`` train
the per-track models and ``encoder`` the shared encoder; ``enroll_*`` build
databases and ``play_calibration`` sets their play threshold; ``convert``
and ``evaluate`` serve the command line. TensorFlow is imported here only,
inside the functions that need it.
"""
