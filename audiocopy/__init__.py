"""audiocopy: recognise copyrighted music in live audio from 2.5 s fragments.

The package is layered so that data flows one way::

    audio -> stream -> features -> models -> engines -> recognizer -> plays
      (decode)  (windows)  (log-FFT)   (Keras)   (cnnbin |     (Detection)
                                                  fingerprint)
    training/, web/, cli  are thin shells on top.

Importing ``audiocopy`` is cheap: TensorFlow is imported only by the modules
that build, train or load Keras models, and only when they are used.
"""
__version__ = "0.1.0"
