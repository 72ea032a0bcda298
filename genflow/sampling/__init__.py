"""Sampling a run: opening a run folder, the fixed-noise sampling driver, pictures of samples."""
