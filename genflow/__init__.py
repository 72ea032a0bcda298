"""genflow: a plugin-based PyTorch framework for training and sampling generative models."""

from genflow.plugins import hookimpl

__version__ = "0.1.0"
__all__ = ["hookimpl", "__version__"]
