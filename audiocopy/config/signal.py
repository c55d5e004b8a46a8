"""Parameters of the signal stage: the internal rate, the windows and the features.

Place in the pipeline: ``signal`` (decode, windows, features) reads these;
every saved artifact stores them and refuses to load under others, because a
model fed another feature layout returns confident nonsense.
"""
from __future__ import annotations

from dataclasses import dataclass


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
