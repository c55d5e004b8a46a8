"""The per-track engine: one small binary model per licensed track, all scored in one pass.

Place in the pipeline: an ``engines.Engine`` beside ``fingerprint``.
``engine`` loads and scores a database (``CnnBinEngine``); ``stacked_head``
runs every track's embedding head over the shared encoder's vectors as one
matrix product (NumPy or CuPy); ``stacked_cnn`` runs the seed's spectrogram
CNNs as one grouped-convolution network. Training lives in ``training``.
"""
