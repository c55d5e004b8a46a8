"""FFT features: a batch of 2.5 s windows -> log-frequency spectrograms.

Place in the pipeline: after ``audio``/``stream`` have cut windows, before
any engine. Every engine (the per-track CNNs and the fingerprint encoder)
consumes exactly what ``log_spectrogram`` returns, so the training path, the
CLI and the live server cannot drift apart.

Why these choices:

* **Short-time FFT** (Hann window, 128 ms frames, 32 ms hop): music is a
  sequence of notes and beats; a spectrogram shows both what sounds (rows)
  and when (columns), and it is cheap: one real FFT per frame.
* **Log-frequency bands** (12 per octave from 110 Hz): musical pitch is
  geometric, so on this axis a transposition or a sped-up record is a
  vertical *shift* of the image, not a stretch. Convolutions and pooling in
  the networks are shift-tolerant by construction, which is what makes
  pitch and speed robustness learnable by small models. Low bands narrower
  than an FFT bin are widened to one bin so none of them is empty.
* **Decibels with a floor** and **per-window standardisation**: loudness
  depends on the microphone and the volume knob, not on the track, so each
  window is scaled to zero mean and unit variance; the 80 dB floor stops
  digital silence (log 0) from dominating that statistic.

All functions are pure, take keyword parameters and an ``xp`` module
(NumPy or CuPy, see ``xp.get_xp``), and return arrays of the same module.
"""
from __future__ import annotations

import functools
from types import ModuleType

import numpy as np

from ..config import AudioParams, FeatureParams

#: Frames per chunk when computing a whole track's spectrogram (bounded RAM:
#: 1024 frames of 2048-point FFTs are ~16 MB of float32 at a time).
CHUNK_FRAMES = 1024


def band_centres_hz(params: FeatureParams) -> np.ndarray:
    """Centre frequency of each log band: (n_bins,) float64, in Hz."""
    k = np.arange(params.n_bins, dtype=np.float64)
    return params.fmin_hz * 2.0 ** (k / params.bins_per_octave)


@functools.lru_cache(maxsize=8)
def _filterbank_cached(params: FeatureParams, sample_rate: int) -> np.ndarray:
    fft_hz = np.fft.rfftfreq(params.n_fft, d=1.0 / sample_rate)
    bin_hz = sample_rate / params.n_fft
    centres = band_centres_hz(params)
    if centres[-1] * 2 ** (1 / params.bins_per_octave) > sample_rate / 2:
        raise ValueError(f"{params.n_bins} bands from {params.fmin_hz} Hz exceed Nyquist at {sample_rate} Hz")
    step = 2.0 ** (1.0 / params.bins_per_octave)
    lower = np.maximum(centres - centres / step, bin_hz)  # half-width below, >= 1 FFT bin
    upper = np.maximum(centres * step - centres, bin_hz)
    d = fft_hz[:, None] - centres[None, :]
    weights = np.where(d < 0, 1.0 + d / lower, 1.0 - d / upper)
    weights = np.clip(weights, 0.0, None)
    weights /= weights.sum(axis=0, keepdims=True)  # each band = mean power under it
    return weights.astype(np.float32)


def log_filterbank(*, params: FeatureParams, sample_rate: int) -> np.ndarray:
    """Triangular log-frequency filterbank.

    Returns (n_fft // 2 + 1, n_bins) float32; column k averages the FFT power
    around band centre k with a triangle reaching the neighbouring centres.
    """
    return _filterbank_cached(params, sample_rate)


def frame_count(*, audio: AudioParams, params: FeatureParams) -> int:
    """Frames per window, i.e. the time axis length of ``log_spectrogram``."""
    return params.n_frames(audio.window_samples)


def feature_shape(*, audio: AudioParams, params: FeatureParams) -> tuple[int, int]:
    """(frames, bands) of one window's features."""
    return frame_count(audio=audio, params=params), params.n_bins


@functools.lru_cache(maxsize=4)
def _periodic_hann(n_fft: int) -> np.ndarray:
    # Periodic (not symmetric) Hann: its shifted copies at hop n_fft/4 sum to
    # a constant, so no part of the signal is weighted twice or skipped.
    return (0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n_fft) / n_fft)).astype(np.float32)


def power_spectrogram(windows, *, params: FeatureParams, xp: ModuleType = np):
    """Short-time power spectrum of each window.

    windows: (batch, samples) float32 array of module ``xp``.
    Returns (batch, frames, n_fft // 2 + 1) float32 power.
    """
    windows = xp.asarray(windows, dtype=xp.float32)
    if windows.ndim != 2:
        raise ValueError(f"windows must be (batch, samples), got shape {windows.shape}")
    n_frames = params.n_frames(windows.shape[1])
    if n_frames < 1:
        raise ValueError(f"windows of {windows.shape[1]} samples are shorter than one FFT frame")
    if xp is np:
        # A strided view instead of a gathered copy (no memory traffic for the
        # 4x overlap of the frames).
        from numpy.lib.stride_tricks import sliding_window_view

        frames = sliding_window_view(windows, params.n_fft, axis=-1)[:, ::params.hop_length][:, :n_frames]
    else:
        index = (xp.arange(n_frames) * params.hop_length)[:, None] + xp.arange(params.n_fft)[None, :]
        frames = windows[:, index]
    return frame_power(frames, xp=xp)  # (batch, frames, n_fft // 2 + 1)


