"""Contrastive training of the fingerprint encoder (NT-Xent on distorted views).

Modules, in the order a step uses them: ``cache`` (clean band levels and
audio-domain views per track), ``feature_views`` (distortions in feature
space), ``pairs`` (anchor/positive batches), ``loss`` (NT-Xent),
``validation`` (retrieval on held-out tracks), ``checkpoint`` (resume), and
``loop`` (the epochs, the schedule, the export).

Place in the pipeline: the offline side of the ``fingerprint`` engine, run
once by ``tools/train_encoder.py`` to produce the shipped weights
(``audiocopy/weights/``). Enrolment never trains: it only embeds.

What is learned. A batch holds B pairs. In each pair the *anchor* is a clean
one-second sub-window of a training track, exactly as enrolment will see it,
and the *positive* is the same music as a query might reach us: played
faster or slower, transposed, time-stretched, noisy, mixed with other
music, through a phone, in a room, as low-bitrate MP3, and cut up to a few
frames off the anchor's grid (enrolment keeps a vector every 0.256 s, a
query's sub-windows fall anywhere in between). NT-Xent (Chen et al. 2020,
as in Chang et al. 2021's neural audio fingerprint) pulls each positive
towards its anchor and pushes it from the 2B - 2 other sub-windows in the
batch. Other sub-windows of the *same* track are left out of the
denominator, not used as negatives: a chorus repeated later in a song is
not a mistake to punish.

Where the distortions come from, and why two sources. The project's own
``augment`` functions are the faithful ones (a phase vocoder for tempo,
soxr for speed, a real MP3 codec), but at 10-30 ms per view they would
leave two CPU cores starved of batches. So the training cache
(``cache.build_cache``) precomputes, per track, the clean band levels of the whole
track and ``views_per_track`` audio-domain views made with ``augment`` (with
their exact time map back to the clean track). Half of the positives come
from those views. The other half are made on the fly in *feature space*,
which is nearly free on the log-frequency axis: a pitch shift is a shift of
the band axis, a tempo change is a resampling of the frame axis, a speed
change is both; white/pink noise and other music are added in the power
domain at an exact SNR (frame energies are cached); a phone is a band-pass
response multiplied onto the bands plus pink noise; a room is an
exponential smear of band power over frames; an MP3 at low rate is a
low-pass. Both halves go through the same floor and per-sub-window
standardisation as enrolment and queries (``encoder.subwindows.standardize``).

Resumable. Everything lives under ``--work``: the cache (one file per
track, skipped when present), and ``checkpoint.npz`` + ``checkpoint.json``
written atomically at the end of every epoch (weights, optimizer state,
history). Epoch e draws its batches from a generator seeded with (seed, e),
so a resumed run continues exactly where an uninterrupted one would have.
The best encoder so far (by validation top-1) is exported after every
epoch, so a time budget or a Ctrl-C still leaves usable weights.
"""
