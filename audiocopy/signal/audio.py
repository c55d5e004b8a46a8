"""Audio in: decode any file, downmix to mono, resample, convert raw PCM.

Place in the pipeline: the first stage. Whatever the source (a WAV on disk,
an MP3 upload, PCM frames from a browser microphone), it leaves this module
as a 1-D float32 NumPy array at ``AudioParams.sample_rate`` with samples in
[-1, 1]. Nothing downstream ever sees another rate or channel layout.

Decoding: libsndfile (through ``soundfile``) reads WAV, FLAC, OGG/Vorbis,
Opus and MP3 itself. Anything else (AAC/M4A, WMA, ...) goes through pydub,
which runs ffmpeg. Resampling uses soxr, a band-limited polyphase resampler:
naive interpolation would fold energy above the new Nyquist back into the
audible band and change exactly the spectral detail we match on.

Every failure becomes one ``BadAudio`` subclass naming the file.

Untrusted files (server uploads) go through ``load_audio_head`` instead: it
reads the declared length from the header, then decodes only the first
``max_seconds`` in blocks, downmixing and resampling each block as it comes,
so a small file that declares hours of audio costs no more memory than
``max_seconds`` of it. ffmpeg, where needed, may then read only local files
of audio container formats (no playlists, no network).
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..config import AudioParams
from ..errors import AudioTooShort, BadAudio, UnsupportedFormat

log = logging.getLogger(__name__)

_DEFAULT = AudioParams()
#: Internal sample rate in Hz, window and hop lengths (see ``AudioParams``).
SAMPLE_RATE = _DEFAULT.sample_rate
WINDOW_SECONDS = _DEFAULT.window_seconds
HOP_SECONDS = _DEFAULT.hop_seconds
WINDOW_SAMPLES = _DEFAULT.window_samples
HOP_SAMPLES = _DEFAULT.hop_samples

#: Extensions we try to decode. libsndfile handles the first group natively;
#: the second needs ffmpeg through pydub.
SNDFILE_EXTENSIONS = frozenset({".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aiff", ".aif"})
#: Of those, the ones some libsndfile builds lack: only these fall back to ffmpeg.
#: For the rest a libsndfile failure means the file itself is bad.
SNDFILE_OPTIONAL = frozenset({".mp3", ".opus"})
FFMPEG_EXTENSIONS = frozenset({".m4a", ".aac", ".mp4", ".wma", ".webm", ".mka"})
AUDIO_EXTENSIONS = SNDFILE_EXTENSIONS | FFMPEG_EXTENSIONS

#: PCM sample formats accepted from streaming clients.
PCM_FORMATS = {"s16le": np.dtype("<i2"), "f32le": np.dtype("<f4")}


def is_audio_file(path: str | os.PathLike) -> bool:
    """True when ``path`` has an extension that ``load_audio`` can decode."""
    return Path(path).suffix.lower() in AUDIO_EXTENSIONS


def to_mono(samples: np.ndarray) -> np.ndarray:
    """Average channels: (n,) or (n, channels) -> (n,) float32."""
    samples = np.asarray(samples, dtype=np.float32)
    if samples.ndim == 2:
        samples = samples.mean(axis=1)
    return np.ascontiguousarray(samples, dtype=np.float32)


def resample(samples: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """Band-limited resampling of a mono signal.

    samples: (n,) float32 at ``rate_in`` Hz. Returns (round(n*rate_out/rate_in),)
    float32 at ``rate_out`` Hz. A no-op when the rates match.
    """
    samples = np.asarray(samples, dtype=np.float32)
    if rate_in == rate_out or samples.size == 0:
        return samples
    import soxr  # imported lazily: only decoding paths need it

    return soxr.resample(samples, rate_in, rate_out, quality="HQ").astype(np.float32, copy=False)


def _decode_sndfile(path: Path) -> tuple[np.ndarray, int]:
    import soundfile as sf

    data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    return data, rate


def _decode_ffmpeg(path: Path) -> tuple[np.ndarray, int]:
    try:
        from pydub import AudioSegment
    except ImportError as exc:  # pragma: no cover - pydub is a hard dependency
        raise UnsupportedFormat(path, "pydub is not installed; cannot decode this format") from exc
    try:
        seg = AudioSegment.from_file(str(path))
    except FileNotFoundError as exc:
        raise UnsupportedFormat(path, "ffmpeg is not installed (apt-get install ffmpeg)") from exc
    except Exception as exc:  # pydub raises CouldntDecodeError and friends
        raise BadAudio(path, f"ffmpeg could not decode it ({type(exc).__name__})") from exc
    samples = np.array(seg.get_array_of_samples(), dtype=np.float32)
    samples /= float(1 << (8 * seg.sample_width - 1))
    return samples.reshape(-1, seg.channels), seg.frame_rate


def load_audio(
    path: str | os.PathLike,
    *,
    params: AudioParams = _DEFAULT,
    min_seconds: float | None = None,
) -> np.ndarray:
    """Decode a file to mono float32 at ``params.sample_rate``.

    path: any file with an extension in ``AUDIO_EXTENSIONS``.
    min_seconds: refuse audio shorter than this (default: one window,
        ``params.window_seconds``); pass 0 to accept any length.
    Returns (n,) float32 in [-1, 1].
    Raises ``UnsupportedFormat``, ``BadAudio`` (missing, empty, corrupt or
    truncated file) or ``AudioTooShort``.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    load_audio_checks(path)
    try:
        if suffix in SNDFILE_EXTENSIONS:
            try:
                data, rate = _decode_sndfile(path)
            except Exception as exc:
                if suffix not in SNDFILE_OPTIONAL:
                    raise BadAudio(path, f"could not decode ({exc})") from None
                # libsndfile can be built without MP3/Opus; ffmpeg is the fallback,
                # and its own failure is what we report.
                log.debug("libsndfile failed on %s (%s); trying ffmpeg", path, exc)
                data, rate = _decode_ffmpeg(path)
        else:
            data, rate = _decode_ffmpeg(path)
    except BadAudio:
        raise
    except Exception as exc:
        raise BadAudio(path, f"could not decode ({exc})") from exc
    samples = to_mono(data)
    if samples.size == 0:
        raise BadAudio(path, "contains no audio samples (truncated or empty stream)")
    if not np.all(np.isfinite(samples)):
        raise BadAudio(path, "contains NaN or infinite samples")
    samples = resample(samples, rate, params.sample_rate)
    need = params.window_seconds if min_seconds is None else min_seconds
    seconds = samples.size / params.sample_rate
    if seconds + 1e-9 < need:
        raise AudioTooShort(path, f"only {seconds:.2f} s of audio; at least {need:.2f} s is needed")
    return samples


