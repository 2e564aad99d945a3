"""Where the trainings of a comparison run. One interface: ``Launcher.launch(trainings, env, folder)`` runs or submits
what is left to do and returns True when every training is finished (the report can then be written). A launcher is one
file here: ``local`` (this machine, one training after another) and ``slurm`` (one SLURM job array, through
submitit); another scheduler that submitit supports would be a third.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Dict, Sequence

from nnunet_fuse.reproduce.runs import Training


class Launcher(ABC):
    @abstractmethod
    def launch(self, trainings: Sequence[Training], env: Dict[str, str], folder: Path) -> bool:
        """Run or submit the unfinished trainings (folder: the report folder, where a launcher keeps its files);
        True when all are finished."""
