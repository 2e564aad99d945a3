"""A catalogue of bad inputs a user plausibly gives our commands, each with the message it must get.

Used by tests/test_bad_inputs.py (every case must stop with its message, without a traceback, leaving every file as
it was) and by benchmarks/bad_inputs.py (the same cases run against an older checkout: before / after table).

A Workspace holds real nnU-Net folders: a tiny synthetic 3D dataset planned and preprocessed by nnU-Net's own command,
its FuseUNet plans, a FuseUNet model trained for 2 × 4 iterations, an ACDC-layout source folder and an ACDC-like
dataset (two frames per patient) planned for 2d. Each case's ``setup`` makes its bad input in a folder of its own and
returns the command line; nothing a case breaks is used by another case.
"""
from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import SimpleITK as sitk

TINY_ID, ACDC_LIKE_ID = 961, 962
TRAINER, PLANS, CONFIGURATION = "nnUNetTrainerFuseUNet_smoke", "nnUNetFuseUNetPlans", "3d_fullres"


@dataclass
class Workspace:
    root: Path
    env: Dict[str, str]
    python: str  # runs `-m nnunet_fuse.cli`; nnU-Net's commands are the console scripts beside it

    @property
    def raw(self) -> Path:
        return self.root / "nnUNet_raw"

    @property
    def preprocessed(self) -> Path:
        return self.root / "nnUNet_preprocessed"

    @property
    def results(self) -> Path:
        return self.root / "nnUNet_results"

    @property
    def tiny_raw(self) -> Path:
        return next(self.raw.glob(f"Dataset{TINY_ID}_*"))

    @property
    def model(self) -> Path:
        return next(self.results.glob(f"Dataset{TINY_ID}_*")) / f"{TRAINER}__{PLANS}__{CONFIGURATION}"

    def case_folder(self, name: str) -> Path:
        folder = self.root / "cases" / name
        folder.mkdir(parents=True)
        return folder

    def command(self, *args: str) -> List[str]:
        """Full argv: ``nnunet-fuse ...`` through this workspace's Python, nnU-Net's commands beside it."""
        if args[0] == "nnunet-fuse":
            return [self.python, "-m", "nnunet_fuse.cli", *args[1:]]
        return [str(Path(self.python).parent / args[0]), *args[1:]]

    def good_scans(self, name: str) -> Path:
        """A copy of the tiny dataset's test scans (2 cases, one channel each)."""
        folder = self.case_folder(name)
        for f in sorted((self.tiny_raw / "imagesTs").glob("*.nii.gz")):
            shutil.copy(f, folder / f.name)
        return folder

    def check_inputs(self, folder: Path, *extra: str, trainer: str = TRAINER, fold: str = "0") -> List[str]:
        return self.command("nnunet-fuse", "check-inputs", "-i", str(folder), "-d", str(TINY_ID), "-c",
                            CONFIGURATION, "-tr", trainer, "-p", PLANS, "-f", fold, *extra)

    def predict(self, folder: Path, trainer: str = TRAINER, fold: str = "0") -> List[str]:
        """`nnunet-fuse predict` (check-inputs, then nnUNetv2_predict) of folder into a folder of its own."""
        return self.command("nnunet-fuse", "predict", "-i", str(folder), "-o", str(self.root / "cases" /
                                                                                    f"{folder.name}_predicted"),
                            "-d", str(TINY_ID), "-c", CONFIGURATION, "-tr", trainer, "-p", PLANS, "-f", fold,
                            "-device", "cpu", "-npp", "1", "-nps", "1")


def write_image(path: Path, array: np.ndarray, spacing: Sequence[float] = (1.0, 1.0, 2.0)) -> None:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(tuple(spacing)[:image.GetDimension()])
    sitk.WriteImage(image, str(path), useCompression=path.name.endswith(".gz"))


def truncate(path: Path, fraction: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * fraction)])


def make_acdc_source(folder: Path, patients: int = 2, seed: int = 0) -> Path:
    """ACDC challenge layout: patientNNN/{Info.cfg, patientNNN_frameYY.nii.gz, patientNNN_frameYY_gt.nii.gz}."""
    rng = np.random.default_rng(seed)
    for p in range(1, patients + 1):
        patient = folder / f"patient{p:03d}"
        patient.mkdir(parents=True)
        (patient / "Info.cfg").write_text("ED: 1\nES: 8\nGroup: NOR\nNbFrame: 10\n")
        for frame in (1, 8):
            label = np.zeros((6, 32, 32), dtype=np.uint8)
            label[1:5, 8:20, 8:20], label[1:5, 12:16, 12:16], label[2:4, 20:26, 10:18] = 2, 3, 1
            image = (label * 40 + rng.normal(0, 5, label.shape)).astype(np.float32)
            write_image(patient / f"patient{p:03d}_frame{frame:02d}.nii.gz", image, (1.5, 1.5, 10.0))
            write_image(patient / f"patient{p:03d}_frame{frame:02d}_gt.nii.gz", label, (1.5, 1.5, 10.0))
    return folder


