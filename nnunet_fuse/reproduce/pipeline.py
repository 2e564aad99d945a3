"""``reproduce()``: the shared preparation once, then the trainings through a launcher, then the report."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, Optional, Sequence

from nnunet_fuse.budgets import BUDGETS, SNAPSHOT_EPOCHS
from nnunet_fuse.reproduce.launchers import Launcher
from nnunet_fuse.reproduce.preparation import check_methods_fit, nnunet_folders, prepare, raw_dataset_folder
from nnunet_fuse.reproduce.report import comparison_report, earlier_report, write_report
from nnunet_fuse.reproduce.runs import ReproduceError


def reproduce(dataset_id: int, configuration: str, methods: Sequence[str], folds: Sequence[int], budget: str,
              device: str, env: Dict[str, str], out_folder: Optional[Path] = None,
              n_processes: Optional[int] = None, curve: bool = False,
              launcher: Optional[Launcher] = None) -> Optional[dict]:
    """Run, submit or resume the comparison. Returns the report (also written as results.json/md/png in out_folder)
    once every training is finished, else None (a launcher that submits: run the same call again)."""
    from nnunet_fuse.reproduce.launchers.local import LocalLauncher

    if budget not in BUDGETS:
        raise ReproduceError(f"unknown budget '{budget}'; one of {', '.join(BUDGETS)}")
    if curve and budget not in SNAPSHOT_EPOCHS:
        raise ReproduceError(f"budget '{budget}' keeps no snapshots to draw a learning curve from; --curve needs one "
                             f"of {', '.join(SNAPSHOT_EPOCHS)}")
    folders = nnunet_folders(env)
    raw = raw_dataset_folder(folders["nnUNet_raw"], dataset_id)
    check_methods_fit(methods, raw)
    default_out = folders["nnUNet_results"] / raw.name / f"nnunet_fuse_reproduce_{configuration}_{budget}"
    out_folder = Path(out_folder or default_out)
    earlier = earlier_report(out_folder, raw.name, configuration, budget)  # before any work: refuse foreign files
    out_folder.mkdir(parents=True, exist_ok=True)
    n_processes = n_processes or int(env.get("nnUNet_def_n_proc", min(8, os.cpu_count() or 1)))
    trainings = prepare(dataset_id, configuration, methods, folds, budget, device, curve, env,
                        out_folder / "reproduce_log.txt", out_folder / "logs", n_processes)
    launcher = launcher or LocalLauncher(n_processes)
    if not launcher.launch(trainings, env, out_folder):
        print(f"\nnot all trainings have finished: run the same command again to see their state; the report is "
              f"written to {out_folder} once all have", flush=True)
        return None
    report = comparison_report(trainings, device, earlier)
    write_report(report, out_folder)
    return report
