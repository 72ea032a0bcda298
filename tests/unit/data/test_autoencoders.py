"""Autoencoders: identity is exact; diffusers ones (tiny, random, built from a config) write stores."""

from __future__ import annotations

import pytest
import torch

from genflow.data.autoencoders import DiffusersConfig, Identity
from genflow.data.dataset import StoreConfig, build_store
from genflow.data.pipeline import prepare_store
from genflow.data.sources import ShapesSource

from .helpers import small_shapes


def test_identity_round_trip_is_exact():
    images = torch.randint(0, 256, (4, 3, 8, 8), dtype=torch.uint8)
    ae = Identity()
    latents = ae.encode(images)
    assert latents.dtype == torch.uint8
    shift, scale = ae.shift_scale()
    model = (latents.float() - shift[0]) * scale[0]
    assert model.min() >= -1 and model.max() <= 1
    torch.testing.assert_close(ae.decode(model / scale[0] + shift[0]), images.float() / 127.5 - 1)


def test_identity_is_registered(manager):
    assert "identity" in manager.names("autoencoder")


def _tiny(kind: str):
    diffusers = pytest.importorskip("diffusers")
    torch.manual_seed(0)
    if kind == "kl":
        return diffusers.AutoencoderKL(
            block_out_channels=(8, 16),
            down_block_types=("DownEncoderBlock2D",) * 2,
            up_block_types=("UpDecoderBlock2D",) * 2,
            latent_channels=4,
            norm_num_groups=4,
            layers_per_block=1,
            sample_size=16,
        )
    return diffusers.AutoencoderDC(
        latent_channels=4,
        attention_head_dim=4,
        encoder_block_out_channels=(8, 16),
        decoder_block_out_channels=(8, 16),
        encoder_layers_per_block=(1, 1),
        decoder_layers_per_block=(1, 1),
        encoder_qkv_multiscales=((), ()),
        decoder_qkv_multiscales=((), ()),
        scaling_factor=0.5,
    )


@pytest.mark.parametrize("kind", ["kl", "dc"])
def test_diffusers_autoencoder_writes_a_store(manager, tmp_path, kind):
    module = _tiny(kind)
    module.save_pretrained(tmp_path / "vae")
    component = manager.get("autoencoder", f"diffusers-{kind}")
    ae = component.build(DiffusersConfig(pretrained=str(tmp_path / "vae"), device="cpu"))
    assert ae.downsample == 2 and ae.latent_channels == 4
    url = str(tmp_path / "latents.zarr")
    prepare_store(ShapesSource(small_shapes(count=6)), ae, url, progress=False)
    dataset = build_store(StoreConfig(url=url))
    assert dataset.spec.shape == (4, 8, 8)
    meta = dataset.store.meta
    assert meta.autoencoder.name == f"diffusers-{kind}" and meta.autoencoder.scale[0] == module.config.scaling_factor
    assert all(s > 0 for s in meta.stats["std"])
    reference = dataset.reference(3, seed=0)
    pixels = dataset.decode(reference.x)
    assert pixels.shape == (3, 3, 16, 16) and pixels.abs().max() <= 1
