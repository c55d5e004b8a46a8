"""The two acoustic chains a programme goes through before it is streamed: broadcast, and room and microphone.

Place in ``tools/bench``: after ``broadcast_render``, before the streaming.
Each chain reads ``clean.wav`` (44.1 kHz) of a programme and writes the
WAV the server is fed; its parameters are drawn per programme from the run
seed (``rng_for(seed, "chain", chain, programme)``) and recorded.

* **broadcast** (what a radio station sends and a stream listener gets):
  loudness compression (sox ``compand``: attack 2–10 ms, decay 0.1–0.5 s,
  threshold −30…−20 dB, ratio 3–6, made up to full scale), then an MP3
  round trip at 128 kbit/s (ffmpeg/libmp3lame, written to a real file so
  the LAME header carries the encoder delay and the decoder removes it).
  Out: 44.1 kHz.
* **room** (a loudspeaker in a room heard by a laptop or phone microphone,
  captured by a browser): small speaker (sox ``highpass`` 150–400 Hz and a
  resonance, ``equalizer`` +4…+10 dB at 0.6–3 kHz), room (sox ``reverb``:
  reverberance 30–80 %, HF damping 20–80 %, room scale 30–100 %, pre-delay
  0–40 ms, dry sound kept), room noise (pink or brown noise at 10–20 dB SNR
  and babble of 3–6 espeak-ng voices through the same room at 10–20 dB
  SNR, both against the music's mean power), band-limited microphone (sox
  ``sinc`` 100–200 Hz to 6–7.5 kHz and a presence peak of +3…+6 dB at
  2–5 kHz), AGC-like compression (``compand``), resampled to 48 kHz and
  normalised to -1 dBFS (sox ``gain -n``: a compressor with make-up gain
  clips on its attacks, so it is set 9 dB low and the level restored).

Delay. Every step keeps the direct sound where it was (sox's ``sinc`` and
``rate`` compensate their filters' delay, the reverb keeps the dry signal,
the MP3 decoder removes the encoder delay), and ``measure_lag`` checks it:
the chain's output is cross-correlated with the clean programme at three
places; a lag the size of a window would be subtracted before streaming
(``align``), and the measured lags are reported.

Sizes. A 40-minute programme is ~106 M samples; the chains go file to file
through sox where they can, and NumPy works on the noise and babble in
blocks, so memory stays near two copies of the programme.
"""
from __future__ import annotations

import datetime
import logging
import time
from pathlib import Path

import numpy as np

from .common import BenchError, read_json, rng_for, write_json
from .external import Tools, run

log = logging.getLogger(__name__)

CHAINS = ("broadcast", "room")
OUT_RATE = {"broadcast": 44100, "room": 48000}
MP3_KBPS = 128
#: Bump when a chain changes, so cached outputs are made again.
CHAIN_VERSION = 2
#: Blocks NumPy mixes in (samples).
BLOCK = 1 << 20


def draw_params(chain: str, seed: int, programme: str) -> dict:
    """The random parameters of one chain for one programme (units in the names: Hz, %, ms, dB, s)."""
    rng = rng_for(seed, "chain", chain, programme)
    u = lambda lo, hi, d=2: round(float(rng.uniform(lo, hi)), d)  # noqa: E731
    if chain == "broadcast":
        return {"attack_s": u(0.002, 0.01, 4), "decay_s": u(0.1, 0.5, 3), "threshold_db": u(-30, -20, 1),
                "ratio": u(3, 6), "mp3_kbps": MP3_KBPS}
    if chain != "room":
        raise BenchError(f"unknown chain {chain!r} (known: {', '.join(CHAINS)})")
    return {"speaker_highpass_hz": u(150, 400, 1), "resonance_hz": u(600, 3000, 1), "resonance_q": u(1, 4),
            "resonance_db": u(4, 10), "reverberance": u(30, 80, 1), "hf_damping": u(20, 80, 1),
            "room_scale": u(30, 100, 1), "pre_delay_ms": u(0, 40, 1),
            "noise": "brown" if rng.random() < 0.5 else "pink", "noise_snr_db": u(10, 20),
            "voices": int(rng.integers(3, 7)), "babble_snr_db": u(10, 20),
            "mic_low_hz": u(100, 200, 1), "mic_high_hz": u(6000, 7500, 1), "presence_hz": u(2000, 5000, 1),
            "presence_db": u(3, 6), "attack_s": u(0.005, 0.05, 4), "decay_s": u(0.2, 1.0, 3),
            "threshold_db": u(-40, -25, 1), "ratio": u(2, 4), "noise_seed": int(rng.integers(1 << 31))}


