"""Held-out splits: ``genflow prepare --holdout F`` writes a training store at ``--out`` and the
set-aside images to a sibling store, whose address follows from the training store's
(:func:`holdout_url`): ``x.zarr`` -> ``x-holdout.zarr``, ``x.zip`` -> ``x-holdout.zip``, ``x`` ->
``x-holdout``. The training store records ``holdout`` and ``split = "train"`` in its source
config, so evaluation finds its held-out images from the store alone (:func:`holdout_store`).
"""

from __future__ import annotations

from genflow.data.store import LatentStore
from genflow.errors import GenflowError

SUFFIXES = (".zarr", ".zip")


def holdout_url(url: str) -> str:
    """The address of the held-out store that belongs to the training store at ``url``."""
    base = url.rstrip("/")
    for suffix in SUFFIXES:
        if base.endswith(suffix) and len(base) > len(suffix):
            return f"{base[: -len(suffix)]}-holdout{suffix}"
    return f"{base}-holdout"


def holdout_fraction(store: LatentStore) -> float:
    """The fraction ``prepare --holdout`` set aside when ``store`` is a training split, else 0."""
    config = store.meta.source.get("config", {})
    if not isinstance(config, dict) or config.get("split", "train") != "train":
        return 0.0
    value = config.get("holdout", 0.0)
    return float(value) if isinstance(value, (int, float)) else 0.0


def holdout_store(store: LatentStore) -> LatentStore | None:
    """The held-out store of a training split written by ``prepare --holdout``; ``None`` when
    ``store`` has none. A recorded split that is missing or incomplete is a ``GenflowError``."""
    if holdout_fraction(store) <= 0:
        return None
    url = holdout_url(store.url)
    try:
        held = LatentStore(url)
    except GenflowError as exc:
        raise GenflowError(f"store '{store.url}' was prepared with --holdout, but its held-out split '{url}' "
                           f"cannot be read ({exc}); run the same genflow prepare again") from None
    if held.meta.channels != store.meta.channels or held.meta.num_classes != store.meta.num_classes:
        raise GenflowError(f"held-out store '{url}' does not match '{store.url}' (channels or classes differ); "
                           "prepare both with one genflow prepare --holdout")
    return held
