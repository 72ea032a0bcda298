"""``python -m genflow`` with one rank starting late: the rank ``GENFLOW_TEST_DELAY_RANK`` sleeps
``GENFLOW_TEST_DELAY_S`` seconds before it imports genflow (test-only; genflow has no such hook).

    GENFLOW_TEST_DELAY_RANK=1 GENFLOW_TEST_DELAY_S=3 python -m tests.unit.train.delayed_rank train --nproc 2 ...
    GENFLOW_TEST_DELAY_RANK=1 ... torchrun --nproc-per-node 2 -m tests.unit.train.delayed_rank train ...

Under ``--nproc`` the ranks it launches run this module too.
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

    launch.rank_command = lambda: [sys.executable, "-m", "tests.unit.train.delayed_rank"]
    sys.exit(main(sys.argv[1:]))
