"""``python -m genflow`` with one rank starting late: the rank ``GENFLOW_TEST_DELAY_RANK`` sleeps
``GENFLOW_TEST_DELAY_S`` seconds before it imports genflow (test-only; genflow has no such hook).

    GENFLOW_TEST_DELAY_RANK=1 GENFLOW_TEST_DELAY_S=3 python -m tests.unit.train.delayed_rank train --nproc 2 ...
    GENFLOW_TEST_DELAY_RANK=1 ... torchrun --nproc-per-node 2 -m tests.unit.train.delayed_rank train ...

Under ``--nproc`` the ranks it launches run this module too. ``GENFLOW_TEST_PAUSE_S`` > 0 makes
every rank sleep that long after each saved checkpoint, so a test can kill a run between two
checkpoints however fast the machine is.
"""

from __future__ import annotations

import os
import sys
import time

if __name__ == "__main__":
    if os.environ.get("RANK") is not None and os.environ.get("RANK") == os.environ.get("GENFLOW_TEST_DELAY_RANK"):
        time.sleep(float(os.environ.get("GENFLOW_TEST_DELAY_S", "0")))
    from genflow.cli import main
    from genflow.train import launch

    pause = float(os.environ.get("GENFLOW_TEST_PAUSE_S", "0"))
    if pause > 0:
        import genflow
        from genflow import plugins

        class _PauseAfterCheckpoints:
            @genflow.hookimpl
            def genflow_checkpoint_saved(self, step: int, path: object) -> None:
                time.sleep(pause)

        _init = plugins.PluginManager.__init__

        def _init_with_pause(self: plugins.PluginManager, *args: object, **kwargs: object) -> None:
            _init(self, *args, **kwargs)  # type: ignore[arg-type]
            self.pm.register(_PauseAfterCheckpoints(), name="test-pause")

        plugins.PluginManager.__init__ = _init_with_pause  # type: ignore[method-assign]

    launch.rank_command = lambda: [sys.executable, "-m", "tests.unit.train.delayed_rank"]
    sys.exit(main(sys.argv[1:]))
