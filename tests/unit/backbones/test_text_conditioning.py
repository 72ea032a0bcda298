"""Text conditioning of ``tim-dit`` and ``unet``: key padding masks, the null caption, pooled text,
the text encoder in front of the backbone, and nothing of it without captions."""

from __future__ import annotations

import pytest
import torch
from genflow_tim.dit import DiTConfig, build_dit
from genflow_tim.unet import UNetConfig, build_unet

from genflow.guidance import drop_labels, has_condition, null_condition
from genflow.interfaces import Batch, Condition, Dataset, DataSpec
from genflow.sampling.driver import preview_conditions
from genflow.text.conditioned import TextConditioned
from genflow.text.encoder import TransformerTextConfig, build_transformer

TEXT_DIM = 24
SPEC = DataSpec(shape=(3, 16, 16), text=True, text_dim=TEXT_DIM)
BUILDERS = {
    "tim-dit": lambda spec, pooled=True: build_dit(DiTConfig(preset="debug", text_pooled=pooled), spec=spec),
    "unet": lambda spec, pooled=True: build_unet(UNetConfig(channels=(8, 16, 16), embedding_dim=16,
                                                            text_pooled=pooled), spec=spec),
}


def make(name: str, spec: DataSpec = SPEC, *, pooled: bool = True, seed: int = 0) -> torch.nn.Module:
    with torch.device("meta"):
        model = BUILDERS[name](spec, pooled)
    model.to_empty(device="cpu")
    torch.manual_seed(seed)
    model.init_weights()
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():  # zero-initialised outputs would hide the text path: randomise them
        for p in model.parameters():
            if p.dim() > 0 and not p.abs().sum():
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))
    return model.double().eval()


def inputs(n: int = 3) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(n, 3, 16, 16, generator=gen, dtype=torch.float64)
    t = torch.rand(n, generator=gen, dtype=torch.float64)
    return x, t, 0.5 * t


def caption(n: int = 3, length: int = 4, pad: int = 0) -> Condition:
    gen = torch.Generator().manual_seed(7)
    text = torch.randn(n, length + pad, TEXT_DIM, generator=gen, dtype=torch.float64)
    mask = torch.zeros(n, length + pad, dtype=torch.bool)
    for i in range(n):
        mask[i, : length - i] = True  # rows with 4, 3, 2 real tokens
    return Condition(text=text, text_mask=mask)


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_padding_tokens_do_not_change_the_output(name):
    model = make(name)
    x, t, r = inputs()
    base = caption()
    padded = caption(pad=5)
    padded = Condition(text=torch.cat([base.text, 100 * padded.text[:, 4:]], dim=1),  # wild values at padding
                       text_mask=torch.cat([base.text_mask, padded.text_mask[:, 4:]], dim=1))
    torch.testing.assert_close(model(x, t, r, padded), model(x, t, r, base), rtol=1e-10, atol=1e-10)
    # Changing a masked-out state of one row changes nothing; changing a real one does.
    hidden = base.text.clone()
    hidden[2, 3] += 5.0  # row 2 has 2 real tokens: position 3 is padding
    torch.testing.assert_close(model(x, t, r, Condition(text=hidden, text_mask=base.text_mask)), model(x, t, r, base))
    hidden[2, 0] += 5.0
    assert not torch.allclose(model(x, t, r, Condition(text=hidden, text_mask=base.text_mask))[2],
                              model(x, t, r, base)[2])


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_the_empty_caption_is_the_null_condition(name):
    model = make(name)
    x, t, r = inputs()
    cond = caption()
    null = null_condition(cond, SPEC)
    assert not null.text_mask.any()
    out_null = model(x, t, r, null)
    torch.testing.assert_close(out_null, model(x, t, r, Condition()))  # no text at all: the same
    assert torch.isfinite(out_null).all()
    assert not torch.allclose(out_null, model(x, t, r, cond))


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_text_layers_exist_only_with_captions(name):
    plain = DataSpec(shape=(3, 16, 16), num_classes=10)
    with torch.device("meta"):
        without = BUILDERS[name](plain)
        pooled, unpooled = BUILDERS[name](SPEC, True), BUILDERS[name](SPEC, False)
    names = [n for n, _ in without.named_parameters()]
    assert not any("cross" in n or "text" in n for n in names)
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(pooled) > count(unpooled) > count(without) - count(without.class_embedding)


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_pooled_text_reaches_the_output_without_cross_attention(name):
    model = make(name)
    x, t, r = inputs()
    cond = caption()
    for module in model.modules():  # silence every cross-attention: only the pooled path is left
        if type(module).__name__ == "TextCrossAttention":
            torch.nn.init.zeros_(module.proj.weight)
            torch.nn.init.zeros_(module.proj.bias)
    other = Condition(text=cond.text.flip(0), text_mask=cond.text_mask)
    assert not torch.allclose(model(x, t, r, cond), model(x, t, r, other))


