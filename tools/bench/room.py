"""Speech and the room chain: music heard through a small speaker in a room by a band-limited mic.

Place in ``tools/bench``: the "speech" and "room" conditions of
``distortions.distort``. Everything acoustic is made by sox and espeak-ng;
NumPy only mixes at exact SNRs and draws the parameters, from the query's
own generator, so every query has its own room and the same seed gives the
same room on any machine.

The speech pool. espeak-ng speaks ``POOL_SIZE`` clips (voices, speeds and
pitches drawn from the run seed; several languages' voices reading English
sentences) once per work folder, cached in ``WORK/speech/``. A speech query
takes one clip over the music; a room takes several at once as babble.

The room chain, in the order sound goes through it:

1. small speaker: ``highpass`` at 150-400 Hz and one resonance
   (``equalizer`` +4..+10 dB at 0.6-3 kHz, Q 1-4);
2. room: sox ``reverb`` with reverberance 30-90 %, HF damping 20-80 %,
   room scale 30-100 %, pre-delay 0-40 ms (fed ``PREROLL_SECONDS`` of music
   before the fragment so it already rings);
3. room noise at the mic: pink or brown noise at 15-25 dB SNR plus babble
   of 3-6 espeak-ng voices at 8-15 dB SNR, the babble through the same room;
4. band-limited mic: ``sinc`` 100-250 Hz to 4-7 kHz;
5. compression/AGC: sox ``compand`` with attack 5-50 ms, decay 0.1-1 s,
   threshold -40..-20 dB and ratio 2-6.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .common import BenchError, read_json, rng_for, write_json
from .distortions import PREROLL_SECONDS, SOX_PEAK, coloured_noise, mix_at_snr, peak_normalise
from .external import Tools, sox_effect, speak

log = logging.getLogger(__name__)

POOL_SIZE = 24
#: espeak-ng voices (Debian's espeak-ng-data) and variants (female/male timbres).
VOICES = ["en-us", "en-gb-x-rp", "en-gb-scotland", "de", "es", "fr-fr", "it", "nl", "pt", "sv", "pl", "cs"]
VARIANTS = ["", "+f1", "+f2", "+f3", "+f4", "+m1", "+m3", "+m5"]
SENTENCES = [
    "Could you pass me the salt and the pepper, please?",
    "The train to the city leaves at a quarter past seven.",
    "I think we should paint the kitchen a lighter colour this spring.",
    "Did you see the match last night? It went to extra time.",
    "My sister is moving to a flat near the harbour next month.",
    "We ran out of milk again, so I will stop at the shop on the way home.",
    "The meeting has been moved to Thursday afternoon in the small room.",
    "He told me the story of how the old bridge was built.",
    "Turn left at the bakery and the museum is on your right.",
    "The children were playing in the garden until it started to rain.",
    "Remember to water the plants while we are away for the weekend.",
    "This soup needs a little more salt and a squeeze of lemon.",
    "Honestly, the film was much longer than it needed to be.",
    "They are building a new library where the car park used to be.",
]


@dataclass(frozen=True)
class SpeechPool:
    """Spoken clips at the corpus rate: ``clips[i]`` (n_i,) float32, ``meta[i]`` how it was spoken."""

    clips: tuple
    meta: tuple
    rate: int


def _clip_spec(seed: int, i: int) -> dict:
    rng = rng_for(seed, "speech", i)
    first = int(rng.integers(len(SENTENCES)))
    text = " ".join(SENTENCES[(first + j) % len(SENTENCES)] for j in range(3))
    return {"voice": VOICES[int(rng.integers(len(VOICES)))] + VARIANTS[int(rng.integers(len(VARIANTS)))],
            "words_per_minute": int(rng.integers(140, 191)), "pitch": int(rng.integers(25, 76)), "text": text}


def speech_pool(work: Path, tools: Tools, *, seed: int, rate: int) -> SpeechPool:
    """The pool of ``POOL_SIZE`` spoken clips, made with espeak-ng once and cached under ``WORK/speech``."""
    import soundfile as sf

    from audiocopy.signal.audio import write_wav

    folder = Path(work) / "speech"
    specs = [_clip_spec(seed, i) for i in range(POOL_SIZE)]
    index = {"seed": seed, "rate": rate, "clips": specs}
    clips = []
    if read_json(folder / "pool.json") == index and all((folder / f"clip{i:02d}.wav").is_file()
                                                        for i in range(POOL_SIZE)):
        clips = [sf.read(str(folder / f"clip{i:02d}.wav"), dtype="float32")[0] for i in range(POOL_SIZE)]
    else:
        folder.mkdir(parents=True, exist_ok=True)
        for i, spec in enumerate(specs):
            clip = speak(tools, spec["text"], voice=spec["voice"], words_per_minute=spec["words_per_minute"],
                         pitch=spec["pitch"], sample_rate=rate)
            if clip.size < rate:
                raise BenchError(f"espeak-ng gave {clip.size} samples for voice {spec['voice']!r}: "
                                 "is espeak-ng-data installed?")
            clips.append(peak_normalise(clip, 0.5))
            write_wav(folder / f"clip{i:02d}.wav", clips[-1], rate)
        write_json(folder / "pool.json", index)
        log.info("speech pool: %d clips in %s", POOL_SIZE, folder)
    return SpeechPool(tuple(clips), tuple(specs), rate)


def speech_segment(pool: SpeechPool, n: int, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """``n`` samples of one clip from a random point, looping with a short pause; (segment, {"clip", "start"})."""
    i = int(rng.integers(len(pool.clips)))
    clip = np.concatenate([pool.clips[i], np.zeros(int(0.3 * pool.rate), np.float32)])
    start = int(rng.integers(clip.size))
    reps = -(-(start + n) // clip.size)
    return np.tile(clip, reps)[start:start + n], {"clip": i, "start": start}


def speech_over(x: np.ndarray, rate: int, rng: np.random.Generator, pool: SpeechPool, snr_db: float):
    """Music with one speaker over it at ``snr_db`` (music/speech mean power); (signal, params)."""
    seg, where = speech_segment(pool, x.size, rng)
    return mix_at_snr(x, seg, snr_db), {"speech": where}


def draw_room(rng: np.random.Generator) -> dict:
    """The random parameters of one query's room chain (module docstring; Hz, %, ms, dB, s)."""
    u = rng.uniform
    return {
        "speaker_highpass_hz": round(u(150, 400), 1), "resonance_hz": round(u(600, 3000), 1),
        "resonance_q": round(u(1, 4), 2), "resonance_db": round(u(4, 10), 2),
        "reverberance": round(u(30, 90), 1), "hf_damping": round(u(20, 80), 1),
        "room_scale": round(u(30, 100), 1), "pre_delay_ms": round(u(0, 40), 1),
        "noise": "brown" if rng.random() < 0.5 else "pink", "noise_snr_db": round(u(15, 25), 2),
        "voices": int(rng.integers(3, 7)), "babble_snr_db": round(u(8, 15), 2),
        "mic_low_hz": round(u(100, 250), 1), "mic_high_hz": round(u(4000, 7000), 1),
        "attack_s": round(u(0.005, 0.05), 4), "decay_s": round(u(0.1, 1.0), 3),
        "threshold_db": round(u(-40, -20), 1), "ratio": round(u(2, 6), 2),
    }


