"""MeanFlow for genflow: an external plugin distribution built on genflow's public API only.

Geng, Deng, Bai, Kolter, He (2025), "Mean Flows for One-step Generative Modeling".
"""

__version__ = "0.1.0"
