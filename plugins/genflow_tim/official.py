"""Import the released Transition Models weights (arXiv 2509.04394; github.com/WZDTHU/TiM) into a
genflow run folder: ``genflow import tim-official FILE --preset PRESET --out RUN``.

The official class-conditional network computes the same function as genflow's ``tim-dit`` with
the layout options ``qk_norm = "layer"``, ``rope_pairs = "interleaved"``, ``rope_first_axis =
"col"`` (docs/parity.md). The mapping is strict: the file must hold exactly the tensors of the
official model for the preset (``official_c2i_manifest``), each of the expected shape; anything
else is one ``GenflowError`` line (exit 2) before anything is written.

Tensor by tensor (official -> genflow): ``x_embedder.proj`` -> ``patch_embed``; ``t_embedder`` ->
``phi_t``; ``delta_embedder`` (``t - r``) -> ``phi_dt``; ``y_embedder.embedding_table`` (row
``num_classes`` is the null class in both) -> ``class_embedding``; per block ``attn.qkv``,
``attn.qkv_d`` -> ``attn.qkv``, ``attn.qkv_interval``; ``attn.{q,k}_norm``, ``attn.proj`` unchanged;
the SwiGLUs' ``fc1_g``, ``fc1_x`` stacked (gate first) -> ``fc_in``, ``fc2`` -> ``fc_out``
(``mlp``, ``adaLN_modulation`` -> ``adaln``); ``final_layer`` -> ``final``; the REPA ``projector``
kept for fine-tuning (unused when sampling).

The official text-to-image network is ``tim-dit`` with, in addition, ``caption_embedder =
"norm-swiglu"``, ``cross_attention = "gated"`` and ``text_pooled = false`` (``convert_t2i``:
``y_embedder`` -> ``caption_embedder``, ``blocks.i.cross_attn`` -> ``blocks.i.cross``); its null
condition is the text encoder's encoding of the empty prompt, which the file does not hold:
``--null-caption FILE`` gives it, and it is stored as the DiT's ``null_caption`` buffer.
"""

from __future__ import annotations

import json
import pathlib
import struct
from collections.abc import Mapping

import attrs
import torch
from torch import Tensor

from genflow.errors import GenflowError

#: dtypes of the safetensors format that released weights use.
_SAFETENSORS_DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
                       "I64": torch.int64, "I32": torch.int32}


@attrs.frozen(kw_only=True)
class OfficialModel:
    """One released (or released-layout) official network and the genflow preset it imports into.

    Sizes are read from the official configs (``configs/c2i/*.yaml``, ``configs/t2i/*.yaml``) and
    model code: ``lora_rank`` is ``lora_hidden_size``, ``encoder_depth`` the block the REPA projector
    reads, ``z_dim`` / ``projector_dim`` its output / hidden widths. ``guidance``,
    ``guidance_interval`` and ``stochasticity`` are the official many-step sampling settings
    (``scripts/sample/c2i/sample_*.sh``: ``--cfg-scale``, ``--guidance-low/high``,
    ``--stochasticity-ratio``); with them one step at ``t = 1`` lies outside the interval and runs
    unguided and deterministic, as the official one-step setting (``--cfg-scale 1.0``).
    Text-to-image only (``configs/t2i/tim_xl_p1_t2i.yaml``): ``cap_dim`` the text encoder's width,
    ``max_length`` its tokens per caption (the null caption's length), ``text_encoder`` /
    ``text_encoder_path`` the run's ``[text_encoder]`` component and its weights.
    """

    name: str
    kind: str  # "c2i" or "t2i"
    hidden: int
    depth: int
    heads: int
    patch: int
    channels: int
    latent: int  # latent side at the released resolution
    lora_rank: int
    encoder_depth: int
    z_dim: int = 768
    projector_dim: int = 2048
    num_classes: int = 1000
    autoencoder: str = "diffusers-kl"
    pretrained: str = "stabilityai/sd-vae-ft-ema"
    guidance: float = 2.5
    guidance_interval: tuple[float, float] = (0.0, 0.6)
    stochasticity: float = 0.2
    cap_dim: int = 1152  # t2i: the text-encoder width (gemma-3-1b-it's hidden size)
    max_length: int = 256  # t2i: the official max_seq_length, the null caption's length
    text_encoder: str = "gemma"  # t2i: the run's text_encoder component
    text_encoder_path: str = "google/gemma-3-1b-it"


