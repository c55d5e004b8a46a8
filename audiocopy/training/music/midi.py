"""Standard MIDI Files (format 1): a small writer and reader of our own.

Place in the pipeline: ``render`` writes each ``Composition`` as a ``.mid``
file for fluidsynth; the reader exists so tests can check that what was
written parses back to the same events (offline training-data generation
only).

Ideas. An SMF is an ``MThd`` header (format, track count, ticks per
quarter note) followed by ``MTrk`` chunks; each event is a delta time in
ticks (a variable-length quantity: 7 bits per byte, high bit = more bytes
follow) and either a channel message (note on/off, control change, program
change, pitch bend) or a meta event (tempo in microseconds per quarter,
time signature, track name, end of track). Format 1 puts the tempo map in
a first "conductor" track and one instrument per following track. Events at
the same tick are ordered meta, program, controllers, bend, note-offs, then
note-ons, so a repeated pitch is released before it is struck again.
Running status (omitting a repeated status byte) keeps files small.
"""
from __future__ import annotations

import struct
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from .score import PITCH_BEND, Composition

_STATUS = types.MappingProxyType({"note_off": 0x80, "note_on": 0x90, "control": 0xB0, "program": 0xC0,
                                  "pitch_bend": 0xE0})
_KIND = types.MappingProxyType({v: k for k, v in _STATUS.items()})
_META = types.MappingProxyType({"track_name": 0x03, "end_of_track": 0x2F, "tempo": 0x51, "time_signature": 0x58})
_META_KIND = types.MappingProxyType({v: k for k, v in _META.items()})
_ORDER = types.MappingProxyType({"track_name": 0, "time_signature": 0, "tempo": 0, "program": 1, "control": 2,
                                 "pitch_bend": 3,
          "note_off": 4, "note_on": 5, "end_of_track": 9})


@dataclass(frozen=True)
class MidiEvent:
    """One event at absolute ``tick``.

    ``values`` by kind: note_on/note_off (pitch, velocity); control (number,
    value); program (program,); pitch_bend (value -8192..8191,); tempo
    (microseconds per quarter note,); time_signature (numerator,
    denominator, MIDI clocks per click, 32nds per quarter); track_name
    (text,); end_of_track ().
    """

    tick: int
    kind: str
    channel: int = 0
    values: tuple = ()


def sort_events(events: Sequence[MidiEvent]) -> list[MidiEvent]:
    """Events in file order: by tick, then meta, program, controls, bends, note-offs, note-ons."""
    return sorted(events, key=lambda e: (e.tick, _ORDER[e.kind]))


def vlq(value: int) -> bytes:
    """``value`` (0 <= value < 2**28) as a MIDI variable-length quantity."""
    if not 0 <= value < 1 << 28:
        raise ValueError(f"variable-length quantity out of range: {value}")
    out = [value & 0x7F]
    value >>= 7
    while value:
        out.append(0x80 | (value & 0x7F))
        value >>= 7
    return bytes(reversed(out))


def _event_bytes(e: MidiEvent) -> tuple[int | None, bytes]:
    """(status byte or None for meta, message bytes after the status)."""
    if e.kind in _META:
        if e.kind == "tempo":
            body = e.values[0].to_bytes(3, "big")
        elif e.kind == "time_signature":
            num, den, clocks, thirty_seconds = e.values
            body = bytes((num, den.bit_length() - 1, clocks, thirty_seconds))
        elif e.kind == "track_name":
            body = e.values[0].encode("utf-8")
        else:
            body = b""
        return None, bytes((0xFF, _META[e.kind])) + vlq(len(body)) + body
    status = _STATUS[e.kind] | (e.channel & 0x0F)
    if e.kind == "pitch_bend":
        v = e.values[0] + 8192
        return status, bytes((v & 0x7F, (v >> 7) & 0x7F))
    return status, bytes(int(x) & 0x7F for x in e.values)


def write_smf(tracks: Sequence[Sequence[MidiEvent]], ppq: int = 480) -> bytes:
    """A format-1 Standard MIDI File holding ``tracks`` (``ppq`` ticks per quarter note).

    Each track is sorted with ``sort_events`` and closed with one
    end-of-track event (at its last tick, or at a given end_of_track's tick).
    """
    chunks = [b"MThd" + struct.pack(">IHHH", 6, 1, len(tracks), ppq)]
    for track in tracks:
        events = [e for e in track if e.kind != "end_of_track"]
        end = max([e.tick for e in track] + [0])
        events = sort_events(events) + [MidiEvent(end, "end_of_track")]
        data, tick, running = bytearray(), 0, None
        for e in events:
            data += vlq(e.tick - tick)
            tick = e.tick
            status, body = _event_bytes(e)
            if status is not None and status != running:
                data.append(status)
            running = status
            data += body
        chunks.append(b"MTrk" + struct.pack(">I", len(data)) + bytes(data))
    return b"".join(chunks)