def build_workspace(root: Path, python: str = sys.executable, log: Callable[[str], None] = print) -> Workspace:
    """The shared, good state every case starts from (about a minute and a half on 2 CPU cores)."""
    from nnunet_fuse.commands import nnunet_environment
    from nnunet_fuse.datasets.converters import convert_acdc
    from nnunet_fuse.datasets.synthetic import make_synthetic_dataset
    from nnunet_fuse.planning import write_plans_variant

    env = nnunet_environment(root)
    env["PATH"] = f"{Path(python).parent}{os.pathsep}{env.get('PATH', '')}"
    ws = Workspace(root, env, python)
    make_synthetic_dataset(ws.raw, TINY_ID, name="Tiny", n_train=6, n_test=2, shape=(16, 32, 32), seed=3)
    for command in (["nnUNetv2_plan_and_preprocess", "-d", str(TINY_ID), "-c", CONFIGURATION, "-np", "1"],
                    ["nnUNetv2_train", str(TINY_ID), CONFIGURATION, "0", "-tr", TRAINER, "-p", PLANS, "-device",
                     "cpu"]):
        if command[0] == "nnUNetv2_train":
            write_plans_variant(ws.preprocessed, TINY_ID, "fuseunet", configurations=[CONFIGURATION], log=log)
        log(f"$ {' '.join(command)}")
        subprocess.run(ws.command(*command), env=env, check=True, capture_output=True)
    make_acdc_source(root / "acdc_source" / "training")
    convert_acdc(root / "acdc_source" / "training", ws.raw, ACDC_LIKE_ID)
    subprocess.run(ws.command("nnUNetv2_plan_and_preprocess", "-d", str(ACDC_LIKE_ID), "-c", "2d", "-np", "1"),
                   env=env, check=True, capture_output=True)
    return ws


# ------------------------------------------------------------------------------------------------------ the cases
@dataclass(frozen=True)
class Case:
    name: str
    command: str       # the command a user ran
    what: str          # the mistake
    setup: Callable[[Workspace], List[str]]
    expect: str        # the message must contain this
    allowed_new: Tuple[str, ...] = ()  # glob patterns of files nnU-Net's own command may create (its log)


def _acdc_copy(ws: Workspace, name: str) -> Path:
    """A copy of the good ACDC-layout source (patient001, patient002), to be broken by a case."""
    folder = ws.case_folder(name) / "training"
    shutil.copytree(ws.root / "acdc_source" / "training", folder)
    return folder


def _convert(ws: Workspace, source: Optional[Path] = None, dataset: str = "971") -> List[str]:
    source = source or ws.root / "acdc_source" / "training"
    return ws.command("nnunet-fuse", "convert", "acdc", str(source), "-d", dataset)


def _broken_acdc(change: Callable[[Path], None], dataset_id: int) -> Callable[[Workspace], List[str]]:
    """convert acdc of a source with patient002 broken by change, to its own dataset id (so that an older version
    that accepts one mistake does not make the next case fail for another reason)."""
    def setup(ws: Workspace) -> List[str]:
        source = _acdc_copy(ws, f"acdc_{change.__name__}")
        change(source / "patient002")
        return _convert(ws, source, str(dataset_id))
    return setup


def truncated_image(p): truncate(p / "patient002_frame08.nii.gz")
def truncated_label(p): truncate(p / "patient002_frame01_gt.nii.gz", 0.7)
def text_label(p): (p / "patient002_frame01_gt.nii.gz").write_text("not an image\n")
def empty_image(p): (p / "patient002_frame01.nii.gz").write_bytes(b"")
def missing_image(p): (p / "patient002_frame08.nii.gz").unlink()
def missing_labelled_frame(p): (p / "patient002_frame08_gt.nii.gz").unlink()


def nan_image(p):
    array = sitk.GetArrayFromImage(sitk.ReadImage(str(p / "patient002_frame01.nii.gz")))
    array[0, 0, :5] = np.nan
    write_image(p / "patient002_frame01.nii.gz", array, (1.5, 1.5, 10.0))


def label_value_7(p):
    array = sitk.GetArrayFromImage(sitk.ReadImage(str(p / "patient002_frame01_gt.nii.gz")))
    array[0, 0, 0] = 7
    write_image(p / "patient002_frame01_gt.nii.gz", array, (1.5, 1.5, 10.0))


def label_size_mismatch(p):
    write_image(p / "patient002_frame01_gt.nii.gz", np.zeros((6, 30, 32), np.uint8), (1.5, 1.5, 10.0))


def uncompressed_label(p):
    label = p / "patient002_frame08_gt.nii.gz"
    (p / "patient002_frame08_gt.nii").write_bytes(gzip.decompress(label.read_bytes()))
    label.unlink()


