"""audiocopy/engines/cnnbin."""
