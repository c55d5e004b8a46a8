"""A day of plays on one source as an SVG picture, written by hand on the server.

Place in the pipeline: the picture behind ``GET /api/plays/timeline.svg``
(``web.reports_api``), drawn from ``plays.reports.day_plays``. The Plays
page shows it as an image; it also opens on its own, or goes into a report.

The picture: the hours of the UTC day across (00 to 24), one lane per track
(in the order the tracks were first heard that day, labelled with the
catalogue's title and artist where known, else the track id), one bar per
play from its wall-clock start to its end. A play's status is drawn so it
reads without colour too: closed plays are solid, open ones (still being
heard) pale with a dashed outline, recovered ones (their server died
during the play; they end at its last update) amber with a dark outline.
Each bar and lane has a ``<title>``, which browsers show as a tooltip:
the full name, the times, the length, the status and the evidence of
alteration. Plays that cross midnight are cut at the day's edge.

Bounded: the store hands over at most ``plays.reports.MAX_TIMELINE_PLAYS``
plays (a note under the picture says how many there were), and at most
``MAX_LANES`` tracks get a lane of their own; the rest share a last lane.

Safety. Every name in the picture comes from users (track ids, source
names, metadata), so every piece of text and every attribute value is
escaped, and characters that XML 1.0 cannot hold at all (control
characters) are replaced. The picture has no script and no external
reference, and colours are presentation attributes rather than a
``<style>`` element, so the server's Content-Security-Policy (no inline
styles) holds for it as for the pages. No drawing library is needed.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime, timezone
from xml.sax.saxutils import escape

from ..engines.metadata import TrackMeta
from ..plays.reports import DayPlays, epoch_of

#: Tracks that get a lane of their own; the others share one last lane.
MAX_LANES = 60
#: Characters of a lane label before it is cut (the full name is in its tooltip).
LABEL_CHARS = 34
LABEL_W, PLOT_W, RIGHT_PAD = 230, 800, 16
TOP, LANE_H, BAR_H = 48, 20, 12
#: fill, stroke, stroke-dasharray per status (see the module docstring).
STYLES = {
    "closed": ('#2563eb', '#1d4ed8', None),
    "open": ('#bfdbfe', '#2563eb', "3 2"),
    "recovered": ('#f59e0b', '#92400e', None),
}
STATUS_WORDS = {"closed": "ended", "open": "still playing", "recovered": "server stopped during the play"}
#: Characters XML 1.0 cannot hold, even escaped.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def text(value: object) -> str:
    """``value`` as XML character data or an attribute value: escaped, and XML-illegal characters replaced."""
    return escape(_NOT_XML.sub("\ufffd", str(value)), {'"': "&quot;", "'": "&apos;"})


def track_label(track: str, meta: TrackMeta | None) -> str:
    """"Artist – Title", the title alone, or the track id when the catalogue has no record."""
    if meta is None:
        return track
    return f"{meta.artist} – {meta.title}" if meta.artist else meta.title


def _cut(label: str) -> str:
    return label if len(label) <= LABEL_CHARS else label[:LABEL_CHARS - 1] + "…"


def _clock(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, tz=timezone.utc).strftime("%H:%M:%S")


def _lanes(day: DayPlays) -> tuple[list[str], dict[str, int]]:
    """Tracks in the order first heard, and each track's lane (the last lane holds the overflow)."""
    order: list[str] = []
    for play in day.plays:
        if play["track"] not in order:
            order.append(play["track"])
    if len(order) <= MAX_LANES:
        return order, {t: i for i, t in enumerate(order)}
    kept = order[:MAX_LANES - 1]
    lane = {t: i for i, t in enumerate(kept)}
    lane.update((t, MAX_LANES - 1) for t in order[MAX_LANES - 1:])
    return kept + [f"{len(order) - len(kept)} other tracks"], lane


def _evidence(play: dict) -> str:
    parts = []
    if play.get("alteration") not in (None, "", "unknown"):
        parts.append(f"alteration {play['alteration']}")
    if play.get("time_scale") is not None:
        parts.append(f"time scale {play['time_scale']:.3f}")
    if play.get("pitch_semitones") is not None:
        parts.append(f"pitch {play['pitch_semitones']:+.2f} st")
    return " · ".join(parts)


