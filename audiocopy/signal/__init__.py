"""audiocopy/signal."""
