"""Rendering a programme plan (``broadcast_programme``) to a 44.1 kHz WAV with sox and espeak-ng.

Place in ``tools/bench``: after the planner, before ``broadcast_chains``.
Every sound change is made by sox (``speed``, ``tempo -m``, ``pitch``,
resampling to 44.1 kHz) and every voice by espeak-ng, never by
``audiocopy.training.augment``: the models were trained with that code, and
the benchmark must not share its implementation. NumPy only places the
pieces on the programme's clock and multiplies them by gain envelopes
(fades, ducking, levels), nothing the models could have learned.

Alignment. sox keeps ``speed`` sample-exact; ``tempo`` and ``pitch`` shift
content by at most ~15 ms (measured on tone bursts), far below the
benchmark's 2 s resolution, so the planned times are the truth. Each piece
is cropped or padded to its exact planned length.

Levels. Broadcast practice: every piece of music is brought to one RMS
(``MUSIC_RMS_DBFS``), the presenter speaks at that level too, over an
intro the music is ducked by ``DUCK_DB``, and the finished programme is
peak-normalised to ``PEAK`` and written as 16-bit PCM.
"""
from __future__ import annotations

import datetime
import hashlib
import json
import logging
import math
import time
from pathlib import Path

import numpy as np

from .broadcast_programme import TALK_DELAY_S, Item, Plan
from .common import BenchError, read_json, rng_for, write_json
from .distortions import read_segment
from .external import Tools, run, speak

log = logging.getLogger(__name__)

RATE = 44100
MUSIC_RMS_DBFS = -20.0
DUCK_DB = -10.0
DUCK_RAMP_S = 0.3
PEAK = 0.89
#: Bump when rendering changes, so cached programmes are made again.
RENDER_VERSION = 1
#: The presenter: short radio lines, several espeak-ng voices.
PRESENTER_LINES = [
    "You are listening to audiocopy radio, all game music, all night long.",
    "That was a real favourite. Coming up next, something a little faster.",
    "Good evening, and welcome back to the late show.",
    "The weather tonight: cloudy, with a chance of rain after midnight.",
    "Stay with us, there is plenty more music on the way.",
    "Traffic news: the ring road is clear, and the bridge is open again.",
    "Here is one that our listeners keep asking for.",
    "Thanks for all your messages, keep them coming.",
    "It is twenty past the hour, and this is the evening mix.",
    "Next up, a track from one of the classics.",
    "If you just tuned in, welcome. Here is the music.",
    "We will be right back after this.",
]
PRESENTER_VOICES = ["en-us", "en-gb-x-rp", "en-us+m3", "en-gb+f2", "en-us+f4", "en-gb-scotland+m1"]


def presenter_clips(work: Path, tools: Tools, *, seed: int) -> list[np.ndarray]:
    """One espeak-ng clip per presenter line (voice, speed and pitch drawn from ``seed``), cached in ``WORK/presenter``.

    Returns mono float32 clips at ``RATE``. Raises ``BenchError`` when
    espeak-ng is missing or speaks nothing.
    """
    import soundfile as sf

    folder = Path(work) / "presenter"
    specs = []
    for i, text in enumerate(PRESENTER_LINES):
        rng = rng_for(seed, "presenter", i)
        specs.append({"text": text, "voice": PRESENTER_VOICES[int(rng.integers(len(PRESENTER_VOICES)))],
                      "words_per_minute": int(rng.integers(150, 186)), "pitch": int(rng.integers(30, 70))})
    index = {"seed": seed, "rate": RATE, "clips": specs}
    paths = [folder / f"clip{i:02d}.wav" for i in range(len(specs))]
    if read_json(folder / "pool.json") == index and all(p.is_file() for p in paths):
        return [sf.read(str(p), dtype="float32")[0] for p in paths]
    folder.mkdir(parents=True, exist_ok=True)
    clips = []
    for spec, path in zip(specs, paths):
        clip = speak(tools, spec["text"], voice=spec["voice"], words_per_minute=spec["words_per_minute"],
                     pitch=spec["pitch"], sample_rate=RATE)
        if clip.size < RATE // 2:
            raise BenchError(f"espeak-ng gave {clip.size} samples for voice {spec['voice']!r}: "
                             "is espeak-ng-data installed? (apt-get install -y espeak-ng)")
        clips.append(_at_rms(clip, MUSIC_RMS_DBFS))
        sf.write(str(path), clips[-1], RATE, subtype="FLOAT")
    write_json(folder / "pool.json", index)
    return clips


def _at_rms(x: np.ndarray, dbfs: float) -> np.ndarray:
    """``x`` scaled to an RMS of ``dbfs`` (dB full scale); silence stays silence."""
    rms = float(np.sqrt(np.mean(x.astype(np.float64) ** 2))) if x.size else 0.0
    return x if rms == 0 else (x * (10 ** (dbfs / 20) / rms)).astype(np.float32)


def _fit(x: np.ndarray, n: int) -> np.ndarray:
    return x[:n] if x.size >= n else np.concatenate([x, np.zeros(n - x.size, np.float32)])


