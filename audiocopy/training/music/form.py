"""Song form: sections, their lengths and energies, fitted to a target duration.

Place in the pipeline: the first step of ``compose`` (offline training-data
generation only).

Ideas. Real songs repeat: a chorus comes back three times, a verse twice,
with an intro and an outro around them, and choruses get louder as the
song goes on. A style offers form templates; a track picks one, gives each
kind of section a length in bars (kept for every repetition), then adds
repetitions of the middle of the form or removes some (and halves long
sections) until the bar count is near the requested duration. The tempo is
then nudged, within the style's range, so that the piece lasts what was
asked. Which instruments play in which section is decided per section
*kind*, so repeated sections sound alike, with parts added as the song
builds.
"""
from __future__ import annotations

import math
import random
import types

from .score import Section

#: Base energy (0-1) of each kind of section.
ENERGY = types.MappingProxyType({
    "intro": 0.4, "verse": 0.55, "prechorus": 0.65, "chorus": 0.85, "bridge": 0.6, "solo": 0.8,
    "outro": 0.45, "build": 0.6, "drop": 1.0, "break": 0.35, "head": 0.7, "A": 0.6, "B": 0.75,
    "C": 0.7, "coda": 0.4,
})
#: Length choices in bars per kind of section.
BARS = types.MappingProxyType({
    "intro": (4, 4, 2, 8), "verse": (8, 8, 16), "prechorus": (4, 4, 8), "chorus": (8, 8, 16),
    "bridge": (8, 4), "solo": (8, 16), "outro": (4, 4, 8), "build": (8, 4), "drop": (16, 8),
    "break": (8, 4), "head": (16, 8), "A": (8, 8, 16), "B": (8, 4), "C": (8,), "coda": (4, 2),
})
#: Probability that a role plays in a kind of section (before the song builds up).
PRESENCE = types.MappingProxyType({k: types.MappingProxyType(v) for k, v in {
    "intro": {"lead": 0.3, "counter": 0.0, "bass": 0.5, "chords": 0.8, "pad": 0.8, "arp": 0.5, "drums": 0.5},
    "verse": {"lead": 1.0, "counter": 0.1, "bass": 1.0, "chords": 0.9, "pad": 0.4, "arp": 0.3, "drums": 0.95},
    "prechorus": {"lead": 1.0, "counter": 0.3, "bass": 1.0, "chords": 0.9, "pad": 0.6, "arp": 0.5, "drums": 0.9},
    "chorus": {"lead": 1.0, "counter": 0.6, "bass": 1.0, "chords": 1.0, "pad": 0.8, "arp": 0.6, "drums": 1.0},
    "bridge": {"lead": 0.6, "counter": 0.5, "bass": 0.9, "chords": 0.9, "pad": 0.8, "arp": 0.4, "drums": 0.7},
    "solo": {"lead": 1.0, "counter": 0.2, "bass": 1.0, "chords": 1.0, "pad": 0.5, "arp": 0.3, "drums": 1.0},
    "outro": {"lead": 0.4, "counter": 0.2, "bass": 0.7, "chords": 0.9, "pad": 0.9, "arp": 0.4, "drums": 0.5},
    "build": {"lead": 0.3, "counter": 0.0, "bass": 0.5, "chords": 0.6, "pad": 0.8, "arp": 0.9, "drums": 1.0},
    "drop": {"lead": 1.0, "counter": 0.4, "bass": 1.0, "chords": 0.8, "pad": 0.6, "arp": 0.8, "drums": 1.0},
    "break": {"lead": 0.3, "counter": 0.2, "bass": 0.2, "chords": 0.6, "pad": 1.0, "arp": 0.6, "drums": 0.3},
    "head": {"lead": 1.0, "counter": 0.2, "bass": 1.0, "chords": 1.0, "pad": 0.2, "arp": 0.2, "drums": 1.0},
    "A": {"lead": 1.0, "counter": 0.3, "bass": 1.0, "chords": 1.0, "pad": 0.5, "arp": 0.4, "drums": 0.9},
    "B": {"lead": 1.0, "counter": 0.5, "bass": 1.0, "chords": 1.0, "pad": 0.6, "arp": 0.5, "drums": 0.9},
    "C": {"lead": 0.8, "counter": 0.5, "bass": 0.9, "chords": 1.0, "pad": 0.7, "arp": 0.5, "drums": 0.8},
    "coda": {"lead": 0.4, "counter": 0.2, "bass": 0.8, "chords": 1.0, "pad": 0.8, "arp": 0.3, "drums": 0.4},
}.items()})
ROLES = ("lead", "counter", "bass", "chords", "pad", "arp", "drums")
#: Kinds of section that carry the main hook (the key change lands on the last of them).
HOOKS = ("chorus", "drop", "head", "A")


