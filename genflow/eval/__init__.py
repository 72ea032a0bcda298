"""Evaluation: metrics, step-count sweeps, tables and plots."""
