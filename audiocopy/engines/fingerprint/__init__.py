"""audiocopy/engines/fingerprint."""
