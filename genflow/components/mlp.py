"""``mlp``: a small residual MLP backbone ``F(x_t, t, r, cond)`` for low-dimensional data (``toy2d``), part of the
core so that genflow trains and tests without any plugin."""

from __future__ import annotations

import attrs
from torch import Tensor, nn

from genflow.components.nn import TimestepEmbedder
from genflow.config.domains import positive
from genflow.errors import ConfigError
from genflow.interfaces import Backbone, Condition, DataSpec


@attrs.frozen(kw_only=True)
class MLPConfig:
    hidden: int = attrs.field(default=256, validator=positive())
    depth: int = attrs.field(default=4, validator=positive())
    embedding_dim: int = attrs.field(default=128, validator=positive())


class ResidualBlock(nn.Module):
    """``h + Linear(SiLU(Linear(LN(h) * (1 + scale) + shift)))`` with FiLM from the conditioning."""

    def __init__(self, hidden: int, embedding_dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(hidden, elementwise_affine=False)
        self.film = nn.Linear(embedding_dim, 2 * hidden)
        self.fc1 = nn.Linear(hidden, hidden)
        self.fc2 = nn.Linear(hidden, hidden)

    def forward(self, h: Tensor, c: Tensor) -> Tensor:
        scale, shift = self.film(c).chunk(2, dim=-1)
        y = self.norm(h) * (1 + scale) + shift
        return h + self.fc2(nn.functional.silu(self.fc1(y)))


class MLPBackbone(Backbone):
    """Residual MLP with decoupled embeddings ``c = phi_t(t) + phi_dt(t - r) [+ class]``."""

    def __init__(self, config: MLPConfig, *, spec: DataSpec) -> None:
        super().__init__()
        if len(spec.shape) != 1:
            raise ConfigError(f"backbone 'mlp' needs flat data (shape (D,)), got a sample shape {spec.shape}; "
                              "use an image backbone (unet, tim-dit)")
        dim, e = spec.shape[0], config.embedding_dim
        self.phi_t = TimestepEmbedder(e)
        self.phi_dt = TimestepEmbedder(e)
        self.class_embedding = nn.Embedding(spec.num_classes + 1, e) if spec.num_classes else None
        self.inp = nn.Linear(dim, config.hidden)
        self.blocks = nn.ModuleList(ResidualBlock(config.hidden, e) for _ in range(config.depth))
        self.out_norm = nn.LayerNorm(config.hidden)
        self.out = nn.Linear(config.hidden, dim)

    def init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding, nn.LayerNorm)):
                module.reset_parameters()

    def forward(self, x_t: Tensor, t: Tensor, r: Tensor, cond: Condition) -> Tensor:
        c = self.phi_t(t) + self.phi_dt(t - r)  # (N, e)
        if self.class_embedding is not None and cond.labels is not None:
            c = c + self.class_embedding(cond.labels)
        c = nn.functional.silu(c)
        h = self.inp(x_t)  # (N, hidden)
        for block in self.blocks:
            h = block(h, c)
        return self.out(self.out_norm(h))  # (N, D)

    def fsdp_units(self) -> list[nn.Module]:
        return list(self.blocks)
