"""Parameters of the offline side: distortions, datasets, training, calibration.

Place in the pipeline: read by ``training`` only (dataset building, fitting
the per-track models and the encoder, calibrating thresholds on negatives).
Serving never reads them, but every trained artifact records the ones it was
made with (provenance), so a benchmark can say what a model saw.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import ConfigError


@dataclass(frozen=True)
class AugmentParams:
    """Ranges of the training distortions (see ``augment``).

    Each training window draws one value from every range; the ranges are a
    little wider than what the benchmark asks for (speed ±10 %, pitch ±2
    semitones, tempo ±10 %) so that the edges of the target range are not the
    edges of what the network has seen.
    """

    speed_range: tuple[float, float] = (0.87, 1.13)
    pitch_semitones: tuple[float, float] = (-2.5, 2.5)
    stretch_range: tuple[float, float] = (0.87, 1.13)
    snr_db_range: tuple[float, float] = (-2.0, 25.0)
    p_speed: float = 0.35
    p_pitch: float = 0.3
    p_stretch: float = 0.25
    p_noise: float = 0.6
    p_music: float = 0.2
    p_phone: float = 0.3
    p_reverb: float = 0.3
    p_codec: float = 0.15
    #: Share of audio-domain views sent through a whole acoustic chain
    #: (``augment.chain``: loudspeaker, generated room, microphone, AGC, room
    #: noise, codec, capture) instead of the single edits above. The cnnbin
    #: dataset's recipe does not draw it; the encoder's cached views do.
    p_chain: float = 0.0
    #: Feature-space positives of the encoder only (its cached audio views and
    #: the cnnbin dataset do not draw these): speech over the music (a
    #: presenter, a shop announcement) and the SNR ranges of speech and of
    #: other music mixed in.
    p_speech: float = 0.0
    speech_snr_db_range: tuple[float, float] = (-3.0, 15.0)
    music_snr_db_range: tuple[float, float] = (0.0, 15.0)
    # At 16 kHz mono, LAME barely changes the features from 32 kbit/s up
    # (mean change of the standardised spectrogram 0.085 at 32, 0.005 at 128)
    # but low-passes hard at 16-24 (0.36-0.65): each kbit/s covers 8 kHz of
    # bandwidth here, not 22 kHz. The damage worth learning is at low rates.
    codec_kbps_range: tuple[int, int] = (16, 96)


@dataclass(frozen=True)
class TrainParams:
    """How one track's classifier is fitted and calibrated.

    track_fpr: per-track false-positive rate per window at which each track's
        own threshold is set; it puts all tracks' logits on one scale.
    catalog_fpr: false-positive rate per window of the whole catalogue (the
        best track's margin), which sets the final decision offset. With
        100 tracks, per-track rates add up, so the catalogue level is what a
        user experiences. Both are measured on held-out negative tracks that
        no model was trained on.
    catalog_fpr_confidence: confidence with which the catalogue offset
        holds ``catalog_fpr`` (``decision.calibration.bounded_threshold``);
        0 reads the plain quantile, as databases calibrated before it did.
    negatives_per_positive: negatives drawn afresh each epoch per positive.
    learning_rate, head_learning_rate: Adam step of the spectrogram CNN and
        of the embedding head.
    """

    epochs: int = 20
    patience: int = 4
    batch_size: int = 64
    learning_rate: float = 2e-3
    #: The embedding head starts from the track's own embeddings (unit
    #: vectors) and is fine-tuned, not trained from scratch: a smaller step.
    head_learning_rate: float = 3e-4
    negatives_per_positive: int = 6
    validation_fraction: float = 0.15
    track_fpr: float = 0.01
    catalog_fpr: float = 0.005
    catalog_fpr_confidence: float = 0.9
    seed: int = 0


@dataclass(frozen=True)
class DatasetParams:
    """How many augmented windows the dataset builder draws per source track.

    positives_per_track: augmented windows of each licensed track.
    windows_per_wrong: augmented windows of each "wrong" (negative) track.
    windows_per_calibration: windows of each held-out calibration track (more,
        because false-positive rates of 1e-3 need thousands of negatives).
    shard_windows: windows per on-disk shard (bounded RAM while building).
    """

    positives_per_track: int = 400
    windows_per_wrong: int = 48
    windows_per_calibration: int = 96
    clean_fraction: float = 0.15
    shard_windows: int = 2048
    seed: int = 0


@dataclass(frozen=True)
class CalibrationParams:
    """Negative windows for the threshold.

    windows_per_minute: windows cut from each calibration negative per
        minute of its usable audio. 120 is the stream's own grid (a window
        every 0.5 s), so the threshold is set on about as many windows as a
        stream of those tracks would cut, and a long negative weighs as
        much as the minutes it lasts. Fewer windows cost margin: the
        Clopper-Pearson bound (``decision.calibration.bounded_threshold``)
        lets 2 of 1,216 windows through for a 0.5 % target, 16 of 4,505
        (measured in ``docs/benchmarks.md``).
    min_windows_per_track, max_windows_per_track: bounds on that count
        (a 40 s jingle still counts; a one-hour mix does not drown the rest).
    windows_per_track: a fixed count per negative instead (0: by length);
        the tests use it to keep their catalogues small.
    distorted_fraction: share passed through ``augment.random_distortion``.
    min_tracks: below this many calibration-split negatives, all negatives
        are used (a tiny folder may hold out none).
    """

    windows_per_minute: float = 120.0
    min_windows_per_track: int = 16
    max_windows_per_track: int = 1200
    windows_per_track: int = 0
    distorted_fraction: float = 0.5
    min_tracks: int = 3
    seed: int = 0

    def __post_init__(self):
        if self.windows_per_track < 0:
            raise ConfigError(f"windows_per_track must be >= 0 (0: by length), got {self.windows_per_track!r}")
        if self.windows_per_track == 0 and not self.windows_per_minute > 0:
            raise ConfigError(f"windows_per_minute must be > 0, got {self.windows_per_minute!r}")
        if not 1 <= self.min_windows_per_track <= self.max_windows_per_track:
            raise ConfigError("calibration windows per track need 1 <= min <= max, got "
                              f"{self.min_windows_per_track!r} and {self.max_windows_per_track!r}")
        if not 0.0 <= self.distorted_fraction <= 1.0:
            raise ConfigError(f"distorted_fraction must be in [0, 1], got {self.distorted_fraction!r}")


#: The encoder's training distortions: the same kinds as the dataset's, drawn
#: a little less often (a contrastive batch already pairs every anchor with a
#: distorted view) and, for noise, down to -3 dB. In feature space, where most
#: of the encoder's positives are made, ``p_codec`` is a low-pass (what a
#: low-rate codec does to the bands) and ``stretch`` a resampling of frames.
#: These are the shipped encoder's settings (its record keeps them): whole
#: acoustic chains in 40 % of the audio views named 87-89 % of room
#: recordings across two training seeds, against 83-85 % with a quarter of the
#: views and 80 % with none, at no cost over all conditions; half of the views,
#: with speech, cost pitch and noise robustness in an earlier recipe. Speech
#: positives stay off, as in every shipped encoder (with them, encoders (1) and
#: (2) still named under 12 % of fragments under speech at 0 dB).
#: ``docs/benchmarks.md``, "Encoder retrained with checkable provenance", has
#: the figures.
ENCODER_AUGMENT = AugmentParams(speed_range=(0.88, 1.12), stretch_range=(0.88, 1.12), snr_db_range=(-3.0, 25.0),
                                p_speed=0.3, p_pitch=0.3, p_stretch=0.25, p_noise=0.5, p_music=0.2, p_phone=0.25,
                                p_reverb=0.25, p_codec=0.15, p_chain=0.4, p_speech=0.0,
                                music_snr_db_range=(-3.0, 15.0))


@dataclass(frozen=True)
class EncoderTrainParams:
    """How the encoder is trained.

    batch_pairs: pairs per step (2 x batch_pairs sub-windows).
    steps_per_epoch, epochs: an epoch is a checkpoint interval; ``epochs``
        also sets the length of the cosine learning-rate schedule.
    temperature: NT-Xent temperature (0.05-0.1 in the literature).
    p_view: share of positives taken from the audio-domain views.
    views_per_track, view_seconds: audio-domain views cached per track.
    jitter_frames: the positive is cut up to this many frames off the
        anchor's position (enrolment keeps a vector every 8 frames).
    val_tracks: training tracks held out to measure retrieval each epoch.
    enrol_hop_frames: sub-window step of the validation database (as enrolment).
    positives_per_anchor: distorted views of each anchor's moment in a
        batch; with more than one, every view is a positive of every other
        (a multi-positive NT-Xent), so each step teaches more invariances
        per anchor for the same number of negatives.
    """

    batch_pairs: int = 96
    steps_per_epoch: int = 200
    epochs: int = 60
    learning_rate: float = 2e-3
    warmup_steps: int = 300
    temperature: float = 0.1
    p_view: float = 0.5
    views_per_track: int = 24
    view_seconds: float = 4.0
    jitter_frames: int = 3
    val_tracks: int = 6
    val_queries: int = 384
    enrol_hop_frames: int = 8
    positives_per_anchor: int = 1
    seed: int = 0
