"""Errors of the procedural music generator.

Everything a caller of ``generate_corpus`` or the ``tools/generate_music.py``
CLI can cause (a bad setting, an output folder that cannot be written, a
missing renderer, a corpus folder made with other settings) is a
``MusicGenerationError``, itself an ``audiocopy.errors.AudiocopyError``, so
the CLI shows it as one ``error:`` line. Anything else is a bug.
"""
from __future__ import annotations

from audiocopy.errors import AudiocopyError


class MusicGenerationError(AudiocopyError):
    """Root of the music generator's user-facing errors."""


class BadSetting(MusicGenerationError):
    """A generator argument is out of range or unknown (track count, style, length)."""


class OutputError(MusicGenerationError):
    """The output folder cannot be created or written."""


class RendererUnavailable(MusicGenerationError):
    """``fluidsynth`` or every General MIDI soundfont is missing, or rendering failed."""


class ManifestMismatch(MusicGenerationError):
    """The output folder holds a corpus generated with other settings."""
