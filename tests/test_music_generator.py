"""The procedural music generator: MIDI I/O, composition, rendering and the corpus writer.

Fast and CPU-only: pieces are a few seconds long, the corpus test uses the
NumPy synthesiser, and the fluidsynth test is skipped (with the reason)
where fluidsynth or a General MIDI soundfont is not installed.
"""
from __future__ import annotations

import json
import os
import random

import numpy as np
import pytest

from audiocopy.errors import AudiocopyError
from audiocopy.training.music import errors, midi, render, synth, theory
from audiocopy.training.music.compose import compose
from audiocopy.training.music.generate import MANIFEST, generate_corpus
from audiocopy.training.music.styles import STYLES

RATE = 22050


def test_vlq_known_values():
    assert midi.vlq(0) == b"\x00"
    assert midi.vlq(127) == b"\x7f"
    assert midi.vlq(128) == b"\x81\x00"
    assert midi.vlq(0x0FFFFFFF) == b"\xff\xff\xff\x7f"
    with pytest.raises(ValueError):
        midi.vlq(1 << 28)


def test_handmade_track_round_trips():
    E = midi.MidiEvent
    track = [E(0, "track_name", 0, ("lead",)), E(0, "tempo", 0, (500000,)), E(0, "time_signature", 0, (6, 8, 36, 8)),
             E(0, "program", 3, (81,)), E(0, "control", 3, (7, 100)), E(10, "pitch_bend", 3, (-8192,)),
             E(11, "pitch_bend", 3, (8191,)), E(20, "note_on", 3, (60, 100)), E(20, "note_on", 3, (64, 90)),
             E(500, "note_off", 3, (60, 0)), E(500, "note_off", 3, (64, 0)), E(70000, "note_on", 3, (67, 1)),
             E(70480, "note_off", 3, (67, 0))]
    ppq, tracks = midi.read_smf(midi.write_smf([track], ppq=96))
    assert ppq == 96
    assert tracks == [midi.sort_events(track) + [E(70480, "end_of_track")]]


def test_composition_midi_parses_back_to_the_same_events(tmp_path):
    comp = compose("jazz", 4, 12)
    written = midi.composition_events(comp)
    path = midi.write_midi(comp, tmp_path / "piece.mid")
    ppq, tracks = midi.read_smf(path.read_bytes())
    assert ppq == 480 and len(tracks) == 1 + len(comp.parts)
    for wrote, read in zip(written, tracks):
        end = max(e.tick for e in wrote)
        body = [e for e in wrote if e.kind != "end_of_track"]
        assert read == midi.sort_events(body) + [midi.MidiEvent(end, "end_of_track")]
    notes_on = sum(1 for t in tracks for e in t if e.kind == "note_on")
    assert notes_on == sum(len(p.notes) for p in comp.parts)


def test_composition_is_deterministic_and_differs_across_seeds():
    a, b = compose("pop", 5, 30), compose("pop", 5, 30)
    assert a == b
    c = compose("pop", 6, 30)
    assert c != a
    assert [n.pitch for n in c.part("lead").notes] != [n.pitch for n in a.part("lead").notes]


def test_durations_follow_the_request():
    for style in STYLES:
        for seconds in (8, 45):
            comp = compose(style, 2, seconds)
            assert abs(comp.duration_s - seconds) / seconds < 0.25, (style, seconds, comp.duration_s)


def test_styles_differ_in_tempo_and_instruments():
    seeds = range(6)
    tempo = {s: [compose(s, k, 20).tempo for k in seeds] for s in ("ambient", "electronic", "metal", "piano")}
    assert max(tempo["ambient"]) < min(tempo["electronic"])
    programs = {s: {p.program for k in seeds for p in compose(s, k, 20).parts if not p.is_drums}
                for s in ("piano", "metal", "chiptune", "orchestral")}
    assert programs["piano"] <= set(range(8))
    assert programs["metal"] & {29, 30} and not programs["metal"] & programs["piano"]
    assert programs["chiptune"] <= set(range(80, 88)) | {38, 39}
    assert programs["orchestral"].isdisjoint(programs["chiptune"])
    assert all(not any(p.is_drums for p in compose("piano", k, 20).parts) for k in seeds)


def test_melodies_stay_in_the_declared_key():
    chromatic = 0
    for style in STYLES:
        for seed in range(3):
            comp = compose(style, seed, 40)
            for part in comp.parts:
                if part.is_drums:
                    continue
                for n in part.notes:
                    key = comp.key_at(n.start)
                    in_scale = n.pitch % 12 in theory.scale_pcs(key.tonic, key.mode)
                    if n.chromatic:
                        chromatic += 1
                        assert not in_scale, (style, part.role, n)
                    else:
                        assert in_scale, (style, seed, part.role, n, key)
    assert chromatic > 0


def test_key_change_transposes_the_returning_chorus():
    comp = next(c for c in (compose("pop", k, 120) for k in range(40)) if len(c.keys) > 1)
    assert comp.keys[1].beat > 0 and comp.keys[1].tonic != comp.keys[0].tonic
    assert comp.key_at(comp.keys[1].beat + 1) == comp.keys[1]


