"""audiocopy/decision."""