def read_smf(data: bytes) -> tuple[int, list[list[MidiEvent]]]:
    """Parse a Standard MIDI File into (ticks per quarter note, tracks of events).

    Understands what ``write_smf`` writes plus running status and note-on
    with velocity 0 (read as note_off); other meta and sysex events are
    skipped. Raises ValueError on a malformed file.
    """
    if data[:4] != b"MThd":
        raise ValueError("not a Standard MIDI File (no MThd header)")
    length, _fmt, ntracks, ppq = struct.unpack(">IHHH", data[4:14])
    pos, tracks = 8 + length, []
    for _ in range(ntracks):
        if data[pos:pos + 4] != b"MTrk":
            raise ValueError(f"expected MTrk at byte {pos}")
        size = struct.unpack(">I", data[pos + 4:pos + 8])[0]
        tracks.append(_read_track(data[pos + 8:pos + 8 + size]))
        pos += 8 + size
    return ppq, tracks


def _read_vlq(data: bytes, pos: int) -> tuple[int, int]:
    value = 0
    while True:
        byte = data[pos]
        pos += 1
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            return value, pos


def _read_track(data: bytes) -> list[MidiEvent]:
    events, pos, tick, running = [], 0, 0, None
    while pos < len(data):
        delta, pos = _read_vlq(data, pos)
        tick += delta
        status = data[pos]
        if status == 0xFF:
            kind_byte = data[pos + 1]
            size, pos = _read_vlq(data, pos + 2)
            body = data[pos:pos + size]
            pos += size
            kind = _META_KIND.get(kind_byte)
            if kind == "tempo":
                events.append(MidiEvent(tick, kind, 0, (int.from_bytes(body, "big"),)))
            elif kind == "time_signature":
                events.append(MidiEvent(tick, kind, 0, (body[0], 1 << body[1], body[2], body[3])))
            elif kind == "track_name":
                events.append(MidiEvent(tick, kind, 0, (body.decode("utf-8"),)))
            elif kind == "end_of_track":
                events.append(MidiEvent(tick, kind))
            continue
        if status in (0xF0, 0xF7):
            size, pos = _read_vlq(data, pos + 1)
            pos += size
            continue
        if status & 0x80:
            running, pos = status, pos + 1
        if running is None:
            raise ValueError("data byte without a status byte")
        kind, channel = _KIND[running & 0xF0], running & 0x0F
        n = 1 if kind == "program" else 2
        body = data[pos:pos + n]
        pos += n
        if kind == "pitch_bend":
            values = ((body[0] | body[1] << 7) - 8192,)
        elif kind == "note_on" and body[1] == 0:
            kind, values = "note_off", (body[0], 0)
        else:
            values = tuple(body)
        events.append(MidiEvent(tick, kind, channel, values))
    return events


def composition_events(comp: Composition, ppq: int = 480, tail_beats: float = 3.0) -> list[list[MidiEvent]]:
    """A composition as format-1 tracks: conductor (name, meter, tempo map), then one track per part.

    ``tail_beats`` of silence are kept after the last bar (end-of-track
    events there) so that a renderer lets the final notes ring out.
    """
    def tick(beat: float) -> int:
        return max(0, int(round(beat * ppq)))

    end = tick(comp.total_beats + tail_beats)
    num, den = comp.meter
    conductor = [MidiEvent(0, "track_name", 0, (f"{comp.style} {comp.seed}",)),
                 MidiEvent(0, "time_signature", 0, (num, den, 24 if den == 4 else 36, 8))]
    conductor += [MidiEvent(tick(b), "tempo", 0, (int(round(60_000_000 / bpm)),)) for b, bpm in comp.tempo_map]
    conductor.append(MidiEvent(end, "end_of_track"))
    tracks = [conductor]
    for part in comp.parts:
        ch = part.channel
        ev = [MidiEvent(0, "track_name", 0, (part.name,)), MidiEvent(0, "program", ch, (part.program,))]
        ev += [MidiEvent(0, "control", ch, (cc, val)) for cc, val in
               ((7, part.volume), (10, part.pan), (91, part.reverb), (93, part.chorus))]
        for c in part.controls:
            if c.number == PITCH_BEND:
                ev.append(MidiEvent(tick(c.beat), "pitch_bend", ch, (max(-8192, min(8191, c.value)),)))
            else:
                ev.append(MidiEvent(tick(c.beat), "control", ch, (c.number, max(0, min(127, c.value)))))
        for n in part.notes:
            on = tick(n.start)
            ev.append(MidiEvent(on, "note_on", ch, (n.pitch, n.velocity)))
            ev.append(MidiEvent(max(on + 1, tick(n.start + n.duration)), "note_off", ch, (n.pitch, 0)))
        ev.append(MidiEvent(end, "end_of_track"))
        tracks.append(ev)
    return tracks


def write_midi(comp: Composition, path: str | Path, ppq: int = 480) -> Path:
    """Write ``comp`` as a format-1 Standard MIDI File at ``path``; returns the path."""
    path = Path(path)
    path.write_bytes(write_smf(composition_events(comp, ppq), ppq))
    return path