def _msd_task(ws: Workspace, name: str, break_it: Callable[[Path], None], dataset_id: int) -> List[str]:
    task = ws.case_folder(name) / "Task09_Tiny"
    for sub in ("imagesTr", "labelsTr", "imagesTs"):
        (task / sub).mkdir(parents=True)
    training = []
    for i, f in enumerate(sorted((ws.tiny_raw / "labelsTr").glob("*.nii.gz"))[:2]):
        shutil.copy(f, task / "labelsTr" / f"tiny_{i}.nii.gz")
        shutil.copy(ws.tiny_raw / "imagesTr" / f.name.replace(".nii.gz", "_0000.nii.gz"),
                    task / "imagesTr" / f"tiny_{i}.nii.gz")
        training.append({"image": f"./imagesTr/tiny_{i}.nii.gz", "label": f"./labelsTr/tiny_{i}.nii.gz"})
    (task / "dataset.json").write_text(json.dumps({"name": "Tiny", "modality": {"0": "MRI"}, "labels": {
        "0": "background", "1": "sphere", "2": "box", "3": "rod"}, "numTraining": 2, "training": training,
        "test": []}))
    break_it(task)
    return ws.command("nnunet-fuse", "convert", "msd", str(task), "-d", str(dataset_id))


def _brats2015_missing_channel(ws: Workspace) -> List[str]:
    case = ws.case_folder("brats_missing_t1c") / "src" / "case_1"
    case.mkdir(parents=True)
    label = np.zeros((8, 16, 16), np.uint8)
    label[2:5, 4:9, 4:9] = 2
    write_image(case / "OTMultiClass.nii.gz", label)
    write_image(case / "Flair_subtrMeanDivStd.nii.gz", label.astype(np.float32))
    return ws.command("nnunet-fuse", "convert", "brats2015", str(case.parent), "-d", "973")


def _dataset_copy(ws: Workspace, dataset_id: int, break_it: Callable[[Path], None]) -> Path:
    """A copy of the tiny dataset's preprocessed folder under another id, broken by break_it."""
    target = ws.preprocessed / f"Dataset{dataset_id:03d}_Broken"
    shutil.copytree(next(ws.preprocessed.glob(f"Dataset{TINY_ID}_*")), target,
                    ignore=shutil.ignore_patterns("nnUNetPlans_*"))
    break_it(target)
    return target


def _plan(ws: Workspace, *args: str) -> List[str]:
    return ws.command("nnunet-fuse", "plan", *args)


def _scans(change: Callable[[Path], None], *extra: str) -> Callable[[Workspace], List[str]]:
    def setup(ws: Workspace) -> List[str]:
        folder = ws.good_scans(f"scans_{change.__name__}")
        change(folder)
        return ws.check_inputs(folder, *extra)
    return setup


def _first(folder: Path) -> Path:
    return sorted(folder.glob("*_0000.nii.gz"))[0]


def channel_0001_instead_of_0000(f): _first(f).rename(_first(f).with_name(_first(f).name.replace("_0000", "_0001")))
def extra_channel(f): shutil.copy(_first(f), _first(f).with_name(_first(f).name.replace("_0000", "_0001")))
def truncated_scan(f): truncate(_first(f))
def no_scans(f): [p.unlink() for p in f.iterdir()]
def scan_named_without_channel(f): _first(f).rename(f / "scan.nii.gz")


def nan_scan(f):
    array = sitk.GetArrayFromImage(sitk.ReadImage(str(_first(f))))
    array[3, 3, 3] = np.inf
    write_image(_first(f), array)


def uncompressed_scan(f):
    first = _first(f)
    first.with_name(first.name[:-3]).write_bytes(gzip.decompress(first.read_bytes()))
    first.unlink()


def single_slice_scan(f):
    array = sitk.GetArrayFromImage(sitk.ReadImage(str(_first(f))))
    write_image(_first(f), array[8], (1.0, 1.0))


def four_d_scan(f):
    array = sitk.GetArrayFromImage(sitk.ReadImage(str(_first(f))))
    image = sitk.JoinSeries([sitk.GetImageFromArray(array)] * 2)
    sitk.WriteImage(image, str(_first(f)), useCompression=True)


def _corrupt_model(ws: Workspace, trainer: str) -> str:
    """A copy of the trained model under another trainer name with its checkpoint cut short; returns the name."""
    model = ws.model.parent / f"{trainer}__{PLANS}__{CONFIGURATION}"
    shutil.copytree(ws.model, model, ignore=shutil.ignore_patterns("validation", "*.png", "*.txt"))
    truncate(model / "fold_0" / "checkpoint_final.pth")
    return trainer


def _users_plans_as_target(ws: Workspace) -> List[str]:
    shutil.copy(_tiny_plans_file(ws), Path(_tiny_plans_file(ws)).with_name("MyPlans.json"))
    return _plan(ws, "-d", str(TINY_ID), "--method", "fuseunet", "--plans-name", "MyPlans")


def _resume_from_corrupt_checkpoint(ws: Workspace) -> List[str]:
    fold = ws.model / "fold_1"
    fold.mkdir()
    shutil.copy(ws.model / "fold_0" / "checkpoint_final.pth", fold / "checkpoint_latest.pth")
    truncate(fold / "checkpoint_latest.pth")
    return ws.command("nnUNetv2_train", str(TINY_ID), CONFIGURATION, "1", "-tr", TRAINER, "-p", PLANS, "-device",
                      "cpu", "--c")