#: genflow's reference presets and the official model each imports.
OFFICIAL_MODELS: dict[str, OfficialModel] = {
    "imagenet256-b4": OfficialModel(name="TiM-B/4 (tim_b_p4)", kind="c2i", hidden=768, depth=12, heads=12,
                                    patch=4, channels=4, latent=32, lora_rank=256, encoder_depth=4),
    "imagenet256-xl2": OfficialModel(name="TiM-C2I-256 (tim_xl_p2_256)", kind="c2i", hidden=1152, depth=28,
                                     heads=16, patch=2, channels=4, latent=32, lora_rank=384, encoder_depth=8),
    "imagenet512-xl1": OfficialModel(name="TiM-C2I-512 (tim_xl_p1_512)", kind="c2i", hidden=1152, depth=28,
                                     heads=16, patch=1, channels=32, latent=16, lora_rank=384, encoder_depth=8,
                                     autoencoder="diffusers-dc",
                                     pretrained="mit-han-lab/dc-ae-f32c32-sana-1.1-diffusers",
                                     guidance=3.0, guidance_interval=(0.0, 0.7)),
    # the official T2I sampling scripts (scripts/sample/t2i/*.sh): --cfg-scale 2.5, guidance on the
    # open interval 0 < t < 1 (never the first step, at t = 1); genflow's interval is closed
    "t2i-xl1": OfficialModel(name="TiM-T2I (tim_xl_p1_t2i)", kind="t2i", hidden=1152, depth=28, heads=16,
                             patch=1, channels=32, latent=32, lora_rank=384, encoder_depth=8, num_classes=0,
                             autoencoder="diffusers-dc", pretrained="mit-han-lab/dc-ae-f32c32-sana-1.1-diffusers",
                             guidance=2.5, guidance_interval=(0.0, 0.999999), stochasticity=0.0),
}


# --------------------------------------------------------------------------------------------
# The official layout
# --------------------------------------------------------------------------------------------


def _swiglu(prefix: str, dim: int, hidden: int, out: int) -> dict[str, tuple[int, ...]]:
    """timm's ``SwiGLU`` (``fc1_g``, ``fc1_x``: dim -> hidden; ``fc2``: hidden -> out; biases)."""
    return {f"{prefix}.fc1_g.weight": (hidden, dim), f"{prefix}.fc1_g.bias": (hidden,),
            f"{prefix}.fc1_x.weight": (hidden, dim), f"{prefix}.fc1_x.bias": (hidden,),
            f"{prefix}.fc2.weight": (out, hidden), f"{prefix}.fc2.bias": (out,)}


def _linear(prefix: str, dim: int, out: int, bias: bool = True) -> dict[str, tuple[int, ...]]:
    return {f"{prefix}.weight": (out, dim), **({f"{prefix}.bias": (out,)} if bias else {})}


