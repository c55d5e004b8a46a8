"""audiocopy/engines/fingerprint/index."""