def _own_report(ws: Workspace) -> List[str]:
    folder = ws.case_folder("own_report")
    (folder / "results.md").write_text("# my own notes\n")
    return ws.command("nnunet-fuse", "reproduce", "-d", str(TINY_ID), "-c", CONFIGURATION, "--budget", "smoke",
                      "-device", "cpu", "-o", str(folder))


def _leaking_split(ws: Workspace) -> List[str]:
    folder = next(ws.preprocessed.glob(f"Dataset{ACDC_LIKE_ID}_*"))
    cases = sorted(p.name[:-len(".nii.gz")] for p in (ws.raw / folder.name / "labelsTr").iterdir())
    # nnU-Net's kind of split: over frames, so patient001's two frames fall on both sides
    (folder / "splits_final.json").write_text(json.dumps([{"train": cases[1:], "val": cases[:1]}]))
    return ws.command("nnunet-fuse", "reproduce", "-d", str(ACDC_LIKE_ID), "-c", "2d", "--budget", "smoke",
                      "-device", "cpu", "-o", str(ws.case_folder("leaking_split_report")))


def _broken_profile_plans(ws: Workspace) -> List[str]:
    plans = ws.case_folder("profile_broken") / "nnUNetPlans.json"
    plans.write_text('{"configurations": {')
    (plans.parent / "dataset.json").write_text("{}")
    return ws.command("nnunet-fuse", "profile", "--plans-file", str(plans), "-c", "2d", "-device", "cpu")


def _tiny_plans_file(ws: Workspace) -> str:
    return str(next(ws.preprocessed.glob(f"Dataset{TINY_ID}_*")) / "nnUNetPlans.json")


def _write(path_parts: Tuple[str, ...], text: str) -> Callable[[Path], None]:
    def change(folder: Path) -> None:
        folder.joinpath(*path_parts).write_text(text)
    return change


