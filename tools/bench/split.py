"""Which corpus tracks play which role, kept apart by Debian package; ``split.json``.

Place in ``tools/bench``: after ``corpus``, before the queries; also read by
``tools/train_encoder.py`` (``encoder_excluded_ids``) so the encoder never
trains on what the benchmark measures.

Roles:

* ``catalog``: enrolled; its fragments must be recognised;
* ``unseen``: negatives no model ever trains on; its fragments must be
  "no match" (the false-positive rate is measured on them);
* ``wrong``: cnnbin's training negatives; about a fifth of them, whole
  packages (``audiocopy.training.sources.calibration_holdout``, recorded as
  ``calibration``), is the calibration hold-out thresholds are set on and an
  encoder trained for this split never hears (an encoder whose record
  predates that rule is calibrated on its per-track hash instead);
* ``spare``: other tracks of the wrong tracks' packages (free for the
  encoder's training music);
* ``reserved``: tracks of catalogue or unseen packages beyond the wanted
  count: used for nothing, and never trained on.

Why packages. Tracks of one Debian package share a composer, a sound
and often themes; an encoder or a track model that trained on one
sibling has heard much of the catalogue track already. So in a *package
split* the catalogue and the unseen tracks come from packages none of
whose tracks anything trains on, and from different packages (a negative
from a catalogue track's own package would be a much harder negative in one
direction only). Package sets are chosen by seeded random tries that fill
the wanted count exactly where the package sizes allow. The *track split*
(``--legacy``) is the pre-restructure one: tracks drawn at random
whatever their package.

``split.json`` carries the role lists (top-level keys, as before), the
packages of each role, every track's package, and the SHA-256 of each
role's sorted ids, so two runs can be compared at a glance.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

from .common import BenchError, ids_sha256, read_json, rng_for, write_json

log = logging.getLogger(__name__)

ROLES = ("catalog", "unseen", "wrong", "spare", "reserved")
#: Seeded tries of the package choice (each a random order filled greedily).
PACKAGE_TRIES = 400


def track_split(tracks: Sequence, *, seed: int, n_catalog: int, n_wrong: int, n_unseen: int) -> dict:
    """The pre-restructure split: a seeded permutation of track ids, whatever their package.

    tracks: objects with ``id`` and ``package``, sorted by file name (the
    order does not depend on the file system). Returns the record of
    ``split_record``.
    """
    need = n_catalog + n_wrong + n_unseen
    if len(tracks) < need:
        raise BenchError(f"the corpus has {len(tracks)} tracks; the split needs {need}")
    ids = [t.id for t in tracks]
    order = rng_for(seed, "split").permutation(len(ids))
    shuffled = [ids[i] for i in order]
    roles = {"catalog": shuffled[:n_catalog], "wrong": shuffled[n_catalog:n_catalog + n_wrong],
             "unseen": shuffled[n_catalog + n_wrong:need], "spare": shuffled[need:], "reserved": []}
    return split_record("track", seed, roles, tracks)


def choose_packages(sizes: dict[str, int], want: int, *, seed: int, label: str) -> list[str]:
    """Packages (sorted) holding at least ``want`` tracks, as few more as possible.

    sizes: candidate package -> track count. Each seeded try takes the
    packages in a random order, keeps those that still fit under ``want``,
    then tops up with the smallest package that reaches it; the try with
    the least excess wins (the first such). Raises ``BenchError`` when the
    candidates hold fewer than ``want`` tracks.
    """
    names = sorted(sizes)
    if sum(sizes.values()) < want:
        raise BenchError(f"the {label} needs {want} tracks, but the packages it may come from hold only "
                         f"{sum(sizes.values())} ({len(names)} packages)")
    best: tuple[int, list[str]] | None = None
    for attempt in range(PACKAGE_TRIES):
        order = [names[i] for i in rng_for(seed, "packages", label, attempt).permutation(len(names))]
        chosen, total = [], 0
        for name in order:
            if total + sizes[name] <= want:
                chosen.append(name)
                total += sizes[name]
        if total < want:
            rest = sorted((sizes[n], n) for n in names if n not in chosen and total + sizes[n] >= want)
            if not rest:
                continue
            chosen.append(rest[0][1])
            total += rest[0][0]
        if best is None or total - want < best[0]:
            best = (total - want, sorted(chosen))
        if best[0] == 0:
            break
    if best is None:  # pragma: no cover - the sum check above makes one try succeed
        raise BenchError(f"no package set reaches {want} tracks for the {label}")
    return best[1]


def package_split(tracks: Sequence, *, seed: int, n_catalog: int, n_unseen: int, n_wrong: int,
                  forbidden_packages: Sequence[str] = ()) -> dict:
    """The package split (module docstring).

    tracks: objects with ``id`` and ``package``, sorted by file name.
    forbidden_packages: packages that may give neither catalogue nor unseen
    tracks (e.g. those the encoder trained on). Returns the record of
    ``split_record``; ``wrong`` holds at most ``n_wrong`` tracks (fewer, with a
    warning, when the other packages hold fewer).
    """
    by_package: dict[str, list[str]] = {}
    for t in tracks:
        by_package.setdefault(t.package, []).append(t.id)
    free = {p: len(ids) for p, ids in by_package.items() if p not in set(forbidden_packages)}
    catalog_pk = choose_packages(free, n_catalog, seed=seed, label="catalogue")
    unseen_pk = choose_packages({p: n for p, n in free.items() if p not in catalog_pk}, n_unseen,
                                seed=seed, label="unseen negatives")
    roles: dict[str, list[str]] = {"reserved": []}
    for role, packages, n in (("catalog", catalog_pk, n_catalog), ("unseen", unseen_pk, n_unseen)):
        pool = sorted(i for p in packages for i in by_package[p])
        order = rng_for(seed, "pick", role).permutation(len(pool))
        roles[role] = [pool[i] for i in order[:n]]
        roles["reserved"] += [pool[i] for i in order[n:]]
    other = sorted(i for p in by_package if p not in catalog_pk + unseen_pk for i in by_package[p])
    if len(other) < n_wrong:
        log.warning("only %d tracks outside the catalogue and unseen packages: %d wrong tracks instead of %d",
                    len(other), len(other), n_wrong)
    order = rng_for(seed, "pick", "wrong").permutation(len(other))
    roles["wrong"] = [other[i] for i in order[:n_wrong]]
    roles["spare"] = [other[i] for i in order[n_wrong:]]
    return split_record("package", seed, roles, tracks)


def split_record(kind: str, seed: int, roles: dict[str, list[str]], tracks: Sequence) -> dict:
    """The JSON record of a split: sorted role lists (top level), packages, hashes, held-out tracks."""
    from audiocopy.training.sources import calibration_holdout

    package_of = {t.id: t.package for t in tracks}
    out = {"kind": kind, "seed": seed, **{r: sorted(roles.get(r, [])) for r in ROLES}}
    out["packages"] = {r: sorted({package_of[i] for i in out[r]}) for r in ("catalog", "unseen", "wrong")}
    out["track_packages"] = dict(sorted(package_of.items()))
    out["sizes"] = {r: len(out[r]) for r in ROLES}
    out["sha256"] = {r: ids_sha256(out[r]) for r in ROLES}
    out["calibration"] = sorted(calibration_holdout(out["wrong"]))
    excluded = encoder_excluded_ids(out)
    out["encoder_excluded"] = {"count": len(excluded), "sha256": ids_sha256(excluded)}
    return out


def encoder_excluded_ids(split: dict, share: float | None = None) -> set[str]:
    """Track ids the encoder must not train on for this split to measure it fairly.

    The catalogue and unseen tracks, every other track of their packages
    (a package split's ``reserved``), and the calibration hold-out of the
    wrong tracks that enrolment sets thresholds on (``sources.
    calibration_holdout`` of ``WORK/wrong``: whole packages), with every
    other track of those packages. The false-positive rate the thresholds
    promise is then set on music from packages the encoder never heard, as
    the unseen test packages are: negatives whose siblings it trained on
    score lower against a catalogue than music from a package it never met,
    so a threshold set on them lets more unseen music through. share: the
    hold-out's share of the wrong tracks (default ``sources.CALIBRATION_SHARE``,
    the share ``calibration`` was recorded with); an encoder trained with
    another (``train_encoder.py --calibration-share``) leaves out more.
    """
    from audiocopy.training.sources import CALIBRATION_SHARE, calibration_holdout, with_their_groups

    measured = set(split["catalog"]) | set(split["unseen"]) | set(split.get("reserved", []))
    package_of = split.get("track_packages", {})
    if split.get("kind") == "package":
        packages = set(split["packages"]["catalog"]) | set(split["packages"]["unseen"])
        measured |= {i for i, p in package_of.items() if p in packages}
    others = (set(package_of) or set(split.get("wrong", [])) | set(split.get("spare", []))) - measured
    held = calibration_holdout(sorted(split.get("wrong", [])), CALIBRATION_SHARE if share is None else share)
    return measured | with_their_groups(held, others)


def write_split(path: Path, split: dict) -> None:
    """Write ``split.json`` atomically."""
    write_json(Path(path), split)


def read_split(path: Path) -> dict:
    """A split record from ``split.json``, checked: every role present, hashes (when recorded) matching.

    Raises ``BenchError`` with the reason for a missing, unreadable or edited file.
    """
    split = read_json(Path(path))
    if not isinstance(split, dict):
        raise BenchError(f"{path} is missing or not a JSON split (make one with tools/evaluate.py "
                         "--stop-after split)")
    for role in ("catalog", "unseen", "wrong"):
        if not isinstance(split.get(role), list):
            raise BenchError(f"{path} has no {role!r} track list")
    for role, digest in split.get("sha256", {}).items():
        if ids_sha256(split.get(role, [])) != digest:
            raise BenchError(f"{path}: the {role} tracks do not match their recorded SHA-256 (edited by hand?)")
    return split


def describe(split: dict) -> str:
    """One log line: role sizes and packages."""
    sizes = ", ".join(f"{r} {len(split.get(r, []))}" for r in ROLES)
    pk = split.get("packages", {})
    return (f"{split.get('kind', '?')} split, seed {split.get('seed')}: {sizes}; catalogue packages "
            f"{pk.get('catalog')}, unseen packages {pk.get('unseen')}")