# --- bounded decoding: the head of a file, never the whole -----------------

#: Client-rate frames decoded at a time by ``load_audio_head``.
HEAD_BLOCK_FRAMES = 65536
#: Audio decoded past ``max_seconds`` so the resampler sees what follows the
#: cut, as it does in a whole-file decode: the head is then the whole
#: signal's first samples exactly, and any audio there means "truncated".
HEAD_LOOKAHEAD_S = 0.5
#: ffmpeg demuxers allowed for uploads: audio containers only, so a file that
#: is really a playlist or a concat list is refused instead of followed.
FFMPEG_FORMATS = "mov,mp4,m4a,3gp,3g2,mj2,aac,asf,matroska,webm,mp3,ogg,wav,flac,aiff"


@dataclass(frozen=True)
class AudioHead:
    """The first part of a file (``load_audio_head``).

    samples: (n,) float32 at the requested rate, at most ``max_seconds``.
    declared_s: the length the file's header declares, or None when it
        declares none; a hint only (a header can lie), never a bound.
    truncated: audio followed the part decoded.
    """

    samples: np.ndarray
    declared_s: float | None
    truncated: bool


def declared_seconds(path: str | os.PathLike) -> float | None:
    """The duration a file's header declares (libsndfile, else ffprobe); None when unknown."""
    path = Path(path)
    if path.suffix.lower() in SNDFILE_EXTENSIONS:
        import soundfile as sf

        try:
            info = sf.info(str(path))
            if 0 < info.frames < 2 ** 62 and info.samplerate > 0:
                return info.frames / info.samplerate
        except (RuntimeError, OSError, ValueError) as exc:  # not for libsndfile: ffprobe may know it
            log.debug("libsndfile cannot read the header of %s: %s", path, exc)
    probe = _ffprobe(path)
    return probe[2] if probe else None


