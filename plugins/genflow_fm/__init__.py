"""Flow-matching baselines: the flow-matching objective and the Euler / Heun samplers (the linear path
and the MLP backbone they are usually run with live in the core: ``genflow.components.paths``, ``genflow.components.mlp``)."""
