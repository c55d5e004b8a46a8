"""Tests for ``audiocopy.signal.stream_resampler`` and ``SlidingWindow.cut_with``: live windows without waiting.

Synthetic signals with known answers: the preview of the samples soxr
still holds back equals soxr's own samples when they come (to the filter
difference), a tone that would alias into a feature band is gone from a
preview, ``push`` stays soxr's exact output however the input is split, a
window of a 48 kHz stream of 100 ms frames is complete with the frame that
holds its end, and a window completed by a preview has the band levels of
the exact one.
"""
from __future__ import annotations

import numpy as np
import pytest

from audiocopy.config import AudioParams, FeatureParams
from audiocopy.signal.features import log_spectrogram
from audiocopy.signal.stream_resampler import StreamResampler
from audiocopy.signal.windows import SlidingWindow

RATES = [(48000, 16000), (44100, 16000), (32000, 16000), (22050, 16000), (8000, 16000)]
AUDIO = AudioParams()


def tone(freq_hz: float, n: int, rate: int, amp: float = 0.5) -> np.ndarray:
    return (amp * np.sin(2 * np.pi * freq_hz * np.arange(n) / rate)).astype(np.float32)


def rms(y: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(y, dtype=np.float64))))


def music_like(rate: int, seconds: float, seed: int = 0) -> np.ndarray:
    """Partials of 110 Hz up to 7 kHz (3.4 kHz at 8 kHz, as telephone audio) with a slow tremolo, a little noise."""
    t = np.arange(int(seconds * rate)) / rate
    top = 7000 if rate > 16000 else 3400
    x = sum(0.3 / k * np.sin(2 * np.pi * 110 * k * t) * (1 + 0.5 * np.sin(2 * np.pi * 0.7 * k * t))
            for k in range(1, top // 110 + 1))
    return (x + 0.01 * np.random.default_rng(seed).standard_normal(t.size)).astype(np.float32)


@pytest.mark.parametrize("rate_in,rate_out", RATES)
def test_preview_equals_the_samples_soxr_gives_later(rate_in, rate_out):
    x = music_like(rate_in, 2.0) * 0.2
    r = StreamResampler(rate_in, rate_out)
    frame = rate_in // 10
    for k in range(15):  # 1.5 s in 100 ms frames
        r.push(x[k * frame:(k + 1) * frame])
    n_out = r.n_out
    owed = (15 * frame - 1) * r.up // r.down + 1 - n_out  # outputs whose centre is in, not yet given
    assert owed > 0  # soxr holds samples back: the case the preview exists for
    early = r.preview(owed)
    later = r.push(x[15 * frame:], last=True)[:owed]
    # Equal but for the filters' difference, and the last 1.5 ms, whose future input was taken as silence.
    edge = int(np.ceil(r.half * rate_out / rate_in)) + 1
    assert np.max(np.abs(early[:-edge] - later[:-edge])) < 6e-3 * np.max(np.abs(later))  # 2.9e-3 to 4.7e-3 measured


@pytest.mark.parametrize("rate_in", [48000, 44100])
def test_preview_keeps_the_top_feature_band_and_removes_what_would_alias_into_one(rate_in):
    def previewed(freq_hz):
        r = StreamResampler(rate_in, 16000)
        r.push(tone(freq_hz, rate_in, rate_in))
        owed = (r.n_in - 1) * r.up // r.down + 1 - r.n_out
        assert owed > 200
        return r.preview(owed)  # what soxr still holds back of 1 s

    # 7.2 kHz lies in the highest feature band (they end at 7.25 kHz): full level.
    assert rms(previewed(7200.0)[:-40]) == pytest.approx(0.5 / np.sqrt(2), rel=0.005)
    # 9 kHz would fold to 7 kHz, inside a band: at least 70 dB down.
    assert rms(previewed(9000.0)[:-40]) < 10 ** (-70 / 20) * 0.5 / np.sqrt(2)


@pytest.mark.parametrize("rate_in,rate_out", RATES)
def test_push_is_soxr_exactly_however_the_input_is_split(rate_in, rate_out):
    import soxr

    rng = np.random.default_rng(3)
    x = rng.standard_normal(rate_in).astype(np.float32) * 0.1
    r = StreamResampler(rate_in, rate_out)
    cuts = np.sort(rng.integers(0, x.size, 40))
    parts = [r.push(p) for p in np.split(x, cuts)]
    parts.append(r.push(np.zeros(0, np.float32), last=True))
    whole = soxr.ResampleStream(rate_in, rate_out, 1, dtype="float32", quality="HQ").resample_chunk(x, last=True)
    np.testing.assert_array_equal(np.concatenate(parts), whole)


def test_preview_refuses_what_has_not_arrived_or_is_no_longer_kept():
    r = StreamResampler(48000, 16000)
    assert r.preview(1) is None  # nothing in yet
    r.push(np.zeros(4800, np.float32))
    assert r.preview(0).size == 0
    assert r.preview(1600 - r.n_out) is not None  # up to the newest sample's own output
    assert r.preview(1601 - r.n_out) is None  # one past it: its centre is not in yet
    r.push(np.zeros(48000, np.float32))  # 1 s more: the history keeps the last 0.25 s only
    r.n_out = 0  # pretend soxr owed the whole stream
    assert r.preview(10) is None


def test_bad_rates_and_pushing_after_the_end_are_refused():
    with pytest.raises(ValueError, match="positive"):
        StreamResampler(0, 16000)
    with pytest.raises(ValueError, match="positive"):
        StreamResampler(48000, -1)
    r = StreamResampler(48000, 16000)
    r.push(np.zeros(10, np.float32), last=True)
    with pytest.raises(ValueError, match="ended"):
        r.push(np.zeros(10, np.float32))


def cut_live(x: np.ndarray, rate: int, *, preview: bool) -> list[tuple[float, np.ndarray, int]]:
    """Windows of a stream sent in 100 ms frames: (start_s, window, frames in when it was cut)."""
    r, sw, out = StreamResampler(rate, AUDIO.sample_rate), SlidingWindow(AUDIO), []
    frame = rate // 10
    for k in range(x.size // frame):
        got = sw.push(r.push(x[k * frame:(k + 1) * frame]))
        if preview:
            tail = r.preview(sw.missing())
            got += sw.cut_with(tail) if tail is not None else []
        out += [(s, w, k + 1) for s, w in got]
    return out


@pytest.mark.parametrize("rate", [48000, 44100])
def test_a_window_is_cut_with_the_frame_that_holds_its_end_and_has_the_exact_windows_band_levels(rate):
    x = music_like(rate, 4.0, seed=1) * 0.3
    early, late = cut_live(x, rate, preview=True), cut_live(x, rate, preview=False)
    # Window 0-2.5 s ends on frame 25's edge: cut with frame 25, where soxr alone needed frame 26
    # (and the last one, ending with the stream's last frame, waited for a frame that never came).
    assert [(s, k) for s, _, k in early] == [(0.0, 25), (0.5, 30), (1.0, 35), (1.5, 40)]
    assert [(s, k) for s, _, k in late] == [(0.0, 26), (0.5, 31), (1.0, 36)]
    for (_, a, _), (_, b, _) in zip(early, late):
        assert a.shape == b.shape == (AUDIO.window_samples,)
        fa, fb = (log_spectrogram(w[None], audio=AUDIO, params=FeatureParams())[0] for w in (a, b))
        assert np.max(np.abs(fa - fb)) < 2e-3


def test_cut_with_needs_enough_tail_and_never_cuts_a_window_twice():
    sw = SlidingWindow(AUDIO)
    assert sw.push(np.ones(AUDIO.window_samples - 10, np.float32)) == []
    assert sw.missing() == 10
    assert sw.cut_with(np.ones(9, np.float32)) == []  # one short: nothing
    (start, window), = sw.cut_with(np.full(10, 2.0, np.float32))
    assert start == 0.0 and window.size == AUDIO.window_samples and np.all(window[-10:] == 2.0)
    # The real samples arrive: the window already cut is not cut again, the next one comes at its time.
    assert sw.push(np.ones(10, np.float32)) == []
    assert sw.missing() == AUDIO.hop_samples
    assert [s for s, _ in sw.push(np.ones(AUDIO.hop_samples, np.float32))] == [0.5]