def _ffprobe(path: Path) -> tuple[int, int, float | None] | None:
    """(sample rate, channels, declared seconds or None) of the first audio stream, by ffprobe; None on failure."""
    import json
    import subprocess

    cmd = ["ffprobe", "-v", "error", "-protocol_whitelist", "file", "-format_whitelist", FFMPEG_FORMATS,
           "-select_streams", "a:0", "-show_entries", "stream=sample_rate,channels:format=duration",
           "-of", "json", "file:" + str(path)]
    try:
        out = subprocess.run(cmd, capture_output=True, timeout=30, check=True).stdout
        data = json.loads(out)
        stream = data["streams"][0]
        seconds = float(data.get("format", {}).get("duration", "nan"))
        return int(stream["sample_rate"]), int(stream["channels"]), seconds if np.isfinite(seconds) else None
    except FileNotFoundError as exc:
        raise UnsupportedFormat(path, "ffmpeg is not installed (apt-get install ffmpeg)") from exc
    except (subprocess.SubprocessError, OSError, ValueError, LookupError, TypeError) as exc:  # no audio stream
        log.debug("ffprobe failed on %s: %s", path, exc)
        return None


def _sndfile_head(path: Path, seconds: float):
    """(rate, channels, iterator of (n, channels) float32 blocks): the first ``seconds`` plus the lookahead."""
    import soundfile as sf

    f = sf.SoundFile(str(path))
    rate, channels = f.samplerate, f.channels

    def blocks():
        with f:
            left = int(seconds * rate) + int(HEAD_LOOKAHEAD_S * rate)
            while left > 0:
                block = f.read(min(HEAD_BLOCK_FRAMES, left), dtype="float32", always_2d=True)
                if not len(block):
                    return
                left -= len(block)
                yield block
    return rate, channels, blocks()


def _ffmpeg_head(path: Path, seconds: float):
    """As ``_sndfile_head``, through ffmpeg (``-t``: it stops decoding at ``seconds``)."""
    import subprocess

    probe = _ffprobe(path)
    if probe is None or probe[0] <= 0 or probe[1] <= 0:
        raise BadAudio(path, "ffmpeg finds no audio stream in it")
    rate, channels, _ = probe
    frames = int(seconds * rate) + int(HEAD_LOOKAHEAD_S * rate)
    cmd = ["ffmpeg", "-nostdin", "-v", "error", "-protocol_whitelist", "file", "-format_whitelist", FFMPEG_FORMATS,
           "-i", "file:" + str(path), "-map", "0:a:0", "-t", f"{frames / rate:.6f}", "-f", "f32le",
           "-c:a", "pcm_f32le", "pipe:1"]

    def blocks():
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
        try:
            frame_bytes = 4 * channels
            while chunk := proc.stdout.read(HEAD_BLOCK_FRAMES * frame_bytes):
                usable = len(chunk) - len(chunk) % frame_bytes
                yield np.frombuffer(chunk[:usable], dtype="<f4").reshape(-1, channels)
        finally:
            proc.kill()
            _, err = proc.communicate()
            if proc.returncode not in (0, -9) and err:
                log.debug("ffmpeg on %s: %s", path, err.decode("utf-8", "replace")[-300:])
    return rate, channels, blocks()