CASES: List[Case] = [
    # ---- convert
    Case("convert-no-source", "convert", "source folder does not exist",
         lambda ws: _convert(ws, ws.root / "no_such_folder"), "no patientNNN folders"),
    Case("convert-truncated-image", "convert", "a frame's .nii.gz cut in half (interrupted copy)",
         _broken_acdc(truncated_image, 901), "is not a complete NIfTI image"),
    Case("convert-truncated-label", "convert", "a label .nii.gz cut short", _broken_acdc(truncated_label, 902),
         "is not a complete NIfTI image"),
    Case("convert-not-an-image", "convert", "a text file named *_gt.nii.gz", _broken_acdc(text_label, 903),
         "is not a complete NIfTI image"),
    Case("convert-empty-file", "convert", "a 0-byte image file", _broken_acdc(empty_image, 904), "is empty (0 bytes)"),
    Case("convert-nan-image", "convert", "an image with NaN voxels", _broken_acdc(nan_image, 905),
         "NaN or infinite voxel"),
    Case("convert-label-value", "convert", "label value 7 in an ACDC label", _broken_acdc(label_value_7, 906),
         "label values [7]"),
    Case("convert-size-mismatch", "convert", "label and image of different size",
         _broken_acdc(label_size_mismatch, 907), "has size"),
    Case("convert-missing-image", "convert", "a labelled frame's image missing", _broken_acdc(missing_image, 908),
         "missing file"),
    Case("convert-missing-labelled-frame", "convert", "the ES frame's label missing (frame would be dropped)",
         _broken_acdc(missing_labelled_frame, 909), "Info.cfg names frame 8 as ES"),
    Case("convert-uncompressed-label", "convert", "a label saved as .nii instead of .nii.gz",
         _broken_acdc(uncompressed_label, 910), "are not .nii.gz"),
    Case("convert-negative-id", "convert", "-d -5",
         lambda ws: _convert(ws, dataset="-5"), "dataset IDs are 1-999"),
    Case("convert-four-digit-id", "convert", "-d 1000",
         lambda ws: _convert(ws, dataset="1000"), "dataset IDs are 1-999"),
    Case("convert-id-taken", "convert", "-d of an existing dataset",
         lambda ws: _convert(ws, dataset=str(TINY_ID)), "is taken by"),
    Case("convert-msd-truncated", "convert", "an MSD image cut short",
         lambda ws: _msd_task(ws, "msd_truncated", lambda t: truncate(t / "imagesTr" / "tiny_1.nii.gz"), 972),
         "is not a complete NIfTI image"),
    Case("convert-msd-not-an-image", "convert", "an MSD image file of random bytes (issue 28 item 6)",
         lambda ws: _msd_task(ws, "msd_random", lambda t: (t / "imagesTr" / "tiny_1.nii.gz").write_bytes(
             np.random.default_rng(0).bytes(4096)), 975), "cannot be read as an image"),
    Case("convert-msd-unlisted-image", "convert", "an image in imagesTr that dataset.json does not list (no label)",
         lambda ws: _msd_task(ws, "msd_unlisted", lambda t: shutil.copy(t / "imagesTr" / "tiny_1.nii.gz",
                                                                         t / "imagesTr" / "tiny_9.nii.gz"), 976),
         "are not training cases"),
    Case("convert-msd-broken-json", "convert", "an MSD dataset.json that is not JSON",
         lambda ws: _msd_task(ws, "msd_json", _write(("dataset.json",), "{'name': 'Tiny',"), 974),
         "is not valid JSON"),
    Case("convert-brats-missing-channel", "convert", "a BraTS 2015 case without its T1c file",
         _brats2015_missing_channel, "missing file"),
    # ---- plan
    Case("plan-name-escapes", "plan", "--plans-name ../../x (a path outside the dataset folder)",
         lambda ws: _plan(ws, "-d", str(TINY_ID), "--method", "fuseunet", "--plans-name", "../../x"),
         "must be a plain name"),
    Case("plan-name-folder", "plan", "--plans-name sub/Plans",
         lambda ws: _plan(ws, "-d", str(TINY_ID), "--method", "fuseunet", "--plans-name", "sub/Plans"),
         "must be a plain name"),
    Case("plan-negative-id", "plan", "-d -3", lambda ws: _plan(ws, "-d", "-3", "--method", "fuseunet"),
         "dataset IDs are 1-999"),
    Case("plan-four-digit-id", "plan", "-d 1000", lambda ws: _plan(ws, "-d", "1000", "--method", "fuseunet"),
         "dataset IDs are 1-999"),
    Case("plan-broken-base-plans", "plan", "nnUNetPlans.json cut short",
         lambda ws: _plan(ws, "-d", str(_dataset_copy(ws, 981, lambda d: truncate(d / "nnUNetPlans.json")).name),
                          "--method", "fuseunet"), "nnUNetPlans.json is not valid JSON"),
    Case("plan-broken-dataset-json", "plan", "dataset.json that is not JSON",
         lambda ws: _plan(ws, "-d", str(_dataset_copy(ws, 982, _write(("dataset.json",), "{")).name),
                          "--method", "fuseunet"), "dataset.json is not valid JSON"),
    Case("plan-unknown-configuration", "plan", "-c 3d_typo",
         lambda ws: _plan(ws, "-d", str(TINY_ID), "--method", "fuseunet", "-c", "3d_typo"), "do not exist in plans"),
    Case("plan-unknown-method", "plan", "--method fuse-unet",
         lambda ws: _plan(ws, "-d", str(TINY_ID), "--method", "fuse-unet"), "unknown method 'fuse-unet'"),
    Case("plan-not-planned", "plan", "a dataset nnU-Net has not planned",
         lambda ws: _plan(ws, "-d", "555", "--method", "fuseunet"), "has not been planned yet"),
    Case("plan-variant-as-base", "plan", "--base-plans of our own variant",
         lambda ws: _plan(ws, "-d", str(TINY_ID), "--method", "fuseunet", "--base-plans", PLANS),
         "already a plans variant"),
    Case("plan-foreign-target", "plan", "--plans-name of the user's own plans file", _users_plans_as_target,
         "was not written by nnunet_fuse"),
    Case("plan-segment-with-fuseunet-alone", "plan", "--method fuseunet --segment-with fuseunet",
         lambda ws: _plan(ws, "-d", str(TINY_ID), "--method", "fuseunet", "--segment-with", "fuseunet"),
         "--segment-with picks the segmentation network behind fuse4seg or hifuse"),
    Case("plan-state-channels-without-fuseunet", "plan", "--method hifuse --state-channels 32 (no FuseUNet decoder)",
         lambda ws: _plan(ws, "-d", str(TINY_ID), "--method", "hifuse", "--state-channels", "32"),
         "no network setting 'state_channels'; methods with it: fuse4seg-fuseunet, fuseunet, hifuse-fuseunet"),
    Case("plan-state-channels-zero", "plan", "--state-channels 0",
         lambda ws: _plan(ws, "-d", str(TINY_ID), "--method", "fuseunet", "--state-channels", "0"),
         "'0' is not a whole number of at least 1"),
    Case("plan-fuse4seg-one-channel", "plan", "Fuse4Seg on a one-channel dataset",
         lambda ws: _plan(ws, "-d", str(TINY_ID), "--method", "fuse4seg"), "needs at least 2 image channels"),
    # ---- train (inside nnU-Net's command: the message is the last line of its traceback)
    Case("train-corrupt-checkpoint", "nnUNetv2_train --c", "checkpoint_latest.pth cut short (killed while saving)",
         _resume_from_corrupt_checkpoint, "cannot be read", allowed_new=("*/fold_1/training_log_*.txt",)),
    Case("train-other-plans", "nnUNetv2_train", "our trainer with nnU-Net's plans",
         lambda ws: ws.command("nnUNetv2_train", str(TINY_ID), CONFIGURATION, "2", "-tr", TRAINER, "-p",
                               "nnUNetPlans", "-device", "cpu"), "needs FuseUNet plans"),
    # ---- check-inputs (before nnUNetv2_predict)
    Case("predict-missing-channel", "check-inputs", "a case whose _0000 file is missing",
         _scans(channel_0001_instead_of_0000), "lacks channel(s)"),
    Case("predict-extra-channel", "check-inputs", "a case with a channel the model does not know",
         _scans(extra_channel), "the model does not know"),
    Case("predict-truncated", "check-inputs", "a scan cut in half", _scans(truncated_scan),
         "is not a complete NIfTI image"),
    Case("predict-inf", "check-inputs", "a scan with an infinite voxel", _scans(nan_scan), "NaN or infinite"),
    Case("predict-wrong-ending", "check-inputs", "a scan saved as .nii for a .nii.gz model",
         _scans(uncompressed_scan), "do not end in .nii.gz"),
    Case("predict-2d-slice", "check-inputs", "one 2D slice for a 3D model", _scans(single_slice_scan),
         "single 2D slice"),
    Case("predict-4d", "check-inputs", "a 4D file (channels stacked in one file)", _scans(four_d_scan), "is 4D"),
    Case("predict-bad-name", "check-inputs", "scan.nii.gz (no channel number)", _scans(scan_named_without_channel),
         "is not named CASE_XXXX"),
    Case("predict-empty-folder", "check-inputs", "an empty input folder", _scans(no_scans), "no CASE_XXXX"),
    Case("predict-no-folder", "check-inputs", "an input folder that does not exist",
         lambda ws: ws.check_inputs(ws.root / "no_such_scans"), "does not exist"),
    Case("predict-output-is-input", "check-inputs", "-o equal to -i",
         lambda ws: ws.check_inputs(ws.good_scans("same_io"), "-o", str(ws.root / "cases" / "same_io")),
         "the output folder is the input folder"),
    Case("predict-untrained-fold", "check-inputs", "-f 3 where only fold 0 was trained",
         lambda ws: ws.check_inputs(ws.good_scans("fold3"), fold="3"), "no checkpoint_final.pth for fold 3"),
    Case("predict-no-model", "check-inputs", "-tr of a trainer never trained",
         lambda ws: ws.check_inputs(ws.good_scans("no_model"), trainer="nnUNetTrainerHiFuse_smoke"),
         "no trained model at"),
    Case("predict-corrupt-checkpoint", "check-inputs", "checkpoint_final.pth cut short",
         lambda ws: ws.check_inputs(ws.good_scans("corrupt_ckpt"), trainer=_corrupt_model(ws, "nnUNetTrainerCopy")),
         "cannot be read"),
    # ---- nnunet-fuse predict: check-inputs first, nnUNetv2_predict only on scans that pass
    Case("predict-command-missing-channel", "predict", "a case whose _0000 file is missing",
         lambda ws: ws.predict(_scans_changed(ws, channel_0001_instead_of_0000)), "lacks channel(s)"),
    Case("predict-command-2d-slice", "predict", "one 2D slice for a 3D model",
         lambda ws: ws.predict(_scans_changed(ws, single_slice_scan)), "single 2D slice"),
    Case("predict-command-untrained-fold", "predict", "-f 3 where only fold 0 was trained",
         lambda ws: ws.predict(ws.good_scans("predict_fold3"), fold="3"), "no checkpoint_final.pth for fold 3"),
    Case("predict-command-no-folder", "predict", "an input folder that does not exist",
         lambda ws: ws.predict(ws.root / "no_such_scans_either"), "does not exist"),
    # ---- export-fused
    Case("export-output-is-input", "export-fused", "-o equal to -i",
         lambda ws: ws.command("nnunet-fuse", "export-fused", "-i", str(ws.good_scans("export_same")), "-o",
                               str(ws.root / "cases" / "export_same"), "-d", str(TINY_ID), "-c", CONFIGURATION,
                               "-tr", TRAINER, "-p", PLANS, "-device", "cpu"),
         "the output folder is the input folder"),
    Case("export-truncated", "export-fused", "a scan cut short",
         lambda ws: ws.command("nnunet-fuse", "export-fused", "-i", str(_scans_changed(ws, truncated_scan)), "-o",
                               str(ws.root / "cases" / "export_out"), "-d", str(TINY_ID), "-c", CONFIGURATION,
                               "-tr", TRAINER, "-p", PLANS, "-device", "cpu"), "is not a complete NIfTI image"),
    Case("export-step-size", "export-fused", "-step_size 0 (a fraction of the patch in (0, 1], as nnU-Net's)",
         lambda ws: ws.command("nnunet-fuse", "export-fused", "-i", str(ws.good_scans("export_step")), "-o",
                               str(ws.root / "cases" / "export_step_out"), "-d", str(TINY_ID), "-c", CONFIGURATION,
                               "-tr", TRAINER, "-p", PLANS, "-device", "cpu", "-step_size", "0"),
         "the tile step must be in (0, 1]"),
    Case("export-labels-missing", "export-fused", "--labels FOLDER without a label map for the cases",
         lambda ws: ws.command("nnunet-fuse", "export-fused", "-i", str(ws.good_scans("export_labels")), "-o",
                               str(ws.root / "cases" / "export_labels_out"), "-d", str(TINY_ID), "-c", CONFIGURATION,
                               "-tr", TRAINER, "-p", PLANS, "-device", "cpu", "--labels", str(ws.root)),
         "has no label map for 2 case(s)"),
    # ---- profile
    Case("profile-cuda-without-gpu", "profile", "-device cuda on a machine without CUDA",
         lambda ws: ws.command("nnunet-fuse", "profile", "--plans-file", _tiny_plans_file(ws), "-c", CONFIGURATION,
                               "-device", "cuda", "-o", str(ws.root / "cases" / "profile_out")), "no CUDA GPU"),
    Case("profile-broken-plans", "profile", "--plans-file that is not JSON", _broken_profile_plans,
         "is not valid JSON"),
    Case("profile-unknown-method", "profile", "--methods fuseunet,unet (nnU-Net's network is always profiled)",
         lambda ws: ws.command("nnunet-fuse", "profile", "--plans-file", _tiny_plans_file(ws), "-c", CONFIGURATION,
                               "-device", "cpu", "--methods", "fuseunet,unet"), "unknown method 'unet'"),
    Case("profile-batch-zero", "profile", "--batch 0",
         lambda ws: ws.command("nnunet-fuse", "profile", "--plans-file", _tiny_plans_file(ws), "-c", CONFIGURATION,
                               "-device", "cpu", "--batch", "0"), "is not a whole number of at least 1"),
    Case("profile-missing-plans", "profile", "--plans-file that does not exist",
         lambda ws: ws.command("nnunet-fuse", "profile", "--plans-file", str(ws.root / "nope.json"), "-c", "2d"),
         "missing file"),
    # ---- reproduce
    Case("reproduce-foreign-report", "reproduce", "-o a folder holding the user's own results.md", _own_report,
         "were not written by nnunet-fuse reproduce"),
    Case("reproduce-leaking-split", "reproduce", "a split over frames (one patient on both sides)",
         _leaking_split, "in both training and validation"),
    Case("reproduce-negative-id", "reproduce", "-d -1",
         lambda ws: ws.command("nnunet-fuse", "reproduce", "-d", "-1", "-c", "2d"), "dataset IDs are 1-999"),
    Case("reproduce-cuda-without-gpu", "reproduce", "-device cuda on a machine without CUDA",
         lambda ws: ws.command("nnunet-fuse", "reproduce", "-d", str(TINY_ID), "-c", CONFIGURATION, "-device", "cuda",
                               "-o", str(ws.root / "cases" / "reproduce_cuda")), "no CUDA GPU"),
    Case("reproduce-trainer-not-found", "reproduce", "--methods fuseunet:MyTrainer whose folder is not in "
         "nnUNet_extTrainer",
         lambda ws: ws.command("nnunet-fuse", "reproduce", "-d", str(TINY_ID), "-c", CONFIGURATION, "--budget", "smoke",
                               "--methods", "fuseunet:nnUNetTrainerFuseUNet_smoke_mine",
                               "-o", str(ws.root / "cases" / "reproduce_trainer")),
         "finds no trainer class 'nnUNetTrainerFuseUNet_smoke_mine'"),
    Case("reproduce-trainer-other-budget", "reproduce", "--methods fuseunet:T with T a trainer of another budget",
         lambda ws: ws.command("nnunet-fuse", "reproduce", "-d", str(TINY_ID), "-c", CONFIGURATION, "--budget", "small",
                               "--methods", f"fuseunet:{TRAINER}", "-o", str(ws.root / "cases" / "reproduce_budget")),
         f"{TRAINER} does not derive from nnUNetTrainerFuseUNet_small"),
    # ---- classify, convert imagefolder
    Case("classify-no-classes", "classify train", "a dataset without classes.json",
         lambda ws: ws.command("nnunet-fuse", "classify", "train", "-d", str(TINY_ID), "-c", CONFIGURATION,
                               "-device", "cpu"), "no classes.json in"),
    Case("classify-one-class", "classify train", "classes.json in which every patient has the same class",
         lambda ws: ws.command("nnunet-fuse", "classify", "train", "-d", str(ACDC_LIKE_ID), "-c", "2d", "-device",
                               "cpu"), "a classifier needs at least two classes"),
    Case("classify-not-planned", "classify train", "-d of a dataset not preprocessed yet",
         lambda ws: ws.command("nnunet-fuse", "classify", "train", "-d", "963", "-device", "cpu"),
         "has not been planned yet"),
    Case("classify-bad-fold", "classify train", "-f five",
         lambda ws: ws.command("nnunet-fuse", "classify", "train", "-d", str(ACDC_LIKE_ID), "-f", "five"),
         "folds are numbers"),
    Case("classify-predict-untrained", "classify predict", "no classifier trained for the dataset",
         lambda ws: ws.command("nnunet-fuse", "classify", "predict", "-i", str(ws.good_scans("classify_scans")),
                               "-o", str(ws.root / "cases" / "classes.csv"), "-d", str(TINY_ID), "-c",
                               CONFIGURATION), "no trained model at"),
    Case("classify-predict-output-folder", "classify predict", "-o a folder instead of a CSV file",
         lambda ws: ws.command("nnunet-fuse", "classify", "predict", "-i", str(ws.good_scans("classify_scans2")),
                               "-o", str(ws.case_folder("classify_out")), "-d", str(TINY_ID), "-c",
                               CONFIGURATION), "give the CSV file to write"),
    Case("classify-evaluate-untrained", "classify evaluate", "no trained folds",
         lambda ws: ws.command("nnunet-fuse", "classify", "evaluate", "-d", str(ACDC_LIKE_ID), "-c", "2d"),
         "no trained fold with a validation.csv"),
    Case("convert-imagefolder-one-class", "convert", "an ImageFolder tree with one class folder",
         lambda ws: ws.command("nnunet-fuse", "convert", "imagefolder", str(_one_class_tree(ws)), "-d", "972"),
         "images in 1 class folder"),
    Case("convert-imagefolder-no-id", "convert", "convert imagefolder without -d",
         lambda ws: ws.command("nnunet-fuse", "convert", "imagefolder", str(_one_class_tree(ws))),
         "give the dataset id"),
    # ---- demo
    Case("demo-workdir-is-file", "demo", "--workdir naming a file",
         lambda ws: ws.command("nnunet-fuse", "demo", "--workdir", str(_file(ws, "demo_file.txt")), "-device", "cpu"),
         "is a file"),
    Case("demo-too-few-cases", "demo", "--n-train 2",
         lambda ws: ws.command("nnunet-fuse", "demo", "--workdir", str(ws.root / "cases" / "demo_few"), "--n-train",
                               "2", "-device", "cpu"), "at least 5 training cases"),
    Case("demo-foreign-workdir", "demo", "--workdir of a folder with the user's files",
         lambda ws: ws.command("nnunet-fuse", "demo", "--workdir", str(_file(ws, "mine/notes.txt").parent),
                               "-device", "cpu"), "is not a demo folder"),
]


