"""The generic trainer: one loop for every objective, one process or many (torchrun, FSDP2).

Randomness is a pure function of ``(seed, step, micro-batch)``: the data comes from the loader's
global order and each micro-batch's noise from a generator seeded by its global index, so a run
resumed from a checkpoint continues exactly as an uninterrupted one, and runs whose global batch
is split into the same number of micro-batches (ranks x accumulation) are identical.
"""

from __future__ import annotations

import contextlib
import json
import pathlib
import time
from typing import Any

import attrs
import torch
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_state_dict,
    set_model_state_dict,
    set_state_dict,
)
from torch.distributed.fsdp import FSDPModule
from torch.optim.lr_scheduler import LambdaLR
from torch.utils.checkpoint import checkpoint as recompute
from torch.utils.flop_counter import FlopCounterMode

from genflow import config as cfg
from genflow.components.build import Components, build_backbone, build_components, materialize
from genflow.errors import GenflowError
from genflow.interfaces import Backbone, Batch
from genflow.plugins import PluginManager
from genflow.sampling.driver import generate, preview_conditions
from genflow.sampling.visualize import plot_samples
from genflow.train import checkpoint
from genflow.train.distributed import World, all_reduce_mean, barrier, broadcast_from_main, init_world, shard
from genflow.train.ema import EMA, local_shard
from genflow.train.logger import RunLogger
from genflow.train.schedule import lr_lambda
from genflow.train.signals import StopRequest
from genflow.train.summary import TrainSummary, class_accuracy, format_summary, write_summary

RESOLVED_CONFIG = "config.toml"
TRAINER_STATE = "trainer.json"


def micro_seed(seed: int, step: int, micro: int) -> int:
    """Seed of the noise generator of global micro-batch ``micro`` at ``step``."""
    return hash((seed, step, micro)) & 0x7FFF_FFFF_FFFF_FFFF


def split_batch(batch: Batch, parts: int) -> list[Batch]:
    """``parts`` equal micro-batches of ``batch`` (``batch`` itself for one part)."""
    if parts == 1:
        return [batch]
    n = batch.x.shape[0] // parts
    rows = torch.arange(batch.x.shape[0], device=batch.x.device)  # on the device: no host copy
    return [Batch(x=batch.x[i * n:(i + 1) * n], cond=batch.cond.index(rows[i * n:(i + 1) * n]))
            for i in range(parts)]


def checkpoint_units(model: Backbone) -> None:
    """Activation checkpointing of every FSDP unit: its activations are recomputed in the backward
    pass. Forward-only calls (DDE's passes, sampling) run the unit as is."""
    for unit in model.fsdp_units():
        forward = unit.forward

        def recomputed(*args: Any, _forward: Any = forward, **kwargs: Any) -> Any:
            if torch.is_grad_enabled():
                return recompute(_forward, *args, use_reentrant=False, **kwargs)
            return _forward(*args, **kwargs)

        unit.forward = recomputed  # type: ignore[method-assign]


#: Steps between the ranks' agreement on a stop signal or the time limit in distributed runs.
CONTROL_EVERY = 10


def to_device(batch: Batch, device: torch.device) -> Batch:
    """``batch`` on ``device``. To a GPU through page-locked memory: a copy from pageable memory
    waits for the GPU's queued work (a host sync every step); a pinned one is queued behind it."""
    x, cond = batch.x, batch.cond
    if device.type == "cuda":
        x, cond = x.pin_memory(), cond.pin_memory()
    return Batch(x=x.to(device, non_blocking=True), cond=cond.to(device, non_blocking=True))


def _has_spatial_conv(model: torch.nn.Module) -> bool:
    """Whether ``model`` has a 2-D convolution with a kernel larger than 1x1."""
    return any(isinstance(m, torch.nn.Conv2d) and m.kernel_size != (1, 1) for m in model.modules())


