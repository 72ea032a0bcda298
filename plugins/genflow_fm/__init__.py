"""Flow-matching baselines: the linear path, the flow-matching objective, Euler / Heun samplers,
and an MLP backbone for low-dimensional data."""
