"""Frozen configuration records, built once at the edge and passed down.

Place in the pipeline: this module sits at the very bottom. It imports nothing
from the package, and every other layer receives the parameters it needs as
one of these immutable records instead of reading globals. A saved model keeps
the records it was trained with (``as_dict``), and a loader compares them with
the records of the running code (``check_compatible``) so that a model trained
on one feature layout is never silently fed another.

Units are in the field names: ``*_seconds``, ``*_hz``, ``*_samples``.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class AudioParams:
    """How raw audio becomes fixed-length analysis windows.

    sample_rate: internal rate in Hz. 16 kHz keeps everything up to 8 kHz,
        which holds the melody, the bass line and the attack of drums; what a
        phone microphone or an FM broadcast passes fits well inside it, and it
        makes each FFT 2.7x cheaper than the corpus' 44.1 kHz.
    window_seconds: length of one recognition query (the product promise).
    hop_seconds: step between successive windows in a longer stream.
    """

    sample_rate: int = 16000
    window_seconds: float = 2.5
    hop_seconds: float = 0.5

    @property
    def window_samples(self) -> int:
        return int(round(self.window_seconds * self.sample_rate))

    @property
    def hop_samples(self) -> int:
        return int(round(self.hop_seconds * self.sample_rate))


@dataclass(frozen=True)
class FeatureParams:
    """The log-frequency spectrogram that every engine sees.

    n_fft / hop_length: STFT frame and step in samples (128 ms / 32 ms at
        16 kHz). A long frame resolves neighbouring semitones in the bass.
    fmin_hz, bins_per_octave, n_bins: geometric (log-spaced) band centres.
        On a log-frequency axis a pitch shift or a speed change moves the
        whole picture up or down by a constant number of bins instead of
        stretching it, which is what lets a convolutional network with
        pooling treat it as a translation. 12 bins per octave = one semitone.
    floor_db: dynamic range kept below each window's loudest cell.
    """

    n_fft: int = 2048
    hop_length: int = 512
    fmin_hz: float = 110.0
    bins_per_octave: int = 12
    n_bins: int = 72
    floor_db: float = 80.0

    def n_frames(self, window_samples: int) -> int:
        """Number of STFT frames in one window of ``window_samples`` samples."""
        return 1 + (window_samples - self.n_fft) // self.hop_length


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
    # At 16 kHz mono, LAME barely changes the features from 32 kbit/s up
    # (mean change of the standardised spectrogram 0.085 at 32, 0.005 at 128)
    # but low-passes hard at 16-24 (0.36-0.65): each kbit/s covers 8 kHz of
    # bandwidth here, not 22 kHz. The damage worth learning is at low rates.
    codec_kbps_range: tuple[int, int] = (16, 96)


@dataclass(frozen=True)
class CnnParams:
    """Shape of one per-track binary CNN.

    kind: which per-track network (see ``models``):

        * ``"embedding"`` (default): a small CNN head over the sub-window
          embeddings of the shared encoder (``engines.fpencoder``). Its
          first layer is a bank of 1x1 convolutions whose kernels start as
          the track's own embeddings, one every ``hop_frames``; a neighbour
          max-pool absorbs tempo drift, a fixed diagonal convolution sums
          the evidence of sub-windows that agree on one time offset, and a
          global max-pool and one logit say "is this window track X?". See
          ``models.build_track_head``.
        * ``"spectrogram"``: the seed's design, a 3x3 convolution stack
          trained from scratch on the log-frequency spectrogram
          (``models.build_track_cnn``).

    widths, pooling: the spectrogram CNN's channel widths per 3x3 block and
        its final pooling ("global": max+mean over time and frequency;
        "time": over time only, keeping the coarse log-frequency position of
        each pattern: each cell spans 8 semitones after three pools).
    hop_frames: step between the embedding head's prototypes (feature frames).
        It must equal the step between a query window's sub-windows, so that
        one step along the prototypes is one step along the query.
    tolerance: the embedding head's neighbour max-pool radius in prototypes:
        10 % of tempo change moves the last of ten sub-windows by 0.9 steps.
    negative_quantile: each prototype's bias is set so that only this share
        of negative sub-windows is more similar to it than zero: prototypes
        that resemble all music (a held chord, a drum loop, noise) start
        with a low voice.
    """

    kind: str = "embedding"
    widths: tuple[int, ...] = (8, 16, 24, 32)
    pooling: str = "time"
    hop_frames: int = 5
    tolerance: int = 1
    negative_quantile: float = 0.99


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


def as_dict(record: Any) -> dict:
    """A JSON-ready dict of a config record (tuples become lists)."""
    return dataclasses.asdict(record)


def from_dict(cls: type[T], data: Mapping[str, Any]) -> T:
    """Rebuild a record of type ``cls`` from ``as_dict`` output.

    Unknown keys are rejected, because they mean the file was written by a
    different version of the code.
    """
    names = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(data) - set(names)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} fields: {sorted(unknown)}")
    kwargs = {}
    for key, value in data.items():
        kwargs[key] = tuple(value) if isinstance(value, list) else value
    return cls(**kwargs)


def check_compatible(saved: Any, current: Any, what: str) -> list[str]:
    """Names of fields whose values differ between two records of one type."""
    diffs = []
    for f in dataclasses.fields(current):
        a, b = getattr(saved, f.name), getattr(current, f.name)
        if a != b:
            diffs.append(f"{what}.{f.name}: saved {a!r}, running {b!r}")
    return diffs