def _scans_changed(ws: Workspace, change: Callable[[Path], None]) -> Path:
    folder = ws.good_scans(f"export_{change.__name__}")
    change(folder)
    return folder


def _one_class_tree(ws: Workspace) -> Path:
    """root/only/{a,b}.png: an ImageFolder tree with a single class."""
    from skimage import io

    root = ws.root / "cases" / "imagefolder_one_class"
    (root / "only").mkdir(parents=True, exist_ok=True)
    for name in ("a", "b"):
        io.imsave(str(root / "only" / f"{name}.png"), np.full((8, 8), 100, dtype=np.uint8), check_contrast=False)
    return root


def _file(ws: Workspace, relative: str) -> Path:
    path = ws.root / "cases" / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("the user's file\n")
    return path


# ------------------------------------------------------------------------------------------------------ running
def snapshot(root: Path) -> Dict[str, Tuple[int, int]]:
    """{relative path: (size, mtime_ns)} of every file below root; folders as (-1, 0): created or removed ones count,
    a folder's own time (it changes with any file added to it) does not."""
    state = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs:
            state[str((Path(folder) / name).relative_to(root))] = (-1, 0)
        for name in files:
            info = (Path(folder) / name).lstat()
            state[str((Path(folder) / name).relative_to(root))] = (info.st_size, info.st_mtime_ns)
    return state


