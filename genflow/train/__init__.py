"""Training: component assembly, the generic trainer, checkpoints, EMA, logging."""
