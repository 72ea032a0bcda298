"""``genflow`` with a crash armed: the process SIGKILLs itself at a chosen moment (test-only hooks,
installed by monkeypatching; genflow itself has no crash points).

    GENFLOW_TEST_KILL=POINT@STEP[+SECONDS] python -m tests.unit.train.kill_runner train ...

POINT, for the first checkpoint save of a step >= STEP (or the final export):

- ``write``: DCP has written the data files of ``step_N.tmp`` but not its ``.metadata``;
- ``commit``: every file of ``step_N.tmp`` is written, the rename to ``step_N`` has not happened;
- ``prune``: ``step_N`` is committed and an old checkpoint is being deleted (one file of it is gone);
- ``export``: half of ``model.pt.tmp`` is written (STEP is ignored);
- ``timer``: SECONDS after step STEP finished (STEP 0: after start-up), wherever the run is then;
  a run that reaches its end first is killed there.

``GENFLOW_TEST_KILL_LOG``: a file that gets ``start STEP`` when training starts and ``load PATH``
when a checkpoint is loaded.
"""

from __future__ import annotations

import io
import os
import pathlib
import re
import shutil
import signal
import sys
import threading
from typing import Any

import torch
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.filesystem import FileSystemWriter

from genflow.cli import main
from genflow.train import checkpoint
from genflow.train.trainer import Trainer

_STEP_DIR = re.compile(r"^step_(\d{8})(\.tmp)?$")


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def log(line: str) -> None:
    path = os.environ.get("GENFLOW_TEST_KILL_LOG")
    if path:
        with open(path, "a") as f:
            f.write(line + "\n")


def step_of(path: Any) -> int:
    found = _STEP_DIR.match(pathlib.Path(path).name)
    return int(found.group(1)) if found else -1


def arm(point: str, step: int, seconds: float) -> None:
    saving = {"step": -1}
    real_save, real_finish, real_rename = dcp.save, FileSystemWriter.finish, pathlib.Path.rename
    real_rmtree, real_torch_save = shutil.rmtree, torch.save

    def save(*args: Any, checkpoint_id: Any = None, **kwargs: Any) -> Any:
        saving["step"] = step_of(checkpoint_id)
        return real_save(*args, checkpoint_id=checkpoint_id, **kwargs)

    def finish(self: FileSystemWriter, *args: Any, **kwargs: Any) -> Any:
        if point == "write" and saving["step"] >= step:
            die()
        return real_finish(self, *args, **kwargs)

    def rename(self: pathlib.Path, target: Any) -> Any:
        if point == "commit" and self.name.endswith(".tmp") and step_of(target) >= step:
            die()
        return real_rename(self, target)

    def rmtree(path: Any, *args: Any, **kwargs: Any) -> Any:
        doomed = pathlib.Path(path)
        old_checkpoint = doomed.name.startswith("step_") and (doomed / "genflow.json").is_file() \
            and step_of(doomed) != saving["step"]
        if point == "prune" and old_checkpoint and saving["step"] >= step:
            (doomed / "genflow.json").unlink()  # half deleted
            die()
        return real_rmtree(path, *args, **kwargs)

    def torch_save(obj: Any, f: Any, *args: Any, **kwargs: Any) -> Any:
        if point == "export" and pathlib.Path(str(f)).name == "model.pt.tmp":
            buffer = io.BytesIO()
            real_torch_save(obj, buffer, *args, **kwargs)
            pathlib.Path(str(f)).write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
            die()
        return real_torch_save(obj, f, *args, **kwargs)

    dcp.save = save
    FileSystemWriter.finish = finish  # type: ignore[method-assign]
    pathlib.Path.rename = rename  # type: ignore[method-assign]
    shutil.rmtree = rmtree
    torch.save = torch_save
    if point == "timer":
        _arm_timer(step, seconds)


def _arm_timer(step: int, seconds: float) -> None:
    real_train_step, real_finish = Trainer.train_step, Trainer._finish
    if step == 0:
        threading.Timer(seconds, die).start()

    def train_step(self: Trainer, *args: Any, **kwargs: Any) -> Any:
        out = real_train_step(self, *args, **kwargs)
        if self.step + 1 == step:  # self.step counts the steps finished before this one
            threading.Timer(seconds, die).start()
        return out

    def finish(self: Trainer) -> None:
        die()  # the timer has not fired by the end of training: the end is the moment

    Trainer.train_step = train_step  # type: ignore[method-assign]
    Trainer._finish = finish  # type: ignore[method-assign]
    del real_finish


def record() -> None:
    real_load, real_run = checkpoint.load, Trainer.run

    def load(state: Any, path: pathlib.Path, world: Any) -> None:
        log(f"load {path}")
        real_load(state, path, world)

    def run(self: Trainer) -> int:
        log(f"start {self.step}")
        return real_run(self)

    checkpoint.load = load
    Trainer.run = run  # type: ignore[method-assign]


if __name__ == "__main__":
    record()
    spec = os.environ.get("GENFLOW_TEST_KILL", "")
    if spec:
        found = re.fullmatch(r"(write|commit|prune|export|timer)@(\d+)(?:\+([\d.]+))?", spec)
        if not found:
            sys.exit(f"bad GENFLOW_TEST_KILL={spec!r}")
        arm(found.group(1), int(found.group(2)), float(found.group(3) or 0))
    sys.exit(main(sys.argv[1:]))
