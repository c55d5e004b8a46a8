"""Training-time distortions: what a query may have suffered on its way to us.

Place in the pipeline: the offline side only. The dataset builder, the
encoder's training cache and the benchmark's query builder pass clean music
through these functions; nothing at recognition time calls them. They teach
the engines what must *not* change their answer.

Two families, one module per kind of damage:

* **Edits of the recording** (``random_distortion`` in ``recipe`` draws
  them): speed (``timescale.speed_change``, a band-limited resampling),
  tempo (``timescale.time_stretch``, a phase vocoder with identity phase
  locking), pitch (``timescale.pitch_shift``), noise and other music
  (``mixing``), a phone band (``phone``), a simple room (``reverb``),
  low-bitrate MP3 (``codec``).
* **Acoustic chains** (``chain.apply_chain`` runs one drawn by
  ``chain.random_chain``): a loudspeaker (``devices``), a room made by the
  image-source method with a stochastic late tail (``rooms``), a microphone,
  automatic gain control and the capture path's resampling and clock drift
  (``devices``), the background noise of rooms (``ambience``: babble,
  traffic, HVAC, clatter), and the codecs a stream passes through
  (``transcode``: MP3, AAC, Opus through ffmpeg).

Every function is pure: a float32 mono array in, a new one out, randomness
only from an explicit ``np.random.Generator`` (so a shard rebuilt with the
same seed is bit-identical and worker processes never share a global RNG).
Lengths are in samples, rates in Hz, levels in dB. Bad arguments raise
``checks.AugmentValueError`` (an ``AudiocopyError`` and a ``ValueError``); a
missing codec raises ``checks.CodecUnavailable`` instead of quietly skipping
the damage, because a dataset silently built without it would only show up
as poor accuracy later.
"""
from .checks import AugmentError, AugmentValueError, CodecUnavailable, fit_length
from .codec import mp3_available, mp3_roundtrip
from .mixing import add_noise, mix_music, pink_noise, random_crop
from .phone import bandpass, phone
from .recipe import PEAK_DB_RANGE, codec_bitrates, random_distortion, resampling_choice
from .reverb import exponential_room_response, reverb
from .timescale import pitch_shift, speed_change, time_stretch

__all__ = ["PEAK_DB_RANGE", "AugmentError", "AugmentValueError", "CodecUnavailable", "add_noise", "bandpass",
           "codec_bitrates", "exponential_room_response", "fit_length", "mix_music", "mp3_available", "mp3_roundtrip",
           "phone", "pink_noise", "pitch_shift", "random_crop", "random_distortion", "resampling_choice", "reverb",
           "speed_change", "time_stretch"]
