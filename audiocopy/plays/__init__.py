"""audiocopy/plays."""
