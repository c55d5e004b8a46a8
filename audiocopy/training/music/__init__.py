"""Procedural music generator: fully synthetic training tracks for the encoder.

Place in the pipeline. Offline training data only: ``tools/generate_music.py``
(or ``generate_corpus``) writes a folder of WAV files and a manifest that
``tools/train_encoder.py --corpus`` can train on next to the dev corpus.
Nothing here is imported at serve time, and no packaged music is used: every
note is composed here, and the only outside material is instrument samples
from Debian's General MIDI soundfonts (or none, for the NumPy synthesiser).

The ideas. The encoder has to learn what makes one recording differ from
another similar-sounding one, so the generator aims for many *distinct but
realistic* tracks rather than a few polished ones:

* ``styles``: genres as bags of choices (tempo range, meters, modes,
  progressions, forms, GM instruments per role, comping, bass and drum
  patterns, swing, density), not templates;
* ``compose`` (with ``form``, ``melody``, ``accomp``, ``drums``,
  ``arrange``, ``theory``): a seeded composer that writes songs the way
  songs are built: sections that return (varied), motifs and cadences,
  diatonic harmony with voice leading, a final-chorus key change, fills,
  builds, swing, humanised timing and dynamics; output is a renderer-free
  ``score.Composition``;
* ``midi``: our own Standard MIDI File writer (and reader, for tests);
* ``render``: fluidsynth with a soundfont, reverb, chorus and gain drawn per
  track, downmixed, resampled to 22050 Hz, trimmed and peak-normalised;
  ``synth`` (with ``synth_drums``): a NumPy subtractive/FM/additive
  synthesiser and drum machine for a share of tracks so that not every
  track is GM samples;
* ``generate``: the resumable, parallel corpus writer and its manifest.

Public API: ``generate_corpus``, ``compose``, ``STYLES``/``Style``,
``write_midi``/``read_smf``, ``render_fluidsynth``/``find_soundfonts``,
``synth_render`` and the ``MusicGenerationError`` family.
"""
from __future__ import annotations

from .compose import compose
from .errors import BadSetting, ManifestMismatch, MusicGenerationError, OutputError, RendererUnavailable
from .generate import GENERATOR_VERSION, generate_corpus
from .midi import read_smf, write_midi, write_smf
from .render import find_soundfonts, fluidsynth_path, render_fluidsynth
from .score import Composition, Note, Part
from .styles import STYLES, Style
from .synth import render as synth_render

__all__ = ["compose", "generate_corpus", "GENERATOR_VERSION", "STYLES", "Style", "Composition", "Note", "Part",
           "write_midi", "write_smf", "read_smf", "find_soundfonts", "fluidsynth_path", "render_fluidsynth",
           "synth_render", "MusicGenerationError", "BadSetting", "OutputError", "RendererUnavailable",
           "ManifestMismatch"]
