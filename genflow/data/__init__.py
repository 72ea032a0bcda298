"""Data: built-in datasets, zarr latent stores, loaders."""