def _bar(day: DayPlays, play: dict, lane: int, label: str) -> str:
    t0, t1 = epoch_of(play["started_at"]), epoch_of(play["ended_at"])
    a, b = max(t0, day.start), min(max(t1, t0), day.end)
    x = LABEL_W + (a - day.start) / (day.end - day.start) * PLOT_W
    width = max(1.0, (b - a) / (day.end - day.start) * PLOT_W)  # a 3 s play is still seen
    x = min(x, LABEL_W + PLOT_W - width)  # ...and one at 23:59:59 stays inside the day
    y = TOP + lane * LANE_H + (LANE_H - BAR_H) / 2
    status = play["status"] if play["status"] in STYLES else "closed"
    fill, stroke, dash = STYLES[status]
    tip = (f"{label} · {_clock(t0)}–{_clock(t1)} UTC · {play['end_s'] - play['start_s']:.0f} s · "
           f"{STATUS_WORDS[status]}")
    evidence = _evidence(play)
    if evidence:
        tip += " · " + evidence
    dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
    return (f'<rect class="play {status}" data-id="{int(play["id"])}" x="{x:.2f}" y="{y:.1f}" '
            f'width="{width:.2f}" height="{BAR_H}" fill="{fill}" stroke="{stroke}"{dash_attr}>'
            f"<title>{text(tip)}</title></rect>")


def _axis(height: int) -> list[str]:
    out = []
    for hour in range(25):
        x = LABEL_W + hour / 24 * PLOT_W
        out.append(f'<line x1="{x:.2f}" y1="{TOP - 6}" x2="{x:.2f}" y2="{height}" stroke="#d9dee6"/>')
        if hour % 2 == 0:
            out.append(f'<text x="{x:.2f}" y="{TOP - 10}" text-anchor="middle" fill="#5f6b7a">{hour:02d}</text>')
    return out


def _legend(y: int) -> list[str]:
    out, x = [], LABEL_W
    for status, fill_stroke in STYLES.items():
        fill, stroke, dash = fill_stroke
        dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
        out.append(f'<rect x="{x}" y="{y - 10}" width="18" height="{BAR_H}" fill="{fill}" stroke="{stroke}"'
                   f"{dash_attr}/>")
        out.append(f'<text x="{x + 24}" y="{y}" fill="#1d2330">{status}: {text(STATUS_WORDS[status])}</text>')
        x += 260
    return out


def render_timeline(day: DayPlays, metadata: Mapping[str, TrackMeta]) -> str:
    """The SVG document (text) of ``day``'s plays; ``metadata``: track id -> record, for lane labels."""
    names, lane_of = _lanes(day)
    labels = {t: track_label(t, metadata.get(t)) for t in lane_of}
    plot_bottom = TOP + max(1, len(names)) * LANE_H
    notes = []
    if not day.plays:
        notes.append(("#5f6b7a", "No plays on this source on this day."))
    if day.truncated:
        notes.append(("#b42318", f"Showing the first {len(day.plays)} of {day.total} plays of this day."))
    height = plot_bottom + 34 + 18 * len(notes)
    width = LABEL_W + PLOT_W + RIGHT_PAD
    title = f"Plays on {day.source}, {day.day.isoformat()} (UTC)"
    out = [(f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" font-family="system-ui, sans-serif" font-size="12" role="img">'),
           f"<title>{text(title)}</title>",
           f'<rect width="{width}" height="{height}" fill="#ffffff"/>',
           f'<text x="8" y="18" font-size="14" font-weight="bold" fill="#1d2330">{text(title)}</text>',
           *_axis(plot_bottom)]
    for i, name in enumerate(names):
        y = TOP + i * LANE_H
        shown = labels.get(name, name)
        full = f"{shown} ({name})" if shown != name else name
        if i % 2:
            out.append(f'<rect x="0" y="{y}" width="{width}" height="{LANE_H}" fill="#f3f5f9" fill-opacity="0.6"/>')
        out.append(f'<g class="lane" data-track="{text(name)}"><title>{text(full)}</title>'
                   f'<text x="8" y="{y + LANE_H - 6}" fill="#1d2330">{text(_cut(shown))}</text></g>')
    for play in day.plays:
        out.append(_bar(day, play, lane_of[play["track"]], labels[play["track"]]))
    y = plot_bottom + 24
    out += _legend(y)
    for colour, note in notes:
        y += 18
        out.append(f'<text class="note" x="8" y="{y}" fill="{colour}">{text(note)}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"
