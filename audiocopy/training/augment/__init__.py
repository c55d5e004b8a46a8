"""audiocopy/training/augment."""