def _compand(p: dict, headroom_db: float) -> list[str]:
    t, r = p["threshold_db"], p["ratio"]
    # Flat below the threshold, 1:ratio above it, then made up so that a full-scale input comes out
    # ``headroom_db`` under full scale (attacks overshoot, and sox clips rather than limits).
    makeup = -t * (1 - 1 / r) - headroom_db
    return ["compand", f"{p['attack_s']:g},{p['decay_s']:g}", f"6:-90,-90,{t:g},{t:g},0,{t * (1 - 1 / r):.2f}",
            f"{makeup:.2f}"]


def _reverb(p: dict) -> list[str]:
    return ["reverb", f"{p['reverberance']:g}", f"{p['hf_damping']:g}", f"{p['room_scale']:g}", "100",
            f"{p['pre_delay_ms']:g}"]


def broadcast_chain(tools: Tools, clean: Path, out: Path, p: dict) -> None:
    """Compression then an MP3 round trip (module docstring); ``out`` is a 16-bit WAV at 44.1 kHz."""
    squeezed, mp3 = out.with_suffix(".compand.wav"), out.with_suffix(".mp3")
    # -D: no dither, so the same input gives the same file.
    run([tools.sox, "-V1", "-D", str(clean), "-b", "16", str(squeezed), "vol", "0.5", *_compand(p, 1.0)])
    if not tools.ffmpeg:
        raise BenchError("the broadcast chain needs ffmpeg with libmp3lame (apt-get install -y ffmpeg)")
    run([tools.ffmpeg, "-v", "error", "-y", "-i", str(squeezed), "-c:a", "libmp3lame", "-b:a", f"{p['mp3_kbps']}k",
         str(mp3)])
    run([tools.ffmpeg, "-v", "error", "-y", "-i", str(mp3), "-ac", "1", "-ar", "44100", "-c:a", "pcm_s16le",
         str(out)])
    squeezed.unlink()


def _noise_blocks(n: int, colour: str, seed: int):
    """Pink (-3 dB/octave) or brown (-6 dB/octave) noise in blocks of ``BLOCK``, continuous across blocks."""
    from scipy.signal import lfilter, lfilter_zi

    if colour == "pink":  # Paul Kellet's economy pink filter
        b, a = [0.049922035, -0.095993537, 0.050612699, -0.004408786], [1, -2.494956002, 2.017265875, -0.522189400]
    else:  # a leaky integrator: brown noise above ~3 Hz
        b, a = [1.0], [1.0, -0.9995]
    rng = np.random.default_rng(seed)
    zi = lfilter_zi(b, a) * 0.0
    for start in range(0, n, BLOCK):
        y, zi = lfilter(b, a, rng.standard_normal(min(BLOCK, n - start)), zi=zi)
        yield y.astype(np.float32)


def _babble(n: int, rate: int, clips, voices: int, seed: int) -> np.ndarray:
    """``voices`` talkers at once, each a run of random clips with 0.2-2 s pauses, at 0 to -6 dB each."""
    rng = np.random.default_rng(seed)
    out = np.zeros(n, np.float32)
    for _ in range(voices):
        gain, pos = 10 ** (rng.uniform(-6, 0) / 20), -int(rng.integers(rate * 5))
        while pos < n:
            clip = clips[int(rng.integers(len(clips)))]
            rms = float(np.sqrt(np.mean(clip.astype(np.float64) ** 2))) or 1.0
            a, b = max(pos, 0), min(pos + clip.size, n)
            if b > a:
                out[a:b] += clip[a - pos:b - pos] * np.float32(gain / rms)
            pos += clip.size + int(rng.uniform(0.2, 2.0) * rate)
    return out


def _power(x: np.ndarray) -> float:
    return float(np.mean(np.square(x, dtype=np.float64))) if x.size else 0.0


