"""The ``genflow`` subcommands beyond train: check, sample, derivatives, new-plugin, and their helpers."""