@dataclass
class Outcome:
    case: Case
    returncode: int
    output: str           # stdout + stderr
    message: str          # the last non-empty line of stderr (or stdout)
    changed: List[str]    # files created, changed or removed (beyond case.allowed_new)

    @property
    def traceback(self) -> bool:
        return "Traceback (most recent call last)" in self.output

    @property
    def kind(self) -> str:
        if self.returncode == 0:
            return "accepted (no error)"
        if self.traceback:
            return "traceback" + (", ends in the message" if self.case.expect in self.message else "")
        return "clear error" if self.case.expect in self.output else "error, other message"


def run_case(case: Case, ws: Workspace, timeout: int = 600) -> Outcome:
    import fnmatch

    command = case.setup(ws)
    before = snapshot(ws.root)
    result = subprocess.run(command, env=ws.env, capture_output=True, text=True, timeout=timeout, cwd=ws.root)
    after = snapshot(ws.root)
    changed = sorted(p for p in set(before) | set(after) if before.get(p) != after.get(p))
    changed = [p for p in changed if not any(fnmatch.fnmatch(p, g) for g in case.allowed_new)]
    lines = [line for line in (result.stderr or result.stdout).splitlines() if line.strip()]
    return Outcome(case, result.returncode, result.stdout + result.stderr, lines[-1] if lines else "", changed)
