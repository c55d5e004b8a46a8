"""Tests for ``audiocopy.signal.windows``: window positions for files and live streams.

The signal is a ramp (sample i has value i), so every window's content
tells exactly where it was cut from.

Known difference between the two cutters, by design:
``cut_windows`` (whole file) adds one final window aligned to the end of the
signal when the regular hops do not land there, so a file's tail is never
ignored. ``SlidingWindow`` (live stream) cannot know where the stream will
end, so it yields only the regular hops: 0, hop, 2*hop, ... For the same
samples, its windows are exactly ``cut_windows``' windows minus that extra
end-aligned one.
"""
from __future__ import annotations

import numpy as np
import pytest

from audiocopy.config import AudioParams
from audiocopy.signal.windows import SlidingWindow, cut_windows, window_starts

AUDIO = AudioParams()  # 2.5 s windows every 0.5 s at 16 kHz
W, H, SR = AUDIO.window_samples, AUDIO.hop_samples, AUDIO.sample_rate
SMALL = AudioParams(sample_rate=100, window_seconds=0.25, hop_seconds=0.1)  # W=25, H=10: fast exhaustive checks


def ramp(n: int) -> np.ndarray:
    return np.arange(n, dtype=np.float32)


# --------------------------------------------------------------------------- window_starts

def test_window_starts_shorter_than_a_window():
    for n in (0, 1, W - 1):
        starts = window_starts(n, audio=AUDIO)
        assert starts.shape == (0,) and starts.dtype == np.int64


def test_window_starts_exactly_one_window():
    np.testing.assert_array_equal(window_starts(W, audio=AUDIO), [0])


def test_window_starts_regular_hops_landing_on_the_end():
    np.testing.assert_array_equal(window_starts(W + 3 * H, audio=AUDIO), [0, H, 2 * H, 3 * H])


def test_window_starts_adds_end_aligned_window():
    n = W + 3 * H + 7
    starts = window_starts(n, audio=AUDIO)
    np.testing.assert_array_equal(starts, [0, H, 2 * H, 3 * H, n - W])
    assert starts.dtype == np.int64


def test_window_starts_one_sample_longer_than_a_window():
    np.testing.assert_array_equal(window_starts(W + 1, audio=AUDIO), [0, 1])


@pytest.mark.parametrize("n", range(0, 80))
def test_window_starts_invariants(n):
    starts = window_starts(n, audio=SMALL)
    w, h = SMALL.window_samples, SMALL.hop_samples
    if n < w:
        assert starts.size == 0
        return
    assert starts[0] == 0 and starts[-1] == n - w  # covers the whole signal
    assert np.all(np.diff(starts) > 0) and np.all(np.diff(starts) <= h)
    assert np.all(starts[:-1] % h == 0)


# --------------------------------------------------------------------------- cut_windows

def test_cut_windows_content_and_offsets():
    n = W + 2 * H + 123
    windows, offsets = cut_windows(ramp(n), audio=AUDIO)
    starts = np.array([0, H, 2 * H, n - W])
    assert windows.shape == (4, W) and windows.dtype == np.float32
    assert offsets.dtype == np.float64
    np.testing.assert_array_equal(offsets, starts / SR)
    for row, s in zip(windows, starts):
        np.testing.assert_array_equal(row, np.arange(s, s + W, dtype=np.float32))


def test_cut_windows_short_signal_is_empty():
    windows, offsets = cut_windows(ramp(W - 1), audio=AUDIO)
    assert windows.shape == (0, W) and offsets.shape == (0,)


# --------------------------------------------------------------------------- SlidingWindow

def _push_in_random_chunks(signal: np.ndarray, audio: AudioParams, rng: np.random.Generator, max_chunk: int):
    sw = SlidingWindow(audio)
    got = []
    pos = 0
    while pos < signal.size:
        size = int(rng.integers(0, max_chunk + 1))  # zero-length chunks included
        chunk = signal[pos:pos + size]
        pos += chunk.size
        got += sw.push(chunk)
        # Memory bound: after a push only samples a future window may need are kept,
        # i.e. fewer than one window (so during a push at most window + chunk).
        assert sw._buffer.size < audio.window_samples
        assert sw._buffer.size <= audio.window_samples + chunk.size
        assert sw.samples_seen == pos
    return got


@pytest.mark.parametrize("seed", range(5))
def test_sliding_window_matches_cut_windows_regular_hops(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(W + 5 * H, W + 12 * H))
    signal = ramp(n)
    got = _push_in_random_chunks(signal, AUDIO, rng, max_chunk=int(1.3 * H))

    windows, offsets = cut_windows(signal, audio=AUDIO)
    regular = np.arange(0, n - W + 1, H)
    # cut_windows = regular hops + (maybe) one end-aligned window; the stream has only the regular ones.
    extra = 0 if (n - W) % H == 0 else 1
    assert len(windows) == len(regular) + extra
    assert len(got) == len(regular)
    for (start_s, window), ref_window, ref_offset in zip(got, windows, offsets):
        assert start_s == ref_offset
        assert window.dtype == np.float32 and window.shape == (W,)
        np.testing.assert_array_equal(window, ref_window)
    if extra:
        assert offsets[-1] == (n - W) / SR and offsets[-1] not in [s for s, _ in got]


@pytest.mark.parametrize("seed", range(20))
def test_sliding_window_small_params_any_chunking(seed):
    """Exhaustive-ish: tiny windows, chunks from 0 to 3 windows long."""
    rng = np.random.default_rng(100 + seed)
    w, h = SMALL.window_samples, SMALL.hop_samples
    n = int(rng.integers(0, 200))
    signal = ramp(n)
    got = _push_in_random_chunks(signal, SMALL, rng, max_chunk=3 * w)
    expected_starts = np.arange(0, n - w + 1, h) if n >= w else np.zeros(0, int)
    assert [s for s, _ in got] == [s / SMALL.sample_rate for s in expected_starts]
    for (_, window), s in zip(got, expected_starts):
        np.testing.assert_array_equal(window, np.arange(s, s + w, dtype=np.float32))


def test_sliding_window_one_big_chunk_gives_all_windows_at_once():
    n = W + 4 * H
    sw = SlidingWindow(AUDIO)
    out = sw.push(ramp(n))
    assert [s for s, _ in out] == [0.0, 0.5, 1.0, 1.5, 2.0]
    assert sw._buffer.size == W - H  # only what the next window (at 5*H) needs
    assert sw.push(np.zeros(0, np.float32)) == []
    # One more hop of samples completes exactly one more window.
    more = sw.push(np.arange(n, n + H, dtype=np.float32))
    assert len(more) == 1 and more[0][0] == 2.5
    np.testing.assert_array_equal(more[0][1], np.arange(5 * H, 5 * H + W, dtype=np.float32))


def test_sliding_window_returns_copies():
    """Windows handed out must not alias the internal buffer (later pushes must not change them)."""
    sw = SlidingWindow(AUDIO)
    (_, first), = sw.push(np.ones(W, np.float32))
    first_copy = first.copy()
    sw.push(np.full(3 * H, 7.0, np.float32))
    np.testing.assert_array_equal(first, first_copy)
    first[:] = -1
    (_, nxt), *_ = sw.push(np.full(H, 9.0, np.float32))
    assert np.all(nxt != -1)


def test_sliding_window_not_enough_samples_yet():
    sw = SlidingWindow(AUDIO)
    assert sw.push(np.zeros(W - 1, np.float32)) == []
    assert sw.samples_seen == W - 1
    out = sw.push(np.zeros(1, np.float32))
    assert len(out) == 1 and out[0][0] == 0.0