def room_chain(tools: Tools, clean: Path, out: Path, p: dict, clips) -> None:
    """Speaker, room, noise and babble, microphone, AGC, 48 kHz (module docstring); ``out`` is a 16-bit WAV."""
    import soundfile as sf

    tmp = [out.with_suffix(f".{k}.wav") for k in ("room", "babble", "babble-room", "mixed")]
    rate = sf.info(str(clean)).samplerate
    run([tools.sox, "-V1", str(clean), "-e", "floating-point", "-b", "32", str(tmp[0]), "vol", "0.3",
         "highpass", f"{p['speaker_highpass_hz']:g}", "equalizer", f"{p['resonance_hz']:g}",
         f"{p['resonance_q']:g}q", f"{p['resonance_db']:g}", *_reverb(p)])
    music, _ = sf.read(str(tmp[0]), dtype="float32")
    babble = _babble(music.size, rate, clips, p["voices"], p["noise_seed"])
    sf.write(str(tmp[1]), babble * np.float32(0.3 / (np.max(np.abs(babble)) or 1.0)), rate, subtype="FLOAT")
    del babble
    run([tools.sox, "-V1", str(tmp[1]), "-e", "floating-point", "-b", "32", str(tmp[2]), *_reverb(p)])
    talk = np.zeros(music.size, np.float32)
    wet, _ = sf.read(str(tmp[2]), dtype="float32")
    talk[:min(wet.size, talk.size)] = wet[:talk.size]
    del wet
    p_music = _power(music)
    noise = np.concatenate(list(_noise_blocks(music.size, p["noise"], p["noise_seed"] + 1)))
    music += noise * np.float32(np.sqrt(p_music / (_power(noise) * 10 ** (p["noise_snr_db"] / 10))))
    del noise
    if _power(talk) > 0:
        music += talk * np.float32(np.sqrt(p_music / (_power(talk) * 10 ** (p["babble_snr_db"] / 10))))
    del talk
    music *= np.float32(0.3 / (np.max(np.abs(music)) or 1.0))
    sf.write(str(tmp[3]), music, rate, subtype="FLOAT")
    del music
    run([tools.sox, "-V1", "-D", str(tmp[3]), "-b", "16", "-r", str(OUT_RATE["room"]), str(out),
         "sinc", f"{p['mic_low_hz']:g}-{p['mic_high_hz']:g}", "equalizer", f"{p['presence_hz']:g}", "1.5q",
         f"{p['presence_db']:g}", *_compand(p, 9.0), "rate", "-v", str(OUT_RATE["room"]), "gain", "-n", "-1"])
    for path in tmp:
        path.unlink(missing_ok=True)


def measure_lag(clean: Path, chained: Path, *, places=(0.25, 0.5, 0.75), seconds: float = 30.0,
                max_lag_s: float = 0.5) -> list[float]:
    """Lag (s, positive = the chain is late) of ``chained`` against ``clean`` at several places of the programme.

    Both are read at the given fractions of their length, resampled to
    8 kHz, and cross-correlated (FFT) within ±``max_lag_s``; the lag is the
    peak's position. A chain with a reverb correlates on its direct sound.
    """
    import soundfile as sf
    import soxr

    rate8 = 8000
    info = sf.info(str(clean))
    lags = []
    for frac in places:
        t0 = frac * info.duration
        segs = []
        for path in (clean, chained):
            r = sf.info(str(path)).samplerate
            x, _ = sf.read(str(path), start=int(t0 * r), frames=int(seconds * r), dtype="float32", always_2d=True)
            x = soxr.resample(x.mean(axis=1), r, rate8)
            segs.append((x - x.mean()) / (x.std() or 1.0))
        n = min(s.size for s in segs)
        a, b = segs[0][:n], segs[1][:n]
        size = 1 << int(np.ceil(np.log2(2 * n)))
        xc = np.fft.irfft(np.fft.rfft(b, size) * np.conj(np.fft.rfft(a, size)), size)
        k = int(max_lag_s * rate8)
        window = np.concatenate([xc[-k:], xc[:k + 1]])  # lags -k..k
        lags.append(round((int(np.argmax(window)) - k) / rate8, 4))
    return lags


def apply_chain(chain: str, tools: Tools, clean: Path, folder: Path, *, seed: int, programme: str,
                clips) -> dict:
    """Make ``FOLDER/<chain>.wav`` from ``clean`` (cached by its parameters and the clean file), with its lag.

    Returns {"wav", "rate", "params", "lags_s"}. Raises ``BenchError`` if the
    chain shifts the music by more than 0.1 s (the truth would no longer hold).
    """
    out, meta = folder / f"{chain}.wav", folder / f"{chain}.json"
    p = draw_params(chain, seed, programme)
    key = {"version": CHAIN_VERSION, "params": p, "clean": read_json(folder / "render.json", {}).get("key"),
           "tools": tools.versions}
    cached = read_json(meta, {})
    if out.is_file() and cached.get("key") == key:
        return cached["result"]
    t0 = time.perf_counter()
    if chain == "broadcast":
        broadcast_chain(tools, clean, out, p)
    else:
        room_chain(tools, clean, out, p, clips)
    lags = measure_lag(clean, out)
    lag = float(np.median(lags))
    if abs(lag) > 0.1:
        raise BenchError(f"the {chain} chain of {programme} shifts the music by {lag:+.3f} s ({lags}); "
                         "the truth times would not hold")
    result = {"wav": str(out), "rate": OUT_RATE[chain], "params": p, "lags_s": lags,
              "wall_s": round(time.perf_counter() - t0, 1), "made": datetime.date.today().isoformat()}
    write_json(meta, {"key": key, "result": result})
    log.info("%s chain of %s: lags %s s", chain, programme, lags)
    return result