def build_optimizer(model: torch.nn.Module, train: cfg.TrainConfig) -> tuple[torch.optim.AdamW, LambdaLR]:
    """AdamW and its learning-rate schedule. Fused: one kernel for all parameters, and it skips a
    step on the device when ``optimizer.found_inf`` is 1 (``Trainer.train_step``: no host sync)."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=train.lr, betas=train.betas, eps=train.eps,
                                  weight_decay=train.weight_decay, fused=True)
    return optimizer, LambdaLR(optimizer, lr_lambda(train.schedule, train.warmup_steps, train.steps))


def clip_scale(grad_norm: torch.Tensor, max_norm: float) -> torch.Tensor:
    """``max(1, (|g| + 1e-6) / max_norm)``: dividing the gradients by it is ``clip_grad_norm_``'s
    clipping (which multiplies them by ``min(1, max_norm / (|g| + 1e-6))``)."""
    return torch.clamp((grad_norm.float() + 1e-6) / max_norm, min=1.0)  # the fused kernels read float32


#: Room for every static graph of a run: per resolution bucket, the main pass and the derivative's.
RECOMPILE_LIMIT = 64


def compile_backbone(model: Backbone, mode: str, *, tuning: bool = False) -> None:
    """``torch.compile`` in place, each FSDP unit on its own (the whole backbone if it has none).
    Per unit: the graphs are small and compile quickly; one graph of a whole large backbone compiles
    several times longer and runs no faster.

    Static shapes: a run feeds a few batch shapes (the main pass, the derivative's passes over the
    ``t != r`` rows), each compiled once; dynamo's automatic dynamic shapes would instead trace one
    symbolic-shape graph for all of them at the second shape, with more host work per call.
    Sampling and FLOP counting run eagerly (``eager_calls``). ``tuning`` adds inductor's
    coordinate-descent tuning of its generated kernels' launch settings to ``mode``'s options.
    """
    import torch._dynamo
    import torch._inductor

    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, RECOMPILE_LIMIT)
    # torch.compile takes a mode or inductor options, not both
    how: dict[str, Any] = ({"options": {**torch._inductor.list_mode_options(mode), "coordinate_descent_tuning": True}}
                           if tuning else {"mode": None if mode == "default" else mode})
    for unit in model.fsdp_units() or [model]:
        unit.compile(dynamic=False, **how)


def eager_calls() -> contextlib.AbstractContextManager[Any]:
    """Run compiled modules eagerly: sampling shapes get no graphs of their own, and under a
    dispatch mode (``FlopCounterMode``) dynamo would mark the blocks' code as skipped for good,
    leaving the whole run uncompiled."""
    return torch.compiler.set_stance("force_eager")


class Trainer:
    """Builds everything from a resolved config and trains; ``run()`` returns the final step."""

    def __init__(self, config: cfg.RunConfig, manager: PluginManager, run_dir: pathlib.Path, *,
                 resume: bool = False, progress: bool = True) -> None:
        self.config = config
        self.train = config.train
        self.manager = manager
        self.run_dir = run_dir
        self.world: World = init_world(self.train.device, self.train.dist_timeout_minutes)
        self._check_batch()
        self.components: Components = build_components(config, manager)
        self.model = self._build_model()
        self.optimizer, self.scheduler = build_optimizer(self.model, self.train)
        self.ema = EMA(self.model, self.train.ema_decay)
        self.loader = self.components.dataset.loader(
            batch_size=self.train.batch_size // self.world.world_size, rank=self.world.rank,
            world_size=self.world.world_size, seed=self.train.seed,
        )
        self.step = 0
        self.stopped_by = 0
        self.summary: TrainSummary | None = None  # set at the end of ``run()``
        self._last_row: dict[str, float] = {}  # the last metrics row, with its "step"
        self._out_of_time_at = 0  # the step train.max_minutes ran out at, else 0
        if resume:
            self._resume()
        self.logger = RunLogger(run_dir, enabled=self.world.is_main, total_steps=self.train.steps,
                                start_step=self.step, progress=progress)

    # ---------------------------------------------------------------- construction

    def _check_batch(self) -> None:
        parts = self.world.world_size * self.train.grad_accumulation
        if self.train.batch_size % parts:
            raise GenflowError(
                f"train.batch_size = {self.train.batch_size} is not divisible by ranks x "
                f"train.grad_accumulation = {parts}; use a multiple of {parts}"
            )

    def _build_model(self) -> Backbone:
        spec = self.components.spec
        model = build_backbone(self.config, self.manager, spec, meta=True)
        for component in (self.components.objective, self.components.derivative):
            if component is not None:
                component.check_backbone(model, distributed=self.world.distributed)
        # Every rank initialises the full model from the same seed, then FSDP2 keeps its shard:
        # the initial weights do not depend on the world size.
        materialize(model, self.world.device, self.train.seed)
        if self.world.distributed:
            shard(model, bf16_params=self.train.fsdp_mixed_precision)
        elif self._channels_last(model):
            model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        if self.train.activation_checkpointing:
            checkpoint_units(model)
        if self.train.compile:
            compile_backbone(model, self.train.compile_mode, tuning=self.train.compile_tuning)
        return model

    def _channels_last(self, model: Backbone) -> bool:
        """Channels-last weights for CPU conv nets: oneDNN convolutions run ~10% faster (forward
        without grad ~20%) and the layout follows from the weights to every activation. Not with
        FSDP2 (it cannot shard non-contiguous parameters) nor with forward-mode AD (``jvp``:
        group norm's forward AD needs contiguous inputs)."""
        derivative = self.components.derivative
        forward_only = derivative is None or derivative.forward_only
        return self.world.device.type == "cpu" and forward_only and _has_spatial_conv(model)

    # ---------------------------------------------------------------- state

    def _state(self) -> dict[str, Any]:
        model_sd, optim_sd = get_state_dict(self.model, self.optimizer)
        return {"model": model_sd, "optim": optim_sd, "ema": self.ema.state_dict()}

    def _resume(self) -> None:
        found = checkpoint.latest_checkpoint(self.run_dir)
        if found is None:
            self._start_from_final_weights()
            return
        step, path = found
        if step > self.train.steps:
            raise GenflowError(f"train.steps = {self.train.steps} is before the run's latest checkpoint (step {step}); "
                               f"to train on, give a larger value: genflow train --resume {self.run_dir} "
                               f"train.steps=N")
        state = self._state()
        checkpoint.load(state, path, self.world)
        set_state_dict(self.model, self.optimizer, model_state_dict=state["model"],
                       optim_state_dict=state["optim"])
        self.ema.load_state_dict(state["ema"])
        extra = checkpoint.read_json(path, TRAINER_STATE)
        scheduler = extra.get("scheduler")
        if not isinstance(scheduler, dict) or not isinstance(extra.get("data"), dict):
            raise GenflowError(f"checkpoint '{path}': {TRAINER_STATE} lacks the scheduler or data position")
        known = self.scheduler.state_dict().keys()  # only the scheduler's own fields, nothing else
        try:
            self.scheduler.load_state_dict({**{k: v for k, v in scheduler.items() if k in known},
                                            "lr_lambdas": [None]})
            self.loader.load_state_dict(extra["data"])
        except (KeyError, TypeError, ValueError) as exc:
            raise GenflowError(f"checkpoint '{path}': {TRAINER_STATE} is damaged ({type(exc).__name__}: {exc})") from None
        self.step = step

    def _start_from_final_weights(self) -> None:
        """A run folder with final weights and no checkpoint (e.g. written by ``genflow import``):
        fine-tune from those weights, the EMA starting from them too."""
        path = self.run_dir / "model.pt"
        if not path.is_file():
            return
        from genflow.train import safe_load

        payload = safe_load.load_weights(path)
        weights = payload.get("model") if isinstance(payload, dict) else None
        if not isinstance(weights, dict):
            raise GenflowError(f"'{path}' is not a genflow weights file (no 'model' state dict)")
        try:
            set_model_state_dict(self.model, weights, options=StateDictOptions(full_state_dict=True))
        except (RuntimeError, KeyError, ValueError) as exc:
            detail = " ".join(str(exc).split())[:200]
            raise GenflowError(f"'{path}' does not fit this run's backbone: {detail}") from None
        self.ema = EMA(self.model, self.train.ema_decay)

    def save_checkpoint(self) -> pathlib.Path:
        path = checkpoint.save(self._state(), self.run_dir, self.step, self.world, self.train.keep_last,
                               extra={TRAINER_STATE: self._extra_state()})
        self.manager.hook.genflow_checkpoint_saved(step=self.step, path=path)
        return path

    def _extra_state(self) -> str:
        scheduler = {k: v for k, v in self.scheduler.state_dict().items() if k != "lr_lambdas"}
        return json.dumps({"step": self.step, "scheduler": scheduler, "data": self.loader.state_dict()})

    # ---------------------------------------------------------------- the step

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.train.precision == "bf16":
            return torch.autocast(self.world.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def train_step(self, batch: Batch, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """Forward/backward over the micro-batches, clip, and step unless something is non-finite."""
        accumulation = self.train.grad_accumulation
        if self.train.compile and self.train.compile_mode == "reduce-overhead":
            torch.compiler.cudagraph_mark_step_begin()  # the last step's graph outputs may be reused
        logs: dict[str, torch.Tensor] = {}
        total = torch.zeros((), device=self.world.device)
        for a, micro in enumerate(split_batch(batch, accumulation)):
            generator.manual_seed(micro_seed(self.train.seed, self.step, self.world.rank * accumulation + a))
            if isinstance(self.model, FSDPModule):
                self.model.set_requires_gradient_sync(a == accumulation - 1)
            with self._autocast():
                out = self.components.objective.loss(self.model, micro, generator=generator)
            (out.loss / accumulation).backward()
            total = total + out.loss.detach().float() / accumulation
            for key, value in out.logs.items():
                logs[key] = logs.get(key, 0) + value.detach().float() / accumulation
        grad_norm = self._grad_norm()
        total = all_reduce_mean(total, self.world)
        skipped = (~(torch.isfinite(total) & torch.isfinite(grad_norm))).float()  # stays on the device
        # Both read by the fused AdamW (as torch.amp.GradScaler sets them): it divides the gradients
        # by grad_scale (clipping to norm grad_clip inside its one pass, not in a pass of its own,
        # as clip_grad_norm_ would) and leaves parameters and moments as they are where found_inf is 1.
        self.optimizer.grad_scale = clip_scale(grad_norm, self.train.grad_clip)  # type: ignore[attr-defined]
        self.optimizer.found_inf = skipped  # type: ignore[attr-defined]
        self.optimizer.step()
        self.scheduler.step()  # a skipped step still advances the schedule (no host sync to decide)
        self.ema.update()  # after a skipped step: a step towards the unchanged parameters
        self.optimizer.zero_grad(set_to_none=True)
        logs = {k: all_reduce_mean(v, self.world) for k, v in logs.items()}
        return {"loss": total, "grad_norm": grad_norm.detach(), "skipped": skipped, **logs}

    def _grad_norm(self) -> torch.Tensor:
        """The 2-norm of all gradients together (over every shard under FSDP2), on the device."""
        grads = [p.grad for p in self.model.parameters() if p.grad is not None]
        grad_norm = torch.nn.utils.get_total_norm(grads)
        return grad_norm.full_tensor() if hasattr(grad_norm, "full_tensor") else grad_norm

    # ---------------------------------------------------------------- the loop

    def run(self) -> int:
        """Train until ``train.steps`` (or a SIGTERM / SIGINT: checkpoint, then stop); returns the
        final step. ``self.stopped_by`` is the signal number that stopped the run early, else 0."""
        started = time.perf_counter()
        with StopRequest() as stop:
            step = self._run(stop)
        barrier(self.world)  # every rank past its last collective before any leaves (cli.cmd_train)
        if self.world.is_main and self.summary is not None:
            self.summary = attrs.evolve(self.summary, seconds=time.perf_counter() - started)
            write_summary(self.summary)
            print("\n".join(format_summary(self.summary)), flush=True)
        return step

    def _run(self, stop: StopRequest) -> int:
        if self.world.is_main:  # written once: ``genflow train`` writes it before, a resume never
            self.run_dir.mkdir(parents=True, exist_ok=True)
            if not (self.run_dir / RESOLVED_CONFIG).exists():
                checkpoint.write_text_atomic(self.run_dir / RESOLVED_CONFIG, cfg.to_toml(self.config))
        barrier(self.world)
        self.manager.hook.genflow_train_start(config=self.config, run_dir=self.run_dir, step=self.step)
        generator = torch.Generator(self.world.device)
        torch.manual_seed(self.train.seed)
        batches = iter(self.loader)
        flops_per_sample = 0.0
        skipped_run = worst_skipped_run = torch.zeros((), device=self.world.device)
        started = window_start = time.perf_counter()
        window_steps = 0
        window_mse = torch.zeros((), device=self.world.device)  # summed on the device, read at log steps
        self.model.train()
        while self.step < self.train.steps:
            batch = to_device(next(batches), self.world.device)
            if not flops_per_sample:
                flops_per_sample = self._forward_flops(batch) / batch.x.shape[0]
            logs = self.train_step(batch, generator)
            self.step += 1
            window_steps += 1
            if "mse" in logs:
                window_mse = window_mse + logs["mse"]
            self.logger.advance()
            # counted on the device; read where the host waits anyway (logging, checkpoints, the end)
            skipped_run = (skipped_run + logs["skipped"]) * logs["skipped"]
            worst_skipped_run = torch.maximum(worst_skipped_run, skipped_run)
            log_now = self.step % self.train.log_every == 0 or self.step == self.train.steps
            checkpoint_now = self.train.checkpoint_every and self.step % self.train.checkpoint_every == 0
            if log_now or checkpoint_now:
                self._check_skipped(int(worst_skipped_run.item()))
            if log_now:
                self._log_row(logs, time.perf_counter() - window_start, window_steps, flops_per_sample, window_mse)
                window_start, window_steps, window_mse = time.perf_counter(), 0, torch.zeros_like(window_mse)
            if self.train.sample_every and self.step % self.train.sample_every == 0 and self.step < self.train.steps:
                self._log_sample_grids()  # the final step's grids: ``_finish``
            if checkpoint_now:
                self.save_checkpoint()
            if self.step < self.train.steps and self._control_step():
                if signum := stop.agreed(self.world):
                    if window_steps:  # a metrics row at the last step
                        self._log_row(logs, time.perf_counter() - window_start, window_steps, flops_per_sample,
                                      window_mse)
                    return self._stop_early(signum)
                if self._out_of_time(started):
                    self.logger.message(f"genflow: train.max_minutes = {self.train.max_minutes:g} ran out at step "
                                        f"{self.step} of {self.train.steps}; finishing early")
                    if window_steps:
                        self._log_row(logs, time.perf_counter() - window_start, window_steps, flops_per_sample,
                                      window_mse)
                    self._out_of_time_at = self.step
                    break
        self._finish()
        return self.step

    def _log_row(self, logs: dict[str, torch.Tensor], elapsed: float, window_steps: int,
                 flops_per_sample: float, window_mse: torch.Tensor) -> None:
        """One metrics row at ``self.step`` (``metrics.jsonl``, tensorboard, the progress bar, the
        ``genflow_train_step_end`` hook) from the step's ``logs`` and the sum of ``mse`` over the
        ``window_steps`` steps since the last row; every metric: docs/metrics.md."""
        scalars = {k: float(v) for k, v in logs.items()}
        if "mse" in logs:
            scalars["mse_mean"] = float(window_mse) / window_steps
        scalars["lr"] = float(self.scheduler.get_last_lr()[0])
        scalars["samples_per_s"] = window_steps * self.train.batch_size / max(elapsed, 1e-9)
        if flops_per_sample:  # model FLOPs: 3x the forward (forward + backward), per sample
            scalars["model_tflop_per_s"] = 3 * flops_per_sample * scalars["samples_per_s"] / 1e12
        self.logger.scalars(self.step, scalars)
        self.manager.hook.genflow_train_step_end(step=self.step, logs=scalars)
        self._last_row = {"step": float(self.step), **scalars}

    def _control_step(self) -> bool:
        """Whether ranks agree on signals and the time limit after this step: every step in one
        process (free), every ``CONTROL_EVERY`` steps across ranks (a collective + host sync)."""
        return not self.world.distributed or self.step % CONTROL_EVERY == 0

    def _check_skipped(self, worst_run: int) -> None:
        """Stop once ``max_nonfinite_steps`` steps in a row were skipped (checked at log and
        checkpoint steps, so the checkpoints before the stop hold only good updates)."""
        if worst_run >= self.train.max_nonfinite_steps:
            raise GenflowError(
                f"{worst_run} steps in a row had a non-finite loss or gradient (seen at step {self.step}); "
                f"stopped. The last good checkpoint is kept in {self.run_dir / 'checkpoints'}"
            )

    def _forward_flops(self, batch: Batch) -> float:
        """FLOPs of one forward pass over ``batch`` (``torch.utils.flop_counter``), counted once."""
        n = batch.x.shape[0]
        t = torch.full((n,), 0.5, device=batch.x.device)
        with eager_calls(), torch.no_grad(), FlopCounterMode(display=False) as counter, self._autocast():
            self.model(batch.x, t, t, batch.cond)
        return float(counter.get_total_flops())

    def _out_of_time(self, started: float) -> bool:
        """``train.max_minutes`` of wall time spent in the loop (every rank gets rank 0's answer)."""
        if self.train.max_minutes <= 0:
            return False
        over = torch.tensor([float(time.perf_counter() - started > 60 * self.train.max_minutes)])
        return bool(broadcast_from_main(over, self.world).item())

    def _stop_early(self, signum: int) -> int:
        latest = checkpoint.latest_checkpoint(self.run_dir)
        if latest is None or latest[0] != self.step:
            self.save_checkpoint()
        self.logger.message(f"genflow: stopped by signal {signum} at step {self.step}; checkpoint saved. "
                            f"Continue with: genflow train --resume --run-dir {self.run_dir}")
        self.logger.close()
        self.stopped_by = signum
        self.summary = TrainSummary(run_dir=self.run_dir, step=self.step, total_steps=self.train.steps, seconds=0.0,
                                    stop="signal", metrics=self._last_row, sample_steps=self.config.sample.steps)
        return self.step

    def _check_finite_weights(self) -> None:
        """A run whose weights or EMA weights end with a NaN or an infinity (e.g. a too large
        ``train.lr``) fails here: nothing non-finite is checkpointed or exported as ``model.pt``."""
        bad = [name for name, p in self.model.named_parameters() if not bool(torch.isfinite(local_shard(p)).all())]
        bad += [f"ema {name}" for name in self.ema.nonfinite()]
        count = torch.tensor([float(len(bad))], device=self.world.device)
        if float(all_reduce_mean(count, self.world).item()) > 0:
            where = f" (first: {bad[0]})" if bad else " (on another rank)"
            raise GenflowError(
                f"training ended at step {self.step} with non-finite weights{where}; they are not exported "
                "and no final checkpoint is written (lower train.lr); "
                f"any checkpoint written before is kept in {self.run_dir / 'checkpoints'}"
            )

    def _finish(self) -> None:
        self.logger.close_progress()  # what follows (samples, the summary) prints below the bar
        self._check_finite_weights()
        latest = checkpoint.latest_checkpoint(self.run_dir)
        if latest is None or latest[0] != self.step:
            self.save_checkpoint()
        with self.ema.applied():
            weights = get_model_state_dict(self.model, options=StateDictOptions(full_state_dict=True,
                                                                                cpu_offload=True))
            if self.world.is_main:  # inside: on CPU the state dict holds the live parameters, which
                # leaving ``applied`` sets back to the raw weights
                checkpoint.export_weights(weights, cfg.to_toml(self.config), self.run_dir / "model.pt")
            samples = self._samples(self.config.sample.steps)
        accuracy: dict[int, float] = {}
        if self.world.is_main:
            reference = self.components.dataset.reference(2000, seed=1).x if not self.components.spec.is_image \
                else None
            plot_samples(samples, self.run_dir / "samples.png", reference=reference,
                         title=f"{self.config.objective.name} (EMA), step {self.step}")
            self._log_grids(samples)
            if not self.components.spec.text:
                accuracy = class_accuracy(self.components.dataset, samples, self.world.device)
                self.logger.scalars_to_tensorboard(
                    self.step, {f"eval/class_accuracy_{n}_steps": a for n, a in accuracy.items()})
        self.summary = TrainSummary(
            run_dir=self.run_dir, step=self.step, total_steps=self.train.steps, seconds=0.0,
            stop="time" if self._out_of_time_at else "done", max_minutes=self.train.max_minutes,
            metrics=self._last_row, class_accuracy=accuracy, num_samples=self.config.sample.num,
            sample_steps=self.config.sample.steps)
        self.manager.hook.genflow_train_end(step=self.step, run_dir=self.run_dir)
        self.logger.close()

    def _samples(self, steps: tuple[int, ...]) -> dict[int, torch.Tensor]:
        spec = self.components.spec
        num = self.config.sample.num if spec.is_image else 2000
        seed, device = self.config.sample.seed, self.world.device
        with eager_calls():
            out = generate(self.model, self.components.sampler, spec, steps=steps, num=num, seed=seed,
                           device=device, guidance=self.config.sample.guidance,
                           cond=preview_conditions(self.components.dataset, num, seed, device))
        return {k: self.components.dataset.decode(v) for k, v in out.items()}

    def _log_sample_grids(self) -> None:
        if not self.components.spec.is_image:
            return
        with self.ema.applied():
            samples = self._samples(self.config.sample.steps)
        self._log_grids(samples)

    def _log_grids(self, samples: dict[int, torch.Tensor]) -> None:
        """Tensorboard images ``samples/<n>_steps`` at the run's step: one grid per step count of
        ``sample.steps`` (EMA weights, the same noise and classes at every step)."""
        if not self.components.spec.is_image or not self.world.is_main:
            return
        from genflow.sampling.visualize import image_grid

        for steps, x in samples.items():
            self.logger.image(f"samples/{steps}_steps", self.step, image_grid(x))
