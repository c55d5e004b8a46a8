"""audiocopy/training/encoder."""