def excerpt(tools: Tools, wav: str, item: Item) -> np.ndarray:
    """The item's music at ``RATE``: its excerpt of ``wav`` through its sox effect, exactly its planned length."""
    n = int(round((item.end_s - item.start_s) * RATE))
    x, rate = read_segment(wav, item.src_start_s, (item.end_s - item.start_s) * item.time_scale + 0.2)
    effects = {"none": [], "speed": ["speed", f"{item.value:g}"], "tempo": ["tempo", "-m", f"{item.value:g}"],
               "pitch": ["pitch", f"{100 * item.value:g}"]}[item.effect]
    raw = ["-t", "raw", "-e", "floating-point", "-b", "32", "-c", "1"]
    # Headroom: sox works in fixed point, and pitch/speed may raise peaks.
    peak = float(np.max(np.abs(x))) if x.size else 0.0
    x = x * (0.3 / peak) if peak > 0 else x
    out = run([tools.sox, "-V1", *raw, "-r", str(rate), "-", *raw, "-r", str(RATE), "-", *effects,
               "rate", "-v", str(RATE)], x.astype(np.float32).tobytes())
    y = np.frombuffer(out, dtype=np.float32)
    if y.size < n - RATE // 10:
        raise BenchError(f"sox gave {y.size / RATE:.2f} s for the {item.end_s - item.start_s:.2f} s excerpt of {wav}")
    return _at_rms(_fit(y, n), MUSIC_RMS_DBFS)


def fades(n: int, fade_in_s: float, fade_out_s: float) -> np.ndarray:
    """Equal-power gain envelope of ``n`` samples: sine fade-in, cosine fade-out.

    A crossfade's two pieces are then each at -3 dB at its midpoint, the boundary the truth records.
    """
    g = np.ones(n, np.float32)
    for seconds, head in ((fade_in_s, True), (fade_out_s, False)):
        k = min(n, int(round(seconds * RATE)))
        if k > 0:
            ramp = np.sin(0.5 * np.pi * (np.arange(k) + 0.5) / k).astype(np.float32)
            if head:
                g[:k] *= ramp
            else:
                g[n - k:] *= ramp[::-1]
    return g


def duck(n: int, start: int, stop: int) -> np.ndarray:
    """Gain envelope: ``DUCK_DB`` between samples ``start`` and ``stop``, with ``DUCK_RAMP_S`` ramps outside them."""
    g = np.ones(n, np.float32)
    low, k = 10 ** (DUCK_DB / 20), int(DUCK_RAMP_S * RATE)
    a, b = max(0, start - k), min(n, stop + k)
    ramp_in = np.linspace(1.0, low, max(start - a, 1), dtype=np.float32)
    ramp_out = np.linspace(low, 1.0, max(b - stop, 1), dtype=np.float32)
    g[a:start] = ramp_in[:start - a]
    g[start:stop] = low
    g[stop:b] = ramp_out[:b - stop]
    return g


def speech(clips: list[np.ndarray], clip: int, seconds: float) -> np.ndarray:
    """``seconds`` of presenter speech: clips in turn from ``clip``, 0.4 s apart, 20 ms fade at the cut."""
    n, pause = int(round(seconds * RATE)), np.zeros(int(0.4 * RATE), np.float32)
    parts, total, i = [], 0, clip
    while total < n:
        parts += [clips[i % len(clips)], pause]
        total += clips[i % len(clips)].size + pause.size
        i += 1
    y = np.concatenate(parts)[:n].copy()
    k = min(n, int(0.02 * RATE))
    y[n - k:] *= np.linspace(1, 0, k, dtype=np.float32)
    return y


def render(plan: Plan, wavs: dict[str, str], tools: Tools, clips: list[np.ndarray]) -> np.ndarray:
    """The programme as mono float32 at ``RATE`` (peak ``PEAK``). wavs: track id -> WAV path."""
    buf = np.zeros(int(math.ceil(plan.seconds * RATE)) + 1, np.float32)
    for it in plan.items:
        a = int(round(it.start_s * RATE))
        if it.kind == "talk":
            y = speech(clips, it.clip, it.end_s - it.start_s)
        else:
            if it.track not in wavs:
                raise BenchError(f"{plan.name}: track {it.track} is not in the corpus")
            y = excerpt(tools, wavs[it.track], it) * fades(int(round((it.end_s - it.start_s) * RATE)),
                                                           it.fade_in_s, it.fade_out_s)
            if it.talk_over_s:
                t0 = int(round((it.audible_start_s + TALK_DELAY_S - it.start_s) * RATE))
                talk = speech(clips, it.clip, it.talk_over_s)
                y = y * duck(y.size, t0, t0 + talk.size)
                y[t0:t0 + talk.size] += talk
        y = y[:buf.size - a]
        buf[a:a + y.size] += y
    peak = float(np.max(np.abs(buf)))
    return buf if peak == 0 else buf * np.float32(PEAK / peak)


def render_key(plan: Plan, tools: Tools) -> str:
    """What a rendered programme depends on: the plan, the renderer and the tools' versions (SHA-256)."""
    text = json.dumps({"plan": plan.to_json(), "version": RENDER_VERSION, "rate": RATE, "tools": tools.versions},
                      sort_keys=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def render_cached(plan: Plan, folder: Path, wavs: dict[str, str], tools: Tools, clips: list[np.ndarray]) -> Path:
    """``FOLDER/clean.wav`` of the plan (made unless this plan was rendered there); ``FOLDER/plan.json``: its truth."""
    import soundfile as sf

    folder.mkdir(parents=True, exist_ok=True)
    wav, meta = folder / "clean.wav", folder / "render.json"
    key = render_key(plan, tools)
    if wav.is_file() and read_json(meta, {}).get("key") == key:
        return wav
    write_json(folder / "plan.json", plan.to_json())
    t0 = time.perf_counter()
    y = render(plan, wavs, tools, clips)
    tmp = folder / "clean.part.wav"
    sf.write(str(tmp), y, RATE, subtype="PCM_16")
    tmp.replace(wav)
    write_json(meta, {"key": key, "rate": RATE, "seconds": plan.seconds, "wall_s": round(time.perf_counter() - t0, 1),
                      "made": datetime.date.today().isoformat()})
    log.info("rendered %s: %.1f min", plan.name, plan.seconds / 60)
    return wav
