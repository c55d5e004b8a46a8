"""Convert a folder of audio files (MP3, FLAC, OGG, ...) to mono WAV.

Place in the pipeline: an offline tool stage that runs *before* dataset
building. Music usually arrives as MP3 or some other compressed format, in
stereo at 44.1 or 48 kHz; ``convert_folder`` turns one folder of it into the
layout the rest of the project reads, ``<dst_dir>/<stem>.wav``, where the
file stem is the track id (``data/audio/wav_licensed``, ``data/audio/wav_wrong``).

Why mono: recognition works on one channel. A microphone in a room, a phone
or a broadcast hears a mix of both channels, and ``audio.load_audio``
downmixes everything anyway, so a second channel would double the disk and
decoding cost without adding anything the features use.

Why 22050 Hz (the default): it keeps the band up to 11 kHz, comfortably above
the 8 kHz that the internal 16 kHz rate (``AudioParams.sample_rate``) keeps,
so that rate can be changed later, up to 22050 Hz, without converting the
music again. At half the CD rate and one channel, a track takes a quarter of
its CD size (2.6 MB a minute). Uncompressed WAV also decodes much faster than
MP3, which matters because dataset building reads every track many times, and
it decodes to the same samples everywhere, whereas MP3 decoders disagree on
the encoder's leading padding, which would shift every window.

Rules:

* Only the top level of ``src_dir`` is read (not recursive), so one output
  folder never receives two tracks with the same stem from different
  subfolders. Files whose extension ``audio.is_audio_file`` does not know
  (``.txt``, ``.jpg``, ``.m3u``, ...) and hidden files are ignored, with a
  debug log line: they are not music, so they are neither converted nor
  reported as failures.
* A source whose output exists and is not older than the source is skipped,
  so a rerun converts only what is new or changed.
* A file that cannot be decoded or written is recorded in
  ``ConvertReport.failed`` with the reason, logged as a warning, and the run
  goes on with the next file. So is a file whose output would collide with
  another source of the same stem (``song.mp3`` and ``song.flac``).
  Converting in place (``dst_dir`` = ``src_dir``) is refused: a ``song.wav``
  source would be overwritten by its own conversion or by that of ``song.mp3``.
* Each output is written atomically (``audio.write_wav``): an interrupted run
  never leaves a truncated WAV that a rerun would take for finished.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from ..config import AudioParams
from ..errors import AudiocopyError, ConfigError
from ..signal.audio import is_audio_file, load_audio, write_wav

log = logging.getLogger(__name__)

#: Default output rate in Hz (see the module docstring).
DEFAULT_SAMPLE_RATE = 22050


@dataclass(frozen=True)
class Failure:
    """One source file that could not be converted."""

    path: Path
    message: str


@dataclass(frozen=True)
class ConvertReport:
    """Outcome of ``convert_folder``; every entry names a *source* file.

    converted: sources written to ``dst_dir`` by this run.
    skipped: sources whose output already existed and was up to date.
    failed: sources that could not be converted, with the reason.
    All three are sorted by file name. The output of a source is
    ``output_path(source, dst_dir)``.
    """

    converted: tuple[Path, ...] = ()
    skipped: tuple[Path, ...] = ()
    failed: tuple[Failure, ...] = ()

    @property
    def ok(self) -> bool:
        """True when no file failed."""
        return not self.failed

    def summary(self) -> str:
        """One line for a CLI: counts of converted, skipped and failed files."""
        return f"{len(self.converted)} converted, {len(self.skipped)} up to date, {len(self.failed)} failed"


def output_path(src: str | os.PathLike, dst_dir: str | os.PathLike) -> Path:
    """Where ``convert_folder`` writes the conversion of ``src``: ``dst_dir/<stem>.wav``."""
    return Path(dst_dir) / (Path(src).stem + ".wav")


def list_sources(src_dir: str | os.PathLike) -> list[Path]:
    """Audio files directly inside ``src_dir`` (not recursive), sorted by name."""
    sources = []
    for path in sorted(Path(src_dir).iterdir()):
        if path.name.startswith(".") or not path.is_file() or not is_audio_file(path):
            log.debug("ignoring %s: hidden, not a file or not an audio format", path)
            continue
        sources.append(path)
    return sources


def _up_to_date(src: Path, dst: Path) -> bool:
    try:
        return dst.stat().st_mtime_ns >= src.stat().st_mtime_ns
    except FileNotFoundError:
        return False


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and a.samefile(b)
    except OSError:
        return False


def _convert_one(src: Path, dst: Path, params: AudioParams) -> None:
    """Decode ``src`` and write it as mono WAV ``dst``; raises AudiocopyError or OSError."""
    samples = load_audio(src, params=params, min_seconds=0)
    try:
        write_wav(dst, samples, params.sample_rate)
    except BaseException:
        dst.with_name(dst.name + ".part").unlink(missing_ok=True)
        raise


def _checked_folders(src_dir, dst_dir, sample_rate: int) -> tuple[Path, Path]:
    """The source and destination folders, checked (the destination is created)."""
    src_dir, dst_dir = Path(src_dir), Path(dst_dir)
    if not src_dir.is_dir():
        raise ConfigError(f"{src_dir}: no such folder")
    if dst_dir.resolve() == src_dir.resolve():
        raise ConfigError(f"{dst_dir}: the destination must be another folder than the source "
                          "(converting in place could overwrite source WAV files)")
    if sample_rate <= 0:
        raise ConfigError(f"sample rate must be a positive number of Hz, not {sample_rate}")
    dst_dir.mkdir(parents=True, exist_ok=True)
    return src_dir, dst_dir


def _one(src: Path, dst: Path, params: AudioParams, claimed: dict[Path, Path]) -> str:
    """Convert one file: "" when converted, "skipped" when up to date, else why it failed."""
    if dst in claimed:
        return f"same output file {dst.name} as {claimed[dst].name}; rename one of them"
    claimed[dst] = src
    if _same_file(src, dst):
        return "the output would overwrite the source; choose another destination folder"
    if _up_to_date(src, dst):
        log.debug("skipping %s: %s is up to date", src, dst)
        return "skipped"
    try:
        _convert_one(src, dst, params)
    except AudiocopyError as exc:
        return getattr(exc, "reason", None) or str(exc)
    except OSError as exc:  # unreadable source, full disk, no write permission
        return f"{exc.strerror or exc} ({exc.filename or dst})"
    return ""


def convert_folder(
    src_dir: str | os.PathLike,
    dst_dir: str | os.PathLike,
    *,
    sample_rate: int = DEFAULT_SAMPLE_RATE,
    progress: bool = True,
) -> ConvertReport:
    """Convert every audio file in ``src_dir`` to ``dst_dir/<stem>.wav``.

    src_dir: folder of audio files in any format ``audio.load_audio`` decodes;
        only its top level is read (see the module docstring for the rules).
    dst_dir: output folder, created when missing; it must not be ``src_dir``.
    sample_rate: output rate in Hz; outputs are mono 16-bit PCM.
    progress: show a tqdm progress bar on stderr.
    Returns a ``ConvertReport``. Raises ``ConfigError`` when ``src_dir`` is
    not a folder, ``dst_dir`` is the same folder or ``sample_rate`` is not
    positive; per-file problems never raise, they are reported.
    """
    from tqdm import tqdm

    src_dir, dst_dir = _checked_folders(src_dir, dst_dir, sample_rate)
    params = AudioParams(sample_rate=sample_rate)
    sources = list_sources(src_dir)
    log.info("converting %d audio files from %s to %s (mono, %d Hz)", len(sources), src_dir, dst_dir, sample_rate)
    converted: list[Path] = []
    skipped: list[Path] = []
    failed: list[Failure] = []
    claimed: dict[Path, Path] = {}  # output -> the source that produces it in this run
    with tqdm(sources, desc="convert", unit="file", disable=not progress) as bar:
        for src in bar:
            dst = output_path(src, dst_dir)
            problem = _one(src, dst, params, claimed)
            if problem == "skipped":
                skipped.append(src)
            elif problem:
                log.warning("cannot convert %s: %s", src, problem)
                failed.append(Failure(src, problem))
            else:
                converted.append(src)

    report = ConvertReport(tuple(converted), tuple(skipped), tuple(failed))
    log.info("conversion to %s: %s", dst_dir, report.summary())
    return report
