"""Which audio files play which role: listing a folder, the calibration hold-out, stable seeds.

Place in the pipeline: under every offline step that picks tracks (the
cnnbin dataset, fingerprint enrolment's calibration, the encoder's training
set, the benchmarks). Roles must be the same for the same track everywhere
and on every machine, so they come from a hash of the track id, never from
file order or a random generator:

* a fifth of the "wrong" (negative) tracks, by hash, is held out: no model
  is trained on them, and every threshold is set on them, so each
  false-positive rate is measured on music the models have not seen;
* where the negatives' names say which tracks belong together
  (``GROUP__TRACK``: a package, an album, a composer), cnnbin's track
  models hold out whole groups (``calibration_holdout``). Tracks of one
  group share composer, instruments and mix; a model trained on some of
  them rejects the rest of the group more easily than music it never met,
  so a threshold set on a track-level hold-out lets more unseen music
  through than it says;
* per-track random draws are seeded from the track id, so a dataset shard
  or a training view rebuilt later is bit-identical.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

from ..errors import DatasetError
from ..signal.audio import is_audio_file

#: Share of negative tracks held out for calibration (by hash of the track id).
CALIBRATION_SHARE = 0.2


def stable_fraction(text: str) -> float:
    """A deterministic number in [0, 1) from a string."""
    return int(hashlib.sha1(text.encode("utf-8")).hexdigest()[:8], 16) / 2**32


def stable_seed(*parts) -> int:
    """A deterministic 48-bit seed from any parts (joined by ":")."""
    return int(hashlib.sha1(":".join(map(str, parts)).encode("utf-8")).hexdigest()[:12], 16)


def is_calibration_track(track_id: str) -> bool:
    """True for the held-out fifth of negative tracks that thresholds are set on."""
    return stable_fraction("split:" + track_id) < CALIBRATION_SHARE


#: What separates a track id's group from the rest (``GROUP__TRACK``, as the dev corpus names its tracks).
GROUP_SEPARATOR = "__"

#: Fewest groups for a group-level hold-out: with fewer, holding one group out
#: would leave too little of the negatives' variety to train against.
MIN_HOLDOUT_GROUPS = 4

def track_group(track_id: str) -> str:
    """The group a track id names before ``GROUP_SEPARATOR``, or the id itself when it names none."""
    return track_id.split(GROUP_SEPARATOR, 1)[0] if GROUP_SEPARATOR in track_id else track_id


def calibration_holdout(track_ids: list[str], share: float = CALIBRATION_SHARE) -> frozenset[str]:
    """The negatives held out for calibration, whole groups at a time where the ids name groups.

    track_ids: ids of every negative track in the folder. Groups come from
    ``track_group``. With at least ``MIN_HOLDOUT_GROUPS`` groups and some
    group of more than one track, groups are taken in the order of a hash
    of their name while their tracks fall short of ``share`` of all; a group
    that would overshoot the share by more than the shortfall is passed
    over, so the hold-out stays near its share whatever the group sizes.
    Otherwise each track is its own group and ``is_calibration_track``
    decides, exactly as for a folder of ungrouped names.

    Unlike the per-track rule, a group's role can change when groups are
    added to the folder (the hold-out fills to a share of the whole);
    ``training.dataset`` refuses to resume a dataset whose roles changed.
    Returns the held-out ids.
    """
    ids = list(dict.fromkeys(track_ids))
    groups: dict[str, list[str]] = {}
    for t in ids:
        groups.setdefault(track_group(t), []).append(t)
    if len(groups) < MIN_HOLDOUT_GROUPS or len(groups) == len(ids):
        return frozenset(t for t in ids if is_calibration_track(t))
    target, held = share * len(ids), []
    for name in sorted(groups, key=lambda g: (stable_fraction("group:" + g), g)):
        if len(held) >= target:
            break
        # A group joins when it brings the hold-out closer to its share than it was.
        if abs(len(held) + len(groups[name]) - target) < target - len(held):
            held += groups[name]
    return frozenset(held)


def with_their_groups(held: frozenset[str] | set[str], track_ids) -> set[str]:
    """The ids of ``track_ids`` that are in ``held`` or share a group (``track_group``) with one that is.

    What a model must not train on for its calibration hold-out to be
    unheard: the held-out tracks and their siblings, which sound alike.
    """
    groups = {track_group(i) for i in held}
    return {i for i in track_ids if i in held or track_group(i) in groups}


#: How a model was trained without the calibration negatives: "group" (``calibration_holdout``) or
#: "track" (``is_calibration_track`` alone, the rule of encoders trained before groups were held out).
#: A group rule at another share than ``CALIBRATION_SHARE`` is written "group@SHARE" (``holdout_rule_name``).
HOLDOUT_RULES = ("group", "track")


def holdout_rule_name(kind: str, share: float = CALIBRATION_SHARE) -> str:
    """One string for a hold-out rule: ``kind`` (one of ``HOLDOUT_RULES``) and, for "group", its share.

    The default share keeps the plain name, so rules, records and
    calibration signatures written before shares could differ read the
    same. ``ValueError`` for an unknown kind, a share outside (0, 1), or a
    share given to the per-track rule (whose share is fixed by the hash).
    """
    if kind not in HOLDOUT_RULES:
        raise ValueError(f"unknown calibration hold-out rule {kind!r} (expected one of {HOLDOUT_RULES})")
    if not 0.0 < share < 1.0:
        raise ValueError(f"the calibration hold-out share must be between 0 and 1, got {share}")
    if share == CALIBRATION_SHARE:
        return kind
    if kind != "group":
        raise ValueError(f"the {kind!r} hold-out has a fixed share ({CALIBRATION_SHARE}); only 'group' takes another")
    return f"{kind}@{share:g}"


def parse_holdout_rule(rule: str) -> tuple[str, float]:
    """``(kind, share)`` of a rule written by ``holdout_rule_name``; ``ValueError`` if it is not one."""
    kind, sep, share = str(rule).partition("@")
    try:
        value = float(share) if sep else CALIBRATION_SHARE
    except ValueError:
        raise ValueError(f"unreadable calibration hold-out rule {rule!r} (e.g. 'group' or 'group@0.3')") from None
    if holdout_rule_name(kind, value) != rule:
        raise ValueError(f"calibration hold-out rule {rule!r} is not in its canonical form "
                         f"{holdout_rule_name(kind, value)!r}")
    return kind, value


def holdout_tracks(track_ids: list[str], rule: str) -> frozenset[str]:
    """The calibration hold-out of ``track_ids`` by ``rule`` (``parse_holdout_rule``); ``ValueError`` otherwise.

    Thresholds must be set on music the model never heard, so enrolment
    follows the rule its model was trained with, share included.
    """
    kind, share = parse_holdout_rule(rule)
    if kind == "group":
        return calibration_holdout(track_ids, share)
    return frozenset(t for t in track_ids if is_calibration_track(t))


def list_audio(folder: Path) -> list[Path]:
    """Audio files directly inside ``folder``, sorted; ``DatasetError`` if the folder is missing or two share a track id (file stem)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(f"folder not found: {folder}")
    files = sorted(p for p in folder.iterdir() if p.is_file() and is_audio_file(p))
    stems = [p.stem for p in files]
    dupes = sorted({s for s in stems if stems.count(s) > 1})
    if dupes:
        raise DatasetError(f"{folder}: several files share the track id(s) {dupes}; track id = file stem")
    return files