def official_c2i_manifest(model: OfficialModel) -> dict[str, tuple[int, ...]]:
    """Every tensor of the official class-conditional network (``tim/models/c2i/tim_model.py``,
    ``qk_norm``, ``use_new_embed``, ``distance_aware`` on, as in every official config) and its shape.
    RoPE tables are non-persistent buffers, not in the file."""
    D, p, C, hd = model.hidden, model.patch, model.channels, model.hidden // model.heads
    keys: dict[str, tuple[int, ...]] = {"x_embedder.proj.weight": (D, C, p, p), "x_embedder.proj.bias": (D,)}
    for embedder in ("t_embedder", "delta_embedder"):
        keys |= _linear(f"{embedder}.mlp.0", 256, D) | _linear(f"{embedder}.mlp.2", D, D)
    keys["y_embedder.embedding_table.weight"] = (model.num_classes + 1, D)
    for i in range(model.depth):
        b = f"blocks.{i}"
        keys |= _linear(f"{b}.attn.qkv", D, 3 * D) | _linear(f"{b}.attn.qkv_d", D, 3 * D, bias=False)
        for norm in ("q_norm", "k_norm"):
            keys |= {f"{b}.attn.{norm}.weight": (hd,), f"{b}.attn.{norm}.bias": (hd,)}
        keys |= _linear(f"{b}.attn.proj", D, D)
        keys |= _swiglu(f"{b}.mlp", D, (8 * D) // 3, D)
        keys |= _swiglu(f"{b}.adaLN_modulation", D, model.lora_rank, 6 * D)
    keys |= _linear("projector.0", D, model.projector_dim) | _linear("projector.2", model.projector_dim,
                                                                     model.projector_dim)
    keys |= _linear("projector.4", model.projector_dim, model.z_dim)
    keys |= _linear("final_layer.linear", D, p * p * C) | _swiglu("final_layer.adaLN_modulation", D, D // 2, 2 * D)
    return keys


def official_t2i_manifest(model: OfficialModel, cap_dim: int = 1152) -> dict[str, tuple[int, ...]]:
    """Every tensor of the official text-to-image network (``tim/models/t2i/tim_model.py``): the
    class-conditional layout without the class table, plus the caption embedder (``LayerNorm`` of
    the ``cap_dim``-wide text states, then a SwiGLU ``cap_dim -> 4D -> D``) and per block a gated
    cross-attention (``q``, ``kv``, LayerNorm q/k norms, ``proj``) with a 9-way adaLN."""
    D, hd = model.hidden, model.hidden // model.heads
    keys = {k: v for k, v in official_c2i_manifest(attrs.evolve(model, num_classes=0)).items()
            if not k.startswith("y_embedder.")}
    keys |= {"y_embedder.norm.weight": (cap_dim,), "y_embedder.norm.bias": (cap_dim,)}
    keys |= _swiglu("y_embedder.mlp", cap_dim, 4 * D, D)
    for i in range(model.depth):
        b = f"blocks.{i}"
        keys |= _linear(f"{b}.cross_attn.q", D, D) | _linear(f"{b}.cross_attn.kv", D, 2 * D)
        for norm in ("q_norm", "k_norm"):
            keys |= {f"{b}.cross_attn.{norm}.weight": (hd,), f"{b}.cross_attn.{norm}.bias": (hd,)}
        keys |= _linear(f"{b}.cross_attn.proj", D, D)
        keys |= _swiglu(f"{b}.adaLN_modulation", D, model.lora_rank, 9 * D)
    return keys


def check_layout(state: Mapping[str, Tensor], manifest: Mapping[str, tuple[int, ...]], what: str) -> None:
    """Exactly the manifest's tensors with its shapes, else one line naming what differs."""
    missing = sorted(set(manifest) - set(state))
    unknown = sorted(set(state) - set(manifest))
    if missing or unknown:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. '{missing[0]}')")
        if unknown:
            parts.append(f"{len(unknown)} unknown (e.g. '{unknown[0]}')")
        raise GenflowError(f"{what}: not the official layout of this preset's model: {'; '.join(parts)} tensors")
    for key, shape in manifest.items():
        if tuple(state[key].shape) != shape:
            raise GenflowError(f"{what}: tensor '{key}' has shape {tuple(state[key].shape)}, the official "
                               f"layout of this preset's model has {shape}")


def _fused_swiglu(state: Mapping[str, Tensor], src: str, dst: str) -> dict[str, Tensor]:
    """timm ``SwiGLU`` -> genflow ``SwiGLU`` (one ``fc_in`` holding ``[gate; value]``)."""
    return {f"{dst}.fc_in.weight": torch.cat([state[f"{src}.fc1_g.weight"], state[f"{src}.fc1_x.weight"]]),
            f"{dst}.fc_in.bias": torch.cat([state[f"{src}.fc1_g.bias"], state[f"{src}.fc1_x.bias"]]),
            f"{dst}.fc_out.weight": state[f"{src}.fc2.weight"], f"{dst}.fc_out.bias": state[f"{src}.fc2.bias"]}


def _copy(state: Mapping[str, Tensor], src: str, dst: str, bias: bool = True) -> dict[str, Tensor]:
    return {f"{dst}.weight": state[f"{src}.weight"], **({f"{dst}.bias": state[f"{src}.bias"]} if bias else {})}


def _convert_shared(state: Mapping[str, Tensor], model: OfficialModel) -> dict[str, Tensor]:
    """The tensors the class-conditional and the text-to-image networks share, in ``tim-dit``'s keys."""
    out: dict[str, Tensor] = {}
    out |= _copy(state, "x_embedder.proj", "patch_embed")
    for src, dst in (("t_embedder", "phi_t"), ("delta_embedder", "phi_dt")):
        out |= _copy(state, f"{src}.mlp.0", f"{dst}.mlp.0") | _copy(state, f"{src}.mlp.2", f"{dst}.mlp.2")
    for i in range(model.depth):
        b = f"blocks.{i}"
        out |= _copy(state, f"{b}.attn.qkv", f"{b}.attn.qkv")
        out |= _copy(state, f"{b}.attn.qkv_d", f"{b}.attn.qkv_interval", bias=False)
        for name in ("q_norm", "k_norm", "proj"):
            out |= _copy(state, f"{b}.attn.{name}", f"{b}.attn.{name}")
        out |= _fused_swiglu(state, f"{b}.mlp", f"{b}.mlp")
        out |= _fused_swiglu(state, f"{b}.adaLN_modulation", f"{b}.adaln")
    for i in (0, 2, 4):
        out |= _copy(state, f"projector.{i}", f"projector.{i}")
    out |= _copy(state, "final_layer.linear", "final.linear")
    out |= _fused_swiglu(state, "final_layer.adaLN_modulation", "final.adaln")
    return out


def convert_c2i(state: Mapping[str, Tensor], model: OfficialModel) -> dict[str, Tensor]:
    """The official class-conditional state dict in ``tim-dit``'s keys (after ``check_layout``)."""
    return {**_convert_shared(state, model), "class_embedding.weight": state["y_embedder.embedding_table.weight"]}


def convert_t2i(state: Mapping[str, Tensor], model: OfficialModel, null_caption: Tensor) -> dict[str, Tensor]:
    """The official text-to-image state dict in ``tim-dit``'s keys (after ``check_layout``), with
    the null caption ``(max_length, cap_dim)``: the class-conditional mapping without the class
    table, plus ``y_embedder`` -> ``caption_embedder`` (``norm``; the SwiGLU ``mlp`` fused) and per
    block ``cross_attn`` -> ``cross`` (``q``, ``kv``, ``q_norm``, ``k_norm``, ``proj``)."""
    out = _convert_shared(state, model)
    out |= _copy(state, "y_embedder.norm", "caption_embedder.norm")
    out |= _fused_swiglu(state, "y_embedder.mlp", "caption_embedder.mlp")
    for i in range(model.depth):
        for name in ("q", "kv", "q_norm", "k_norm", "proj"):
            out |= _copy(state, f"blocks.{i}.cross_attn.{name}", f"blocks.{i}.cross.{name}")
    out["null_caption"] = null_caption
    return out


def backbone_options(model: OfficialModel) -> dict[str, object]:
    """The ``[backbone]`` settings of ``tim-dit`` that compute the official network's function."""
    options: dict[str, object] = {
        "name": "tim-dit", "hidden_size": model.hidden, "depth": model.depth, "heads": model.heads,
        "patch_size": model.patch, "adaln_rank": model.lora_rank, "qk_norm": "layer",
        "rope_pairs": "interleaved", "rope_first_axis": "col", "projector_out": model.z_dim,
        "projector_dim": model.projector_dim, "projector_depth": model.encoder_depth}
    if model.kind == "t2i":
        options |= {"text_pooled": False, "caption_embedder": "norm-swiglu", "cross_attention": "gated",
                    "null_caption_length": model.max_length}
    return options


def text_encoder_options(model: OfficialModel) -> dict[str, object]:
    """The ``[text_encoder]`` of an imported text-to-image run: the official encoder (Gemma's last
    hidden state, ``max_length`` tokens; the ``gemma`` component, docs/official-weights.md)."""
    if model.text_encoder == "gemma":
        return {"name": "gemma", "path": model.text_encoder_path, "max_length": model.max_length,
                "dim": model.cap_dim}
    return {"name": model.text_encoder, "dim": model.cap_dim}


# --------------------------------------------------------------------------------------------
# Reading the released files without running their code
# --------------------------------------------------------------------------------------------


def read_safetensors(path: pathlib.Path) -> dict[str, Tensor]:
    """A ``.safetensors`` file: an 8-byte little-endian header size, a JSON header of
    ``{name: {dtype, shape, data_offsets}}``, then the raw little-endian tensor bytes."""
    what = f"'{path}'"
    try:
        blob = path.read_bytes()
        (size,) = struct.unpack("<Q", blob[:8])
        header = json.loads(blob[8 : 8 + size])
    except (OSError, struct.error, ValueError) as exc:
        raise GenflowError(f"{what} is not a readable safetensors file ({type(exc).__name__}: {exc})") from None
    if not isinstance(header, dict):
        raise GenflowError(f"{what} is not a safetensors file (its header is no JSON object)")
    data = memoryview(blob)[8 + size :]
    tensors: dict[str, Tensor] = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype = _SAFETENSORS_DTYPES[entry["dtype"]]
            start, end = (int(v) for v in entry["data_offsets"])
            shape = [int(s) for s in entry["shape"]]
            raw = bytearray(data[start:end])
            flat = torch.frombuffer(raw, dtype=dtype) if raw else torch.empty(0, dtype=dtype)
            tensors[name] = flat.reshape(shape).clone()
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            raise GenflowError(f"{what}: tensor '{name}' is damaged or of an unsupported dtype "
                               f"({type(exc).__name__}: {exc}); allowed dtypes: {', '.join(_SAFETENSORS_DTYPES)}"
                               ) from None
    return tensors


def read_state_dict(path: pathlib.Path) -> dict[str, Tensor]:
    """The released weights: ``.safetensors`` (C2I) or a torch state dict (T2I ``.bin``, loaded with
    ``weights_only``)."""
    from genflow.train import safe_load

    if not path.is_file():
        raise GenflowError(f"'{path}' is not a file; pass the downloaded official weights (.safetensors or .bin)")
    if path.suffix == ".safetensors":
        return read_safetensors(path)
    state = safe_load.load_weights(path, "official weights file")
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise GenflowError(f"'{path}' does not hold a flat state dict of tensors (name -> tensor)")
    return state


# --------------------------------------------------------------------------------------------
# The run folder
# --------------------------------------------------------------------------------------------


def official_model(preset: str) -> OfficialModel:
    """The official model a genflow preset imports, or one line naming the presets that have one."""
    model = OFFICIAL_MODELS.get(preset)
    if model is None:
        raise GenflowError(f"--preset '{preset}': no official TiM model maps onto it; allowed: "
                           f"{', '.join(OFFICIAL_MODELS)}")
    return model


def official_manifest(model: OfficialModel) -> dict[str, tuple[int, ...]]:
    """The key / shape manifest of ``model`` (class-conditional or text-to-image)."""
    return official_c2i_manifest(model) if model.kind == "c2i" else official_t2i_manifest(model, model.cap_dim)


def read_null_caption(path: pathlib.Path | None, model: OfficialModel) -> Tensor:
    """The official null caption: Gemma's states of the empty prompt, ``(max_length, cap_dim)`` (a
    leading 1 allowed), from a ``.safetensors`` file with one tensor or a torch file holding a tensor."""
    from genflow.train import safe_load

    expected = (model.max_length, model.cap_dim)
    if path is None:
        raise GenflowError(f"{model.name} needs --null-caption FILE: the text encoder's states of the empty "
                           f"prompt, shape {list(expected)} (docs/official-weights.md shows how to write it)")
    if not path.is_file():
        raise GenflowError(f"--null-caption '{path}' is not a file; pass a tensor of shape {list(expected)}")
    if path.suffix == ".safetensors":
        tensors = list(read_safetensors(path).values())
        value: object = tensors[0] if len(tensors) == 1 else None
    else:
        value = safe_load.load_weights(path, "null caption file")
    if not isinstance(value, Tensor) or not value.is_floating_point():
        raise GenflowError(f"--null-caption '{path}' does not hold one floating-point tensor")
    null = value[0] if value.dim() == 3 and value.shape[0] == 1 else value
    if tuple(null.shape) != expected:
        raise GenflowError(f"--null-caption '{path}' has shape {list(value.shape)}; {model.name} needs "
                           f"{list(expected)} (max_length x the text encoder's width)")
    if not torch.isfinite(null).all():
        raise GenflowError(f"--null-caption '{path}' holds non-finite values")
    return null.to(torch.float32)


def run_config_raw(preset: str, model: OfficialModel) -> dict[str, object]:
    """The preset's settings with the official network's layout, its latent space as data and the
    official sampling settings."""
    from genflow.config.load import read_config_file

    raw = read_config_file(preset)
    raw["data"] = {"name": "latent-space", "shape": [model.channels, model.latent, model.latent],
                   "num_classes": model.num_classes, "autoencoder": model.autoencoder,
                   "pretrained": model.pretrained}
    raw["backbone"] = backbone_options(model)
    if model.kind == "t2i":
        raw["data"]["text"] = True  # type: ignore[index]
        raw["text_encoder"] = text_encoder_options(model)
    else:
        raw.pop("text_encoder", None)
    raw["sampler"] = {"name": "transition", "guidance_interval": list(model.guidance_interval),
                      "stochasticity": model.stochasticity}
    sample = raw.get("sample")
    raw["sample"] = {**(sample if isinstance(sample, dict) else {}), "guidance": model.guidance}
    return raw


def _check_out(out: pathlib.Path) -> None:
    from genflow.commands.outputs import check_output_dir

    check_output_dir(out, "--out")
    if out.exists() and any(out.iterdir()):
        raise GenflowError(f"--out '{out}' exists and is not empty; choose a new folder for the imported run")


def import_official(file: pathlib.Path, preset: str, out: pathlib.Path, manager: object, *,
                    null_caption: pathlib.Path | None = None) -> pathlib.Path:
    """Check everything, then write ``out/config.toml`` and ``out/model.pt`` (the official weights in
    ``tim-dit``'s layout), a run folder that ``genflow sample``, ``genflow eval`` and
    ``genflow train --resume`` (fine-tuning, with ``data.url``) accept. A text-to-image model also
    needs ``null_caption`` (``--null-caption FILE``, :func:`read_null_caption`)."""
    from genflow import config as cfg
    from genflow.components.build import build_backbone, build_components
    from genflow.plugins import PluginManager
    from genflow.train import checkpoint

    assert isinstance(manager, PluginManager)
    model = official_model(preset)
    if model.kind == "c2i" and null_caption is not None:
        raise GenflowError(f"--null-caption is for text-to-image models; {model.name} is class-conditional")
    _check_out(out)
    null = read_null_caption(null_caption, model) if model.kind == "t2i" else None
    state = read_state_dict(file)
    check_layout(state, official_manifest(model), f"'{file}'")
    config = cfg.resolve(run_config_raw(preset, model), manager)
    components = build_components(config, manager)
    backbone = build_backbone(config, manager, components.spec, meta=True)
    backbone.to_empty(device=torch.device("cpu"))
    backbone.init_weights()  # a pretrained text encoder loads its own weights here
    target = getattr(backbone, "backbone", backbone)  # the DiT (inside TextConditioned with captions)
    converted = convert_c2i(state, model) if null is None else convert_t2i(state, model, null)
    weights = {k: v.to(torch.float32) for k, v in converted.items()}
    try:
        target.load_state_dict(weights, strict=True)
    except RuntimeError as exc:
        detail = " ".join(str(exc).split())[:200]
        raise GenflowError(f"'{file}': the mapped tensors do not fit preset '{preset}''s tim-dit: {detail}") from None
    out.mkdir(parents=True, exist_ok=True)
    toml = cfg.to_toml(config)
    checkpoint.write_text_atomic(out / "config.toml", toml)
    checkpoint.export_weights(backbone.state_dict(), toml, out / "model.pt")
    return out


def build_importer(config: object = None, **_: object) -> object:
    """Registry factory of the ``tim-official`` importer: ``import_official``."""
    return import_official