def test_numpy_synth_renders_the_right_length_without_nan_or_clipping():
    comp = compose("electronic", 3, 6)
    audio = synth.render(comp, RATE, seed=1, tail_s=1.0)
    assert audio.dtype == np.float32
    assert abs(len(audio) / RATE - (comp.duration_s + 1.0)) < 0.05
    assert np.all(np.isfinite(audio)) and np.max(np.abs(audio)) <= 1.0
    done = render.finish(audio, RATE, random.Random(0))
    assert 0.7 < np.max(np.abs(done)) <= 0.97
    assert comp.duration_s - 1.0 < len(done) / RATE <= comp.duration_s + 1.0
    assert np.sqrt(np.mean(done ** 2)) > 0.01


def test_fluidsynth_renders_a_short_track():
    if render.fluidsynth_path() is None:
        pytest.skip("fluidsynth is not installed (apt-get install fluidsynth)")
    fonts = render.find_soundfonts()
    if not fonts:
        pytest.skip("no General MIDI soundfont installed (apt-get install fluid-soundfont-gm)")
    font = min(fonts, key=lambda f: f.size)
    comp = compose("pop", 1, 8)
    settings = render.random_fluid_settings(random.Random(3))
    audio = render.finish(render.render_fluidsynth(comp, font, settings, RATE), RATE, random.Random(3))
    seconds = len(audio) / RATE
    assert comp.duration_s - 1.5 < seconds < comp.duration_s + 4.0, (seconds, comp.duration_s)
    assert np.all(np.isfinite(audio)) and np.sqrt(np.mean(audio ** 2)) > 0.02


def test_soundfont_presets_are_read():
    fonts = render.find_soundfonts()
    if not fonts:
        pytest.skip("no General MIDI soundfont installed")
    font = min(fonts, key=lambda f: f.size)
    have = render.presets(os.path.realpath(font.path))
    assert (0, 0) in have and any(bank == 128 for bank, _ in have)


def test_corpus_is_written_resumed_and_guarded(tmp_path):
    out = tmp_path / "corpus"
    kwargs = dict(n_tracks=2, seed=3, seconds_range=(4, 6), styles=["folk", "hiphop"], jobs=1, progress=False,
                  synth_share=1.0)
    manifest = generate_corpus(out, **kwargs)
    files = sorted(p.name for p in out.glob("*.wav"))
    assert files == sorted(t["file"] for t in manifest["tracks"]) and len(files) == 2
    assert all(f.startswith("gen-3-") for f in files)
    assert {t["style"] for t in manifest["tracks"]} == {"folk", "hiphop"}
    assert all(t["target_seconds"] - 1.5 < t["duration"] < t["target_seconds"] + 4.0 for t in manifest["tracks"])
    assert all(t["renderer"] == "numpy" for t in manifest["tracks"])
    assert json.loads((out / MANIFEST).read_text())["track_ids_sha256"] == manifest["track_ids_sha256"]
    stamps = {p.name: p.stat().st_mtime_ns for p in out.glob("*.wav")}
    again = generate_corpus(out, **kwargs)
    assert again["tracks"] == manifest["tracks"]
    assert stamps == {p.name: p.stat().st_mtime_ns for p in out.glob("*.wav")}
    with pytest.raises(errors.ManifestMismatch, match="seconds_range"):
        generate_corpus(out, **{**kwargs, "seconds_range": (4, 7)})


@pytest.mark.parametrize("change, error", [
    ({"n_tracks": 0}, errors.BadSetting), ({"n_tracks": -3}, errors.BadSetting),
    ({"styles": ["polka"]}, errors.BadSetting), ({"styles": []}, errors.BadSetting),
    ({"seconds_range": (10, 5)}, errors.BadSetting), ({"seconds_range": (0, 5)}, errors.BadSetting),
    ({"seconds_range": ("a", 5)}, errors.BadSetting), ({"jobs": 0}, errors.BadSetting),
])
def test_bad_settings_are_clear_errors(tmp_path, change, error):
    kwargs = dict(n_tracks=1, seed=1, seconds_range=(4, 5), jobs=1, progress=False, synth_share=1.0)
    with pytest.raises(error) as info:
        generate_corpus(tmp_path / "out", **{**kwargs, **change})
    assert isinstance(info.value, errors.MusicGenerationError) and isinstance(info.value, AudiocopyError)
    assert not (tmp_path / "out" / MANIFEST).exists()


def test_unwritable_output_folder_is_a_clear_error(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(errors.OutputError, match="cannot write"):
        generate_corpus(blocker / "out", n_tracks=1, seed=1, seconds_range=(4, 5), jobs=1, progress=False,
                        synth_share=1.0)


def test_unknown_style_for_compose():
    with pytest.raises(errors.BadSetting, match="known styles"):
        compose("polka", 1, 10)
    with pytest.raises(errors.BadSetting):
        compose("pop", 1, -5)


def test_cli_reports_one_error_line(tmp_path, capsys):
    import generate_music

    assert generate_music.main(["--out", str(tmp_path / "o"), "--tracks", "0", "-q"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: n_tracks")
