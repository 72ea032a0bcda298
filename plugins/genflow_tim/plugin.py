"""Hook implementations of the ``genflow_tim`` plugin (registrations only)."""

from __future__ import annotations

from genflow.plugins import hookimpl
from genflow.registry import Component


@hookimpl
def genflow_objectives() -> list[Component]:
    from genflow_tim import objective

    return [
        Component(
            name="tim",
            config=objective.TimObjectiveConfig,
            build=objective.build,
            description="transition models: regress F(x_t, t, r) on the state-transition target",
            defaults={"sampler": "transition", "derivative": "dde"},
        )
    ]


@hookimpl
def genflow_derivatives() -> list[Component]:
    from genflow_tim import derivatives

    return [
        Component(name="dde", config=derivatives.DdeConfig, build=derivatives.build_dde,
                  description="dF/dt by finite differences, central or one-sided (forward passes only; FSDP-safe)"),
        Component(name="jvp", build=derivatives.build_jvp,
                  description="dF/dt by forward-mode AD (torch.func.jvp; exact, no FSDP)"),
    ]


@hookimpl
def genflow_samplers() -> list[Component]:
    from genflow_tim import sampler

    return [
        Component(name="transition", config=sampler.TransitionSamplerConfig, build=sampler.build,
                  description="N transitions x_r = A x_t + B F(x_t, t, r), 1 to 128 steps"),
    ]


@hookimpl
def genflow_paths() -> list[Component]:
    from genflow_tim import trigflow

    return [
        Component(name="trigflow", build=trigflow.build,
                  description="x_t = cos(t) x + sin(t) z, t in [0, pi/2]"),
    ]


@hookimpl
def genflow_backbones() -> list[Component]:
    from genflow_tim import dit, unet

    return [
        Component(name="tim-dit", config=dit.DiTConfig, build=dit.build_dit,
                  description="interval-aware DiT (2D RoPE, LoRA-AdaLN; presets debug, S, B/4, XL/2)"),
        Component(name="unet", config=unet.UNetConfig, build=unet.build_unet,
                  description="small convolutional UNet with FiLM time/interval/class conditioning (CPU)"),
    ]


@hookimpl
def genflow_datasets() -> list[Component]:
    from genflow_tim import latent_space

    return [
        Component(name="latent-space", config=latent_space.LatentSpaceConfig, build=latent_space.build,
                  description="an imported model's latent space (shape, classes, decoder); data from data.url",
                  defaults={"backbone": "tim-dit"}),
    ]


@hookimpl
def genflow_importers() -> list[Component]:
    from genflow_tim import official

    return [
        Component(name="tim-official", build=official.build_importer,
                  description="the released TiM weights (WZDTHU/TiM) into a tim-dit run folder"),
    ]


@hookimpl
def genflow_text_encoders() -> list[Component]:
    from genflow_tim import gemma

    return [
        Component(name="gemma", config=gemma.GemmaTextConfig, build=gemma.build_gemma,
                  description="the official TiM-T2I text encoder, frozen Gemma through transformers "
                              "(needs pip install transformers)"),
    ]
