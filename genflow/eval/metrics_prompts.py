"""``prompt_*`` metrics: how well caption-conditioned ``shapes`` samples follow their prompts.

``genflow eval`` samples a text-conditioned run from the fixed prompt set of
:func:`genflow.eval.compositional.prompt_set` (the same prompts at every step count) and each
metric is the fraction of samples whose attribute matches (:mod:`genflow.eval.compositional`):
``prompt_colour``, ``prompt_shape``, ``prompt_count``, ``prompt_position`` (two-group prompts),
``prompt_overall``; ``prompt_single_colour`` / ``prompt_single_shape`` / ``prompt_single_overall``
score the one-object prompts ("a red circle") alone.
"""

from __future__ import annotations

import math
from typing import Any

import attrs
import numpy as np

from genflow.errors import GenflowError
from genflow.eval import compositional
from genflow.eval.metrics_shapes import shapes_config_of
from genflow.interfaces import Dataset, EvalContext, EvalSamples, Metric
from genflow.registry import Component

ATTRIBUTES = ("colour", "shape", "count", "position", "overall")
SINGLE_ATTRIBUTES = ("colour", "shape", "overall")


@attrs.frozen(kw_only=True)
class PromptConfig:
    """No options: the prompt set and the detector are fixed so numbers compare across runs."""


class PromptAccuracy(Metric):
    """Fraction of samples whose ``attribute`` matches the prompt; ``single``: one-object prompts only."""

    higher_is_better = True

    def __init__(self, attribute: str, *, single: bool = False) -> None:
        self.attribute = attribute
        self.single = single
        self.name = f"prompt_{'single_' if single else ''}{attribute}"

    def applies_to(self, dataset: Dataset) -> bool:
        return shapes_config_of(dataset) is not None and dataset.spec.text

    def prepare(self, context: EvalContext) -> None:
        if not self.applies_to(context.dataset):
            raise GenflowError(f"metric '{self.name}' needs a caption-conditioned run on shapes "
                               "(data.condition = \"text\")")

    def provenance(self, context: EvalContext) -> dict[str, Any]:
        return {"prompts": "genflow.eval.compositional.prompt_set", "detector": "genflow.eval.compositional.detect"}

    def __call__(self, batch: EvalSamples, context: EvalContext) -> float:
        if batch.captions is None:
            raise GenflowError(f"metric '{self.name}' needs caption-conditioned samples")
        shapes = shapes_config_of(context.dataset)
        assert shapes is not None
        scores = batch.memo("prompts/scores", lambda: compositional.score_images(
            batch.samples, batch.captions or [], shapes.colours, shapes.shapes))
        rows = [s for s, c in zip(scores, batch.captions, strict=True) if s is not None
                and (not self.single or _single(c))]
        values = [s[self.attribute] for s in rows if not math.isnan(s[self.attribute])]
        return float(np.mean(values)) if values else math.nan


def _single(caption: str) -> bool:
    prompt = compositional.parse_caption(caption)
    return prompt is not None and len(prompt.groups) == 1 and prompt.groups[0].count == 1


def components() -> list[Component]:
    """The ``prompt_*`` metrics as registry components."""
    out = []
    for single, attributes in ((False, ATTRIBUTES), (True, SINGLE_ATTRIBUTES)):
        for attribute in attributes:
            metric = PromptAccuracy(attribute, single=single)
            which = "one-object prompts" if single else "prompt-set samples"
            out.append(Component(name=metric.name, config=PromptConfig,
                                 build=lambda config, _a=attribute, _s=single: PromptAccuracy(_a, single=_s),
                                 description=f"shapes captions: fraction of {which} whose {attribute} is followed"))
    return out
