"""Transition Models (TiM, arXiv 2509.04394): the state-transition objective, DDE and JVP
derivative providers, the interval-aware DiT, a UNet for CPU work, and the transition sampler."""