def frame_power(frames, *, xp: ModuleType = np):
    """Power spectrum of STFT frames that are already cut.

    frames: (..., n_fft) float32 samples of each frame, before the Hann
    window (applied here). Returns (..., n_fft // 2 + 1) float32 power.
    ``power_spectrogram`` cuts a window's frames and calls this; a live
    stream (``engines.fingerprint.stream``) calls it on just the frames it has not
    analysed yet. Host frames are copied to ``xp``'s device first (a no-op
    for arrays already there).
    """
    frames = xp.asarray(frames)
    hann = xp.asarray(_periodic_hann(frames.shape[-1]))
    if xp is np:
        # scipy's FFT keeps float32 as complex64 where np.fft computes in
        # double: about 2x faster per window, the largest single cost of a
        # live stream. One thread: in the live server the encoder and the
        # index already keep both cores busy, and a second FFT thread
        # measured no faster.
        from scipy import fft as spfft

        spectrum = spfft.rfft(frames * hann, axis=-1)
    else:
        spectrum = xp.fft.rfft(frames * hann, axis=-1)
    return (spectrum.real**2 + spectrum.imag**2).astype(xp.float32, copy=False)


def band_db(power, *, audio: AudioParams, params: FeatureParams, xp: ModuleType = np):
    """Log-frequency band levels of power spectra, in decibels.

    power: (..., n_fft // 2 + 1) float32 from ``frame_power`` or
    ``power_spectrogram``. Returns (..., n_bins) float32: ``10 log10`` of each
    band's power, before any floor or standardisation (the quantity
    ``log_spectrogram`` floors and standardises per window, and the
    fingerprint engine per one-second sub-window).
    """
    fb = xp.asarray(log_filterbank(params=params, sample_rate=audio.sample_rate))
    return 10.0 * xp.log10(power @ fb + 1e-12)


def window_band_db(windows, *, audio: AudioParams, params: FeatureParams, xp: ModuleType = np):
    """Band levels of whole windows, in decibels, before any floor or standardisation.

    windows: (batch, audio.window_samples) float32, of module ``xp`` or NumPy.
    Returns (batch, frames, n_bins) float32 of module ``xp``.
    """
    return band_db(power_spectrogram(windows, params=params, xp=xp), audio=audio, params=params, xp=xp)


def standardise_windows(db, *, params: FeatureParams, xp: ModuleType = np):
    """Floor each window ``params.floor_db`` below its peak, then standardise it.

    db: (batch, frames, n_bins) band levels (``window_band_db``). Returns the
    same shape, zero mean and unit variance per window; an all-silent (or
    constant) window maps to all zeros.
    """
    peak = db.max(axis=(1, 2), keepdims=True)
    db = xp.maximum(db, peak - params.floor_db)
    mean = db.mean(axis=(1, 2), keepdims=True)
    std = db.std(axis=(1, 2), keepdims=True)
    # A silent or constant window has std ~0: return zeros rather than NaN or
    # float32 round-off of the mean blown up by a tiny divisor.
    return xp.where(std > 1e-3, (db - mean) / xp.maximum(std, 1e-3), 0.0).astype(xp.float32)


def log_spectrogram(windows, *, audio: AudioParams, params: FeatureParams, xp: ModuleType = np):
    """The features of whole windows that cnnbin's models were trained on.

    windows: (batch, audio.window_samples) float32 at ``audio.sample_rate``,
        of module ``xp`` or NumPy (copied to ``xp``).
    Returns (batch, frames, n_bins) float32 of module ``xp``: decibels
    floored ``params.floor_db`` below each window's peak, then standardised
    per window to zero mean and unit variance (``standardise_windows`` of
    ``window_band_db``).
    """
    return standardise_windows(window_band_db(windows, audio=audio, params=params, xp=xp), params=params, xp=xp)


def track_band_db(signal: np.ndarray, *, audio: AudioParams, features: FeatureParams,
                  with_energy: bool = False):
    """Band levels of a whole track, frame by frame, in decibels.

    signal: (n,) float32 at ``audio.sample_rate``.
    Returns (n_frames, n_bins) float32: ``10 log10`` of the band power of every
    STFT frame (the quantity ``features.log_spectrogram`` floors and
    standardises), with ``features.FeatureParams.n_frames(n)`` frames; frame
    ``i`` starts at sample ``i * hop_length``. Empty (0, n_bins) when the
    signal is shorter than one FFT frame.
    with_energy: also return (n_frames,) float32, ``10 log10`` of each
    frame's mean power over all FFT bins (proportional to the frame's mean
    square; training uses it to mix noise at an exact SNR in feature space).
    """
    signal = np.asarray(signal, dtype=np.float32)
    n_frames = features.n_frames(signal.size) if signal.size >= features.n_fft else 0
    out = np.empty((max(n_frames, 0), features.n_bins), dtype=np.float32)
    energy = np.empty(max(n_frames, 0), dtype=np.float32)
    # Chunks of CHUNK_FRAMES frames keep the complex spectrum small; each chunk
    # is one "window" spanning exactly its frames plus the FFT tail.
    for lo in range(0, n_frames, CHUNK_FRAMES):
        count = min(CHUNK_FRAMES, n_frames - lo)
        start = lo * features.hop_length
        chunk = signal[start:start + (count - 1) * features.hop_length + features.n_fft]
        power = power_spectrogram(chunk[None], params=features)[0]  # (count, n_fft // 2 + 1)
        out[lo:lo + count] = band_db(power, audio=audio, params=features)
        if with_energy:
            energy[lo:lo + count] = 10.0 * np.log10(power.mean(axis=1) + 1e-12)
    return (out, energy) if with_energy else out
