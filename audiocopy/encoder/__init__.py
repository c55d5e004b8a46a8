"""audiocopy/encoder."""
