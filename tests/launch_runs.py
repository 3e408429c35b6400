"""Several `genzoo train` runs one after another in each process of ONE `accelerate launch` (what
``helpers.TwoProcessRuns`` starts): the tests of two-process training share the launch, so they pay the processes'
start-up (about 10 s of imports on 2 cores) once instead of once each.

    accelerate launch ... tests/launch_runs.py runs.json

``runs.json`` lists ``{"name": ..., "argv": [...], "log_dir": ...}``; each run's stderr (file descriptor 2, so that
warnings and the launcher's own lines land there too) goes to ``<log_dir>/stderr-rank<R>.txt`` and its exit status to
``<log_dir>/status-rank<R>.txt``."""

import json
import os
import sys
import traceback
from pathlib import Path

from accelerate.state import PartialState

from genzoo.training import main


def run_all(runs: list[dict]) -> int:
    rank = int(os.environ.get("RANK", "0"))
    failed = 0
    for run in runs:
        log_dir = Path(run["log_dir"])
        log_dir.mkdir(parents=True, exist_ok=True)
        saved = os.dup(2)
        with open(log_dir / f"stderr-rank{rank}.txt", "w") as log:
            sys.stderr.flush()
            os.dup2(log.fileno(), 2)
            try:
                status = main(run["argv"])
            except BaseException:  # noqa: BLE001 -- recorded for the test that owns the run, then the next run
                traceback.print_exc()
                status = 1
            finally:
                sys.stderr.flush()
                os.dup2(saved, 2)
                os.close(saved)
        (log_dir / f"status-rank{rank}.txt").write_text(str(status))
        failed += status != 0
    return 1 if failed else 0


if __name__ == "__main__":
    # Each run ends with Accelerate's end_training, which destroys the process group that the next run needs: it
    # lives as long as the launch here and is destroyed once, at the end.
    destroy = PartialState.destroy_process_group
    PartialState.destroy_process_group = lambda self, group=None: None
    status = run_all(json.loads(Path(sys.argv[1]).read_text()))
    destroy(PartialState())
    sys.exit(status)