def _reverb(p: dict) -> list[str]:
    return ["reverb", f"{p['reverberance']:g}", f"{p['hf_damping']:g}", f"{p['room_scale']:g}", "100",
            f"{p['pre_delay_ms']:g}"]


def _compand(p: dict) -> list[str]:
    t, r = p["threshold_db"], p["ratio"]
    curve = f"6:-90,-90,{t:g},{t:g},0,{t * (1 - 1 / r):.2f}"  # flat below the threshold, 1:ratio above
    return ["compand", f"{p['attack_s']:g},{p['decay_s']:g}", curve]


def babble(n: int, rate: int, rng: np.random.Generator, pool: SpeechPool, voices: int) -> np.ndarray:
    """Several speakers at once: ``voices`` clips from random points, each at a random level (0 to -6 dB)."""
    out = np.zeros(n, np.float32)
    for _ in range(voices):
        seg, _ = speech_segment(pool, n, rng)
        rms = float(np.sqrt(np.mean(seg.astype(np.float64) ** 2))) or 1.0
        out += (seg / rms * 10 ** (rng.uniform(-6, 0) / 20)).astype(np.float32)
    return out


def room_chain(x: np.ndarray, rate: int, rng: np.random.Generator, tools: Tools, pool: SpeechPool):
    """The room chain of the module docstring on a fragment with ``PREROLL_SECONDS`` before it; (signal, params).

    x: (n,) float32 at ``rate`` with peak ``SOX_PEAK``. The pre-roll is cut
    after the compressor (its gain has a memory too).
    """
    p = draw_room(rng)
    y = sox_effect(tools, x, rate, ["highpass", f"{p['speaker_highpass_hz']:g}", "equalizer",
                                    f"{p['resonance_hz']:g}", f"{p['resonance_q']:g}q",
                                    f"{p['resonance_db']:g}", *_reverb(p)])
    y = y[:x.size] if y.size >= x.size else np.pad(y, (0, x.size - y.size))
    noise = coloured_noise(y.size, rng, 2.0 if p["noise"] == "brown" else 1.0)
    talk = babble(y.size, rate, rng, pool, p["voices"])
    talk = sox_effect(tools, peak_normalise(talk, SOX_PEAK), rate, _reverb(p))[:y.size]
    talk = np.pad(talk, (0, y.size - talk.size))
    mixed = mix_at_snr(y, noise, p["noise_snr_db"])
    mixed = mixed + (mix_at_snr(y, talk, p["babble_snr_db"]) - y)  # both SNRs against the music alone
    mixed = sox_effect(tools, peak_normalise(mixed, SOX_PEAK), rate,
                       ["sinc", f"{p['mic_low_hz']:g}-{p['mic_high_hz']:g}", *_compand(p)])
    return mixed[int(round(PREROLL_SECONDS * rate)):], {"room": p}
