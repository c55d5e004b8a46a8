"""The signal stage: any audio in, 2.5 s windows and their log-frequency band levels out.

Place in the pipeline: the first stage, under everything else but config.
``audio`` decodes files and raw PCM to mono float32 at the internal rate;
``stream_resampler`` brings a live stream to that rate without holding
samples back; ``windows`` cuts 2.5 s windows every 0.5 s (whole signals
and live streams alike); ``features`` computes the FFT band levels every
engine reads, as pure functions over arrays; ``xp`` picks NumPy or CuPy
for them.
"""
