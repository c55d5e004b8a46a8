"""The tests' live radio (``live_radio.LiveRadio``): what a listener hears depends on when it tunes in.

Default suite (loopback only; ffmpeg, which the server needs anyway, encodes
and decodes). A programme of two tones, 440 Hz then 880 Hz: the first
listener hears 440 Hz, one tuning in during the second tone hears 880 Hz,
then silence for ever; the bytes come at the pace of the clock, not at
once. Both formats; bad arguments and unknown paths are refused.
"""
from __future__ import annotations

import subprocess
import time
import urllib.error
import urllib.request

import numpy as np
import pytest
from live_radio import RATE, LiveRadio, Segment


def _tone(hz: float, seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return (0.5 * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def _listen(url: str, seconds: float) -> bytes:
    data, t0 = b"", time.monotonic()
    with urllib.request.urlopen(url, timeout=5) as response:
        while time.monotonic() - t0 < seconds:
            data += response.read1(65536)
    return data


def _decode(data: bytes) -> np.ndarray:
    done = subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "quiet", "-i", "pipe:0", "-ac", "1", "-ar", str(RATE),
                           "-f", "s16le", "pipe:1"], input=data, capture_output=True, timeout=60, check=False)
    return np.frombuffer(done.stdout, "<i2").astype(np.float32) / 32768


def _pitch(audio: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(audio * np.hanning(len(audio))))
    return float(np.fft.rfftfreq(len(audio), 1 / RATE)[spectrum.argmax()])


@pytest.mark.parametrize("fmt", ["mp3", "wav"])
def test_a_listener_hears_the_programme_from_when_it_tunes_in_at_the_clocks_pace(fmt):
    programme = [Segment("low", _tone(440, 1.5), "low"), Segment("high", _tone(880, 1.5))]
    with LiveRadio(programme, format=fmt) as radio:
        assert radio.url.endswith(f"/live.{fmt}") and radio.now_s() == 0.0
        assert [(s.label, s.track, s.start_s, s.end_s) for s in radio.slots] == [
            ("low", "low", 0.0, 1.5), ("high", None, 1.5, 3.0)]
        first = _decode(_listen(radio.url, 0.8))
        time.sleep(1.0)  # the programme runs on without listeners
        second = _decode(_listen(radio.url, 2.5))  # tunes in at ~1.8 s: the end of "high", then silence
        assert len(radio.listeners) == 2 and 1.6 < radio.listeners[1] < 2.4
    assert 0.4 < len(first) / RATE < 1.3  # paced: about what the clock allowed, not the whole programme
    assert _pitch(first[: RATE // 4]) == pytest.approx(440, abs=15)
    assert _pitch(second[: RATE // 4]) == pytest.approx(880, abs=15)
    tail = second[int(1.6 * RATE):]  # past the programme's end (~1.2 s after tuning in)
    assert len(tail) > RATE // 4 and np.sqrt(np.mean(tail ** 2)) < 0.01


def test_bad_arguments_and_unknown_paths_are_refused():
    with pytest.raises(ValueError, match="mp3 or wav"):
        LiveRadio([Segment("x", _tone(440, 0.5))], format="ogg")
    with pytest.raises(ValueError, match="at least one"):
        LiveRadio([])
    with LiveRadio([Segment("x", _tone(440, 0.5))], format="wav") as radio:
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(radio.url.replace("live.wav", "other.wav"), timeout=5)
        assert info.value.code == 404 and radio.on_air_at is None  # a wrong path does not start the clock