def test_encoder_and_backbone_as_one_model_respect_padding():
    with torch.device("meta"):
        encoder = build_transformer(TransformerTextConfig(vocab_size=50, max_length=12, dim=TEXT_DIM, depth=2, heads=2))
        model = TextConditioned(build_dit(DiTConfig(preset="debug"), spec=SPEC), encoder)
    model.to_empty(device="cpu")
    torch.manual_seed(0)
    model.init_weights()
    model = make_nonzero(model).eval()
    assert set(dict(model.named_children())) == {"backbone", "text_encoder"}
    assert model.fsdp_units()[:2] == list(encoder.layers)
    ids = torch.tensor([[5, 6, 7], [8, 9, 0], [0, 0, 0]])
    padded = torch.cat([ids, torch.zeros(3, 4, dtype=torch.long)], dim=1)
    x, t, r = (v.float() for v in inputs())
    with torch.no_grad():
        a = model(x, t, r, Condition(text=ids, text_mask=ids != 0))
        b = model(x, t, r, Condition(text=padded, text_mask=padded != 0))
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def make_nonzero(model: torch.nn.Module) -> torch.nn.Module:
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 0 and not p.abs().sum():
                p.normal_(std=0.1)
    return model


def test_caption_dropout_empties_captions_at_the_rate():
    n = 4000
    cond = Condition(text=torch.ones(n, 3, dtype=torch.long), text_mask=torch.ones(n, 3, dtype=torch.bool))
    dropped = drop_labels(cond, 0.25, SPEC, torch.Generator().manual_seed(0))
    empty = ~dropped.text_mask.any(1)
    assert 0.22 < empty.float().mean() < 0.28
    assert (dropped.text[empty] == 0).all() and (dropped.text[~empty] == 1).all()
    assert drop_labels(cond, 0.0, SPEC, torch.Generator()) is cond


def test_xl1_text_to_image_parameter_count():
    with torch.device("meta"):
        model = build_dit(DiTConfig(preset="XL/1"), spec=DataSpec(shape=(4, 32, 32), text=True, text_dim=1152))
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(813.1e6, rel=1e-3)


def test_has_condition_finds_real_labels_and_non_empty_captions():
    mask = torch.tensor([[True, True], [False, False], [True, False]])
    text = Condition(text=torch.tensor([[4, 5], [0, 0], [4, 0]]), text_mask=mask)
    assert has_condition(text, DataSpec(shape=(3,), text=True)).tolist() == [True, False, True]
    labels = Condition(labels=torch.tensor([0, 10, 3]))
    assert has_condition(labels, DataSpec(shape=(3,), num_classes=10)).tolist() == [True, False, True]
    both = Condition(labels=torch.tensor([10, 10, 3]), text=text.text, text_mask=mask)
    assert has_condition(both, DataSpec(shape=(3,), num_classes=10, text=True)).tolist() == [True, False, True]
    assert has_condition(Condition(), DataSpec(shape=(3,))) is None
    assert has_condition(labels, DataSpec(shape=(3,))) is None  # labels the data does not use


class _CaptionedData(Dataset):
    """``reference`` returns ``n`` rows with a caption of ``row + 1`` tokens."""

    def __init__(self, text: bool) -> None:
        self.spec = DataSpec(shape=(2,), text=text)

    def loader(self, *, batch_size, rank, world_size, seed):
        raise NotImplementedError

    def reference(self, n, *, seed):
        mask = torch.arange(4) < torch.arange(1, n + 1)[:, None]
        return Batch(x=torch.zeros(n, 2), cond=Condition(text=mask.long(), text_mask=mask))


def test_preview_samples_use_captions_of_real_data():
    cond = preview_conditions(_CaptionedData(text=True), 3, seed=0, device=torch.device("cpu"))
    assert cond.text_mask.sum(1).tolist() == [1, 2, 3]
    assert preview_conditions(_CaptionedData(text=False), 3, seed=0, device=torch.device("cpu")) is None