# Long: one decode loop with its checks in the order they apply
def load_audio_head(
    path: str | os.PathLike,
    *,
    params: AudioParams = _DEFAULT,
    max_seconds: float,
    min_seconds: float | None = None,
) -> AudioHead:
    """Decode at most the first ``max_seconds`` of a file, in blocks, to mono float32.

    Memory stays bounded whatever the file holds (a small FLAC can declare
    hours of audio): blocks of ``HEAD_BLOCK_FRAMES`` are downmixed and
    resampled as they come (soxr's stream resampler gives the same samples
    as ``resample`` on the whole), and decoding stops at ``max_seconds``.
    The result equals ``load_audio``'s first ``max_seconds``.

    Raises what ``load_audio`` raises.
    """
    import soxr

    path = Path(path)
    suffix = path.suffix.lower()
    load_audio_checks(path)
    declared = declared_seconds(path)
    try:
        if suffix in SNDFILE_EXTENSIONS:
            try:
                rate, _, blocks = _sndfile_head(path, max_seconds)
            except (RuntimeError, OSError, ValueError) as exc:  # what soundfile raises for a file it cannot open
                if suffix not in SNDFILE_OPTIONAL:
                    raise BadAudio(path, f"could not decode ({exc})") from None
                rate, _, blocks = _ffmpeg_head(path, max_seconds)
        else:
            rate, _, blocks = _ffmpeg_head(path, max_seconds)
        stream = soxr.ResampleStream(rate, params.sample_rate, 1, dtype="float32", quality="HQ")
        out, taken, limit = [], 0, int(max_seconds * rate)
        for block in blocks:
            mono = to_mono(block)
            taken += len(block)
            if not np.all(np.isfinite(mono)):
                raise BadAudio(path, "contains NaN or infinite samples")
            out.append(mono if rate == params.sample_rate else stream.resample_chunk(mono))
        if rate != params.sample_rate:
            out.append(stream.resample_chunk(np.zeros(0, np.float32), last=True))
    except BadAudio:
        raise
    except Exception as exc:
        raise BadAudio(path, f"could not decode ({exc})") from exc
    samples = np.concatenate(out) if out else np.zeros(0, np.float32)
    samples = samples[: int(max_seconds * params.sample_rate)]
    if samples.size == 0:
        raise BadAudio(path, "contains no audio samples (truncated or empty stream)")
    need = params.window_seconds if min_seconds is None else min_seconds
    seconds = samples.size / params.sample_rate
    if seconds + 1e-9 < need:
        raise AudioTooShort(path, f"only {seconds:.2f} s of audio; at least {need:.2f} s is needed")
    return AudioHead(samples, declared, truncated=taken > limit)


def load_audio_checks(path: Path) -> None:
    """The checks every decode starts with: a known extension, an existing, non-empty file."""
    suffix = path.suffix.lower()
    if path.is_dir():
        raise BadAudio(path, "is a folder, not an audio file")
    if suffix not in AUDIO_EXTENSIONS:
        raise UnsupportedFormat(path, f"unsupported file type {suffix or '(none)'!r}; "
                                      f"expected one of {', '.join(sorted(AUDIO_EXTENSIONS))}")
    if not path.is_file():
        raise BadAudio(path, "no such file")
    if path.stat().st_size == 0:
        raise BadAudio(path, "file is empty")


def pcm_to_float(data: bytes, fmt: str, channels: int = 1) -> np.ndarray:
    """Raw interleaved PCM bytes -> mono float32 in [-1, 1].

    fmt: "s16le" (16-bit signed little-endian) or "f32le" (32-bit float).
    Raises ``BadAudio`` for an unknown format or a byte count that is not a
    whole number of frames.
    """
    if fmt not in PCM_FORMATS:
        raise BadAudio("pcm", f"unsupported sample format {fmt!r}; use one of {sorted(PCM_FORMATS)}")
    dtype = PCM_FORMATS[fmt]
    frame_bytes = dtype.itemsize * channels
    if len(data) % frame_bytes:
        raise BadAudio("pcm", f"{len(data)} bytes is not a whole number of {channels}-channel {fmt} frames")
    samples = np.frombuffer(data, dtype=dtype).astype(np.float32)
    if fmt == "s16le":
        samples /= 32768.0
    else:
        samples = np.nan_to_num(samples, nan=0.0, posinf=1.0, neginf=-1.0)
    # Mono needs no downmix: a mean over one channel cost as much as the conversion itself.
    return samples if channels == 1 else to_mono(samples.reshape(-1, channels))


def write_wav(path: str | os.PathLike, samples: np.ndarray, sample_rate: int) -> None:
    """Write mono float samples as 16-bit PCM WAV, atomically (tmp + rename)."""
    import soundfile as sf

    path = Path(path)
    tmp = path.with_name(path.name + ".part")
    try:
        sf.write(str(tmp), np.clip(samples, -1.0, 1.0), sample_rate, subtype="PCM_16", format="WAV")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