def plan_form(rng: random.Random, template: tuple[str, ...], bar_seconds: float,
              seconds: float) -> list[tuple[str, int]]:
    """Section kinds and lengths (bars) whose total is near ``seconds`` at ``bar_seconds`` per bar.

    Candidates keep the intro and outro around the first ``k`` middle
    sections of the template (cycled through its second half when more are
    needed), with the drawn lengths or with long sections halved; the one
    nearest the target wins, preferring forms whose last middle section is a
    hook. The tempo then absorbs the rest (see ``compose``).

    Args:
        template: a form from the style, e.g. ``("intro", "verse", "chorus", ..., "outro")``.
        bar_seconds: length of one bar at the provisional tempo.
        seconds: requested duration.
    """
    head = ("intro",) if template[0] == "intro" else ()
    tail = (template[-1],) if template[-1] in ("outro", "coda") else ()
    middle = template[len(head):len(template) - len(tail)] or ("verse",)
    first_hook = next((i for i, n in enumerate(middle) if n in HOOKS), len(middle) - 1)
    extension = middle[:first_hook + 1] if first_hook > 0 else middle[1:3] or middle
    drawn = {name: rng.choice(BARS.get(name, (8,))) for name in template}
    halved = {name: max(2, bars // 2) if bars >= 8 else bars for name, bars in drawn.items()}
    short = {name: max(1, bars // 4) for name, bars in drawn.items()}
    tiny = {name: max(1, bars // 8) for name, bars in drawn.items()}
    best, best_cost = [], float("inf")
    for lengths, penalty in ((drawn, 0.0), (halved, 0.05), (short, 0.15), (tiny, 0.3)):
        for k in range(1, len(middle) + 4 * len(extension) + 1):
            extra = max(0, k - len(middle))
            body = list(middle[:k]) + [extension[i % len(extension)] for i in range(extra)]
            for ends in ((head, tail), ((), tail), ((), ())):
                names = list(ends[0]) + body + list(ends[1])
                total = sum(lengths[n] for n in names) * bar_seconds
                # The tempo can absorb about 8 % either way, so fit beyond that is what matters.
                cost = max(0.0, abs(math.log(total / seconds)) - 0.08) + penalty + 0.01 * extra \
                    + (0.1 if body[-1] not in HOOKS else 0.0) + (0.05 if ends != (head, tail) else 0.0)
                if cost < best_cost:
                    best, best_cost = [(n, lengths[n]) for n in names], cost
    return best


def sections(rng: random.Random, form: list[tuple[str, int]]) -> tuple[Section, ...]:
    """``Section`` records with start bars and energies that rise through the song."""
    out, bar = [], 0
    seen: dict[str, int] = {}
    hook_total = sum(1 for n, _ in form if n in HOOKS)
    for name, bars in form:
        count = seen.get(name, 0)
        seen[name] = count + 1
        energy = ENERGY.get(name, 0.6) + rng.uniform(-0.07, 0.07)
        if name in HOOKS and count + 1 == hook_total and hook_total > 1:
            energy += 0.1
        energy += 0.04 * min(count, 2)
        out.append(Section(name, bar, bars, max(0.15, min(1.0, energy))))
        bar += bars
    return tuple(out)


def arrangement(rng: random.Random, secs: tuple[Section, ...],
                available: dict[str, bool]) -> dict[str, tuple[bool, ...]]:
    """Which roles play in each section: decided per kind of section, thickening on repeats.

    Args:
        available: role -> whether the track has that instrument at all.
    Returns role -> one flag per section.
    """
    decided: dict[tuple[str, str], float] = {}
    seen: dict[str, int] = {}
    flags = {role: [] for role in ROLES}
    for sec in secs:
        count = seen.get(sec.name, 0)
        seen[sec.name] = count + 1
        presence = PRESENCE.get(sec.name, PRESENCE["verse"])
        for role in ROLES:
            draw = decided.setdefault((sec.name, role), rng.random())
            flags[role].append(available[role] and draw < presence[role] + 0.15 * count)
        if not any(flags[r][-1] for r in ("chords", "pad", "arp", "lead")):
            for r in ("chords", "pad", "lead", "arp"):
                if available[r]:
                    flags[r][-1] = True
                    break
    return {role: tuple(v) for role, v in flags.items()}


def key_change_beat(rng: random.Random, secs: tuple[Section, ...], prob: float, bar_beats: float) -> float | None:
    """The beat where the last hook section starts, if the track modulates there (else None)."""
    hooks = [s for s in secs if s.name in HOOKS]
    if len(hooks) < 2 or rng.random() >= prob:
        return None
    return hooks[-1].start_bar * bar_beats
