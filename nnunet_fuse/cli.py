"""``nnunet-fuse``: plan, env, version, demo, profile, convert, reproduce, export-fused, check-inputs, predict,
find-best-configuration, classify. nnU-Net's CLI
conventions; a mistake in the input ends with one ``error:`` line that names the file and says what to do (exit 2)."""
from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from pathlib import Path
from typing import List, Optional

from nnunet_fuse.budgets import BUDGETS, SNAPSHOT_EPOCHS
from nnunet_fuse.input_check import InputError, read_json
from nnunet_fuse.planning import PlanningError, available_methods, write_plans_variant
from nnunet_fuse.resources import ext_trainer_value


def _nnunet_folder(variable: str) -> Optional[str]:
    """The value of an nnU-Net path variable, or None after printing how to set it."""
    value = os.environ.get(variable)
    if not value:
        print(f"error: {variable} is not set; export it as for nnU-Net "
              f"(see nnU-Net's documentation/setting_up_paths.md)", file=sys.stderr)
    return value


def dataset_id(text: str) -> int:
    """argparse type of -d where only an ID is taken: nnU-Net's IDs are 1-999 (DatasetXXX)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"dataset IDs are numbers 1-999, got '{text}'")
    if not 1 <= value <= 999:
        raise argparse.ArgumentTypeError(f"dataset IDs are 1-999 (nnU-Net's DatasetXXX), got {value}")
    return value


def whole_number(minimum: int):
    """argparse type of a count or size: a whole number of at least ``minimum``."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = minimum - 1
        if value < minimum:
            raise argparse.ArgumentTypeError(f"'{text}' is not a whole number of at least {minimum}")
        return value
    return parse


def _device(name: Optional[str]) -> str:
    """-device as given, or cuda when available; InputError for a device this machine lacks."""
    import torch

    if name is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise InputError("-device cuda: no CUDA GPU is usable here (torch.cuda.is_available() is False); use "
                         "-device cpu, or install a PyTorch build that matches the GPU driver")
    if name == "mps" and not torch.backends.mps.is_available():
        raise InputError("-device mps: Apple's MPS is not available here; use -device cpu")
    return name


def _plan(args: argparse.Namespace) -> int:
    preprocessed = _nnunet_folder("nnUNet_preprocessed")
    if not preprocessed:
        return 2
    method = args.method if not args.segment_with else f"{args.method}-{args.segment_with}"
    if args.segment_with and method not in available_methods():
        hosts = sorted(m[:-len(f"-{args.segment_with}")] for m in available_methods()
                       if m.endswith(f"-{args.segment_with}"))
        print(f"error: --segment-with picks the segmentation network behind {' or '.join(hosts)} (--method "
              f"{hosts[0]} --segment-with {args.segment_with}); --method {args.method} has no separate segmentation "
              f"network: leave --segment-with out", file=sys.stderr)
        return 2
    settings = {} if args.state_channels is None else {"state_channels": args.state_channels}
    result = write_plans_variant(preprocessed, args.d, method, args.base_plans, args.c, args.plans_name,
                                 args.overwrite, args.keep_base_batch_and_patch, settings)
    same = " (it already holds these configurations as this version plans them: nothing to replace)" \
        if result["status"] == "unchanged" else ""
    print(f"{result['status']}: {result['path']}{same}")
    print(f"configurations: {', '.join(result['configurations'])}")
    plans = json.loads(Path(result["path"]).read_text())
    for name in result["configurations"]:
        kwargs = plans["configurations"][name].get("architecture", {}).get("arch_kwargs", {})
        if kwargs.get("global_stages") is not None:  # HiFuse: say where attention runs (the scale-down)
            print(f"  {name}: global attention only at stages {kwargs['global_stages']} of 0-{kwargs['n_stages'] - 1} "
                  f"(where feature maps are small enough; the others are local only), window {kwargs['window_size']}")
    example = result["configurations"][0]
    print(f"next: eval \"$(nnunet-fuse env)\" && nnUNetv2_train {args.d} {example} 0 -tr {result['trainer']} "
          f"-p {result['plans_name']}")
    return 0


def _sbatch_option(text: str) -> tuple:
    """--sbatch KEY=VALUE (or a bare flag KEY) → (key, value)."""
    key, _, value = text.lstrip("-").partition("=")
    if not key:
        raise argparse.ArgumentTypeError(f"'{text}' is not an sbatch option; e.g. --sbatch account=mylab")
    return key, (value if value else True)


def _reproduce(args: argparse.Namespace) -> int:
    from nnunet_fuse.commands import StepFailed, nnunet_environment
    from nnunet_fuse.reproduce import ReproduceError, parse_methods, reproduce
    from nnunet_fuse.reproduce.runs import TrainingInterrupted
    from nnunet_fuse.training.stopping import INTERRUPTED_EXIT_CODE

    try:
        launcher = None
        if args.launcher == "slurm":
            from nnunet_fuse.reproduce.launchers.slurm import SlurmLauncher, SlurmResources, slurm_minutes

            slurm_minutes(args.time)  # a bad --time is refused before any work
            launcher = SlurmLauncher(SlurmResources(args.partition, args.gpus_per_job, args.cpus_per_job, args.mem,
                                                    args.time, args.max_parallel, tuple(args.sbatch)))
            # the jobs' device: the submitting machine (a login node) need not have one
            device = args.device or ("cuda" if args.gpus_per_job else "cpu")
        else:
            device = _device(args.device)
        methods = parse_methods(args.methods, args.budget)
        reproduce(args.d, args.c, methods, args.folds, args.budget, device,
                  nnunet_environment(light=device != "cuda"), Path(args.o) if args.o else None, args.np, args.curve,
                  launcher)
    except (ReproduceError, PlanningError, InputError, StepFailed) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2 if not isinstance(e, StepFailed) else 1
    except TrainingInterrupted as e:
        print(f"stopped: {e}; run the same command again to continue", file=sys.stderr)
        return INTERRUPTED_EXIT_CODE
    return 0


def _model_folder(args: argparse.Namespace) -> Path:
    """nnUNet_results/DatasetXXX_Name/TRAINER__PLANS__CONFIGURATION of -d/-tr/-p/-c, as nnUNetv2_predict finds it."""
    from nnunetv2.utilities.file_path_utilities import get_output_folder

    try:
        return Path(get_output_folder(args.d, args.tr, args.p, args.c))
    except RuntimeError as e:  # nnU-Net's "Could not find a dataset with the ID ..."
        raise InputError(f"dataset {args.d}: {e}") from e


def _export_fused(args: argparse.Namespace) -> int:
    import torch

    if not _nnunet_folder("nnUNet_results") or not _nnunet_folder("nnUNet_preprocessed"):
        return 2
    os.environ["nnUNet_extTrainer"] = ext_trainer_value(os.environ.get("nnUNet_extTrainer"))
    from nnunet_fuse.fused_export import export_fused

    device = torch.device(_device(args.device))
    written = export_fused(_model_folder(args), Path(args.i), Path(args.o), args.f, args.chk, device, args.step_size,
                           labels_folder=Path(args.labels) if args.labels else None)
    print(f"wrote {len(written)} fused image(s) to {args.o}")
    return 0


def env_line(current: Optional[str] = None) -> str:
    """The shell line that puts our trainers folder first in nnUNet_extTrainer, keeping other entries."""
    return f"export nnUNet_extTrainer={shlex.quote(ext_trainer_value(current))}"


def _env(args: argparse.Namespace) -> int:
    print(env_line(os.environ.get("nnUNet_extTrainer")))
    return 0


def _version(args: argparse.Namespace) -> int:
    from nnunet_fuse.compatibility import installed_versions, model_versions

    print(installed_versions())
    for folder in args.model:
        for path, verdict in model_versions(folder):
            print(f"{path}: {verdict}")
    return 0


def _find_best_configuration(args: argparse.Namespace) -> int:
    from nnunet_fuse.model_selection import find_best

    if not _nnunet_folder("nnUNet_results") or not _nnunet_folder("nnUNet_preprocessed"):
        return 2
    os.environ["nnUNet_extTrainer"] = ext_trainer_value(os.environ.get("nnUNet_extTrainer"))
    find_best(args.d, args.m, args.f, not args.disable_ensembling, args.np)
    return 0


def _demo(args: argparse.Namespace) -> int:
    from nnunet_fuse.commands import StepFailed
    from nnunet_fuse.demo import run_demo

    try:
        device = _device(args.device)
        run_demo(Path(args.workdir), device, trainer=args.tr, n_train=args.n_train, n_test=args.n_test,
                 seed=args.seed, overwrite=args.overwrite)
    except (FileExistsError, InputError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except StepFailed as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


def _profile(args: argparse.Namespace) -> int:
    import datetime

    import torch

    from nnunet_fuse.reporting import format_table
    from nnunet_fuse.planning import find_dataset_folder
    from nnunet_fuse.profiling import profile_plans, table_rows, write_outputs

    if args.plans_file:
        plans_files = [Path(p) for p in args.plans_file]
        dataset_json_file = Path(args.dataset_json) if args.dataset_json else plans_files[0].parent / "dataset.json"
    else:
        if not args.d:
            print("error: give -d (with nnUNet_preprocessed set) or --plans-file PLANS.json", file=sys.stderr)
            return 2
        preprocessed = _nnunet_folder("nnUNet_preprocessed")
        if not preprocessed:
            return 2
        folder = find_dataset_folder(preprocessed, args.d)
        names = args.p or ["nnUNetPlans", *sorted(p.stem for p in folder.glob("nnUNetResEnc*Plans.json"))]
        plans_files = [folder / f"{name}.json" for name in names]
        dataset_json_file = folder / "dataset.json"
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown_methods = [m for m in methods if m not in available_methods()]
    if unknown_methods or not methods:
        raise InputError(f"--methods: unknown method '{(unknown_methods or [args.methods])[0]}'; give methods of "
                         f"{', '.join(available_methods())}, comma-separated (nnU-Net's network and the encoder "
                         f"alone are always profiled beside them)")
    plans = [read_json(f) for f in plans_files]
    dataset_json = read_json(dataset_json_file)
    device = torch.device(_device(args.device))
    unknown = [p["plans_name"] for p in plans if args.c not in p["configurations"]]
    if unknown:
        print(f"error: configuration '{args.c}' is not in plans {unknown}", file=sys.stderr)
        return 2
    try:
        rows = profile_plans(plans, dataset_json, args.c, device, args.batch, args.patch_size, args.warmup,
                             args.repeats, inference=not args.no_inference, compile=args.compile,
                             methods=methods, inference_repeats=args.inference_repeats)
    except ValueError as e:  # settings the plans do not allow (a patch off the strides)
        print(f"error: {e}", file=sys.stderr)
        return 2
    cfg = plans[0]["configurations"][args.c]
    meta = {"dataset": plans[0]["dataset_name"], "configuration": args.c,
            "patch_size": args.patch_size or cfg.get("patch_size"), "batch_size": args.batch or cfg.get("batch_size"),
            "device": torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({os.cpu_count()} cores)",
            "torch": torch.__version__, "warmup": args.warmup, "repeats": args.repeats, "compile": args.compile,
            "inference_repeats": None if args.no_inference else args.inference_repeats,
            "date": datetime.date.today().isoformat()}
    print("\n" + format_table(table_rows(rows)))
    stem = Path(args.o) / f"{meta['dataset']}_{args.c}_{device.type}{'_compiled' if args.compile else ''}"
    for path in write_outputs(rows, meta, stem, args.plot):
        print(f"wrote {path}")
    return 0


def _fold(text: str):
    """argparse type of a classification fold: 0-9 or 'all'."""
    if text == "all":
        return text
    if text.isdigit():
        return int(text)
    raise argparse.ArgumentTypeError(f"folds are numbers (0-4 for nnU-Net's 5 folds) or 'all', got '{text}'")


def _classification_paths(args: argparse.Namespace):
    """(preprocessed dataset folder, raw dataset folder, plans file, model folder) of -d/-p/-c."""
    from nnunet_fuse.classification.training import model_folder
    from nnunet_fuse.planning import find_dataset_folder

    folders = [_nnunet_folder(v) for v in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")]
    if not all(folders):
        raise InputError("set nnUNet_raw, nnUNet_preprocessed and nnUNet_results as for nnU-Net")
    raw_root, preprocessed_root, results = map(Path, folders)
    preprocessed = find_dataset_folder(preprocessed_root, args.d)
    plans_file = preprocessed / f"{args.p}.json"
    if not plans_file.is_file():
        raise InputError(f"no plans {plans_file}; run nnUNetv2_plan_and_preprocess -d {args.d} first, or give the "
                         f"plans name with -p")
    return (preprocessed, raw_root / preprocessed.name, plans_file,
            model_folder(results, preprocessed.name, args.p, args.c, args.budget))


def _classify(args: argparse.Namespace) -> int:
    if args.action == "predict" and (Path(args.o).suffix.lower() != ".csv" or Path(args.o).is_dir()):
        raise InputError(f"-o {args.o}: give the CSV file to write (e.g. predictions.csv)")
    if args.features == "shape":
        return _classify_from_segmentations(args)
    given = [o for o, v in (("--segmentations", args.segmentations), ("--segment-with", getattr(args, "segment_with",
             None)), ("--body-sizes", getattr(args, "body_sizes", None))) if v]
    if given:
        raise InputError(f"{', '.join(given)} {'applies' if len(given) == 1 else 'apply'} to classification from "
                         f"segmentations: add --features shape")
    import torch

    if args.action == "predict" and not args.i:
        raise InputError("give the scans to classify with -i SCANS")
    preprocessed, raw, plans_file, folder = _classification_paths(args)
    if args.action == "train":
        from nnunet_fuse.datasets.classes import CLASSES_FILE
        from nnunet_fuse.classification.training import ClassificationData, prepare_model_folder, train_fold

        device = torch.device(_device(args.device))
        data = ClassificationData(preprocessed, raw, read_json(plans_file), args.c)
        prepare_model_folder(folder, plans_file, preprocessed / "dataset.json", raw / CLASSES_FILE)
        for fold in args.f:
            train_fold(data, folder, fold, preprocessed, args.budget, device, args.continue_training)
        print(f"trained fold(s) {' '.join(map(str, args.f))} in {folder}\nnext: nnunet-fuse classify evaluate "
              f"-d {args.d} -c {args.c} --budget {args.budget}   (after all five folds), or classify predict -i "
              f"SCANS -o OUT.csv -d {args.d} -c {args.c} --budget {args.budget}")
    elif args.action == "predict":
        from nnunet_fuse.classification.prediction import predict_folder

        written = predict_folder(folder, Path(args.i), Path(args.o), args.f, args.chk,
                                 torch.device(_device(args.device)))
        print(f"wrote {written}")
    else:
        from nnunet_fuse.classification.evaluation import evaluate_cross_validation

        evaluate_cross_validation(folder, Path(args.o) if args.o else None)
    return 0


def _classify_from_segmentations(args: argparse.Namespace) -> int:
    """classify train/evaluate/predict --features shape: a classifier of the label maps' shape features."""
    from nnunet_fuse.classification import from_segmentations as shape
    from nnunet_fuse.planning import find_dataset_folder

    folders = [_nnunet_folder(v) for v in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")]
    if not all(folders):
        raise InputError("set nnUNet_raw, nnUNet_preprocessed and nnUNet_results as for nnU-Net")
    raw_root, preprocessed_root, results = map(Path, folders)
    try:
        raw = find_dataset_folder(raw_root, args.d)
    except PlanningError:
        raise InputError(f"dataset {args.d} is not in nnUNet_raw ({raw_root}); convert it first (nnunet-fuse "
                         f"convert ...)") from None
    preprocessed = preprocessed_root / raw.name
    source = Path(args.segmentations) if args.action != "predict" and args.segmentations else None
    folder = shape.shape_model_folder(results, raw.name, source)
    if args.action == "train":
        shape.train_shape_classifier(raw, preprocessed if preprocessed.is_dir() else raw, folder, args.f, source)
        how = "" if source is None else f" --segmentations {source}"
        print(f"trained fold(s) {' '.join(map(str, args.f))} in {folder}\nnext: nnunet-fuse classify evaluate "
              f"-d {args.d} --features shape{how}   (after all five folds), or classify predict -d {args.d} "
              f"--features shape -i SCANS --segment-with MODEL_FOLDER -o OUT.csv")
    elif args.action == "evaluate":
        from nnunet_fuse.classification.evaluation import evaluate_cross_validation

        evaluate_cross_validation(folder, Path(args.o) if args.o else None)
    else:
        if bool(args.segmentations) == bool(args.segment_with):
            raise InputError("give the label maps with --segmentations FOLDER, or --segment-with MODEL_FOLDER "
                             "(and -i SCANS) to have a trained nnU-Net model segment the scans first")
        segmentations = Path(args.segmentations) if args.segmentations else None
        if args.segment_with:
            if not args.i:
                raise InputError("--segment-with segments the scans of -i SCANS; give -i")
            segmentations = _segment_first(Path(args.segment_with), Path(args.i), Path(args.o), args)
        written = shape.predict_shape(folder, segmentations, Path(args.o), args.f, Path(args.i) if args.i else None,
                                      Path(args.body_sizes) if args.body_sizes else None)
        print(f"wrote {written}")
    return 0


def _segment_first(model: Path, scans: Path, output_csv: Path, args: argparse.Namespace) -> Path:
    """nnUNetv2_predict_from_modelfolder of the scans (checked first) into OUT_segmentations/ beside the CSV."""
    import subprocess

    from nnunet_fuse.commands import nnunet_command, nnunet_environment
    from nnunet_fuse.input_check import check_prediction_inputs

    target = output_csv.with_name(f"{output_csv.stem}_segmentations")
    folds = sorted(p.name[len("fold_"):] for p in model.glob("fold_*") if (p / args.chk).is_file())
    configuration = model.name.split("__")[-1]
    check_prediction_inputs(model, scans, configuration, folds or [0], args.chk, target)
    command = [nnunet_command("nnUNetv2_predict_from_modelfolder"), "-i", str(scans), "-o", str(target),
               "-m", str(model), "-f", *folds, "-chk", args.chk, "-device", _device(args.device)]
    print(f"$ {shlex.join(command)}", flush=True)
    if subprocess.call(command, env=nnunet_environment(light=False)) != 0:
        raise InputError(f"nnU-Net could not segment {scans} with {model} (its error is above)")
    return target


CONVERTERS = {"acdc": "convert_acdc", "msd": "convert_msd", "kits23": "convert_kits23", "brats": "convert_brats",
              "brats2021": "convert_brats2021", "brats2015": "convert_brats2015", "imagefolder": "convert_imagefolder"}


def _convert(args: argparse.Namespace) -> int:
    from nnunet_fuse.datasets import converters

    raw = _nnunet_folder("nnUNet_raw")
    if not raw:
        return 2
    convert = getattr(converters, CONVERTERS[args.dataset])
    kwargs = {} if args.d is None else {"dataset_id": args.d}
    print(f"converting {args.source} ({args.dataset}) ...", flush=True)
    target = convert(args.source, raw, **kwargs)
    print(f"wrote {target}\nnext: nnUNetv2_plan_and_preprocess -d {target.name[7:10]} --verify_dataset_integrity")
    if (target / "classes.json").is_file():
        print(f"      then, for case classification: nnunet-fuse classify train -d {target.name[7:10]} -c 2d -f 0")
    return 0


def _check_inputs(args: argparse.Namespace) -> int:
    from nnunet_fuse.input_check import check_prediction_inputs

    if not _nnunet_folder("nnUNet_results"):
        return 2
    cases = check_prediction_inputs(_model_folder(args), Path(args.i), args.c, args.f, args.chk, args.o)
    files = sum(len(f) for f in cases.values())
    print(f"{len(cases)} case(s), {files} image file(s) in {args.i}: complete, readable, finite, and named and shaped "
          f"as the model needs; folds {' '.join(map(str, args.f))} have a readable {args.chk}")
    output = args.o or "OUTPUT_FOLDER"
    print(f"next: nnUNetv2_predict -i {args.i} -o {output} -d {args.d} -c {args.c} -tr {args.tr} -p {args.p} "
          f"-f {' '.join(map(str, args.f))} -chk {args.chk}")
    return 0


def _predict(args: argparse.Namespace) -> int:
    """check-inputs, then nnU-Net's own nnUNetv2_predict with the same arguments (ours, with -device chosen as
    everywhere here), its exit code returned."""
    import subprocess

    from nnunet_fuse.commands import nnunet_command, nnunet_environment
    from nnunet_fuse.input_check import check_prediction_inputs

    if not _nnunet_folder("nnUNet_results"):
        return 2
    cases = check_prediction_inputs(_model_folder(args), Path(args.i), args.c, args.f, args.chk, args.o)
    print(f"checked {len(cases)} case(s) in {args.i} against the model: complete, readable, finite, named and shaped "
          f"as it needs", flush=True)
    command = [nnunet_command("nnUNetv2_predict"), "-i", args.i, "-o", args.o, "-d", args.d, "-c", args.c,
               "-tr", args.tr, "-p", args.p, "-f", *map(str, args.f), "-chk", args.chk,
               "-device", _device(args.device), *args.nnunet_arguments]
    print(f"$ {shlex.join(command)}", flush=True)
    return subprocess.call(command, env=nnunet_environment(light=False))


def _prediction_arguments(parser: argparse.ArgumentParser, output_required: bool, output_help: str) -> None:
    """nnUNetv2_predict's arguments that name the scans and the trained model (check-inputs, predict)."""
    parser.add_argument("-i", required=True, help="input folder with CASE_XXXX files, as for nnUNetv2_predict")
    parser.add_argument("-o", required=output_required, default=None, help=output_help)
    parser.add_argument("-d", required=True, help="dataset ID or name")
    parser.add_argument("-c", required=True, help="configuration")
    parser.add_argument("-tr", default="nnUNetTrainer", help="trainer (default nnUNetTrainer)")
    parser.add_argument("-p", default="nnUNetPlans", help="plans (default nnUNetPlans)")
    parser.add_argument("-f", nargs="+", default=[0, 1, 2, 3, 4], help="folds (default 0 1 2 3 4, as nnUNetv2_predict)")
    parser.add_argument("-chk", default="checkpoint_final.pth", help="checkpoint (default checkpoint_final.pth)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nnunet-fuse", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    plan = sub.add_parser("plan", help="write a method's plans variant next to nnU-Net's plans (no re-preprocessing)")
    plan.add_argument("-d", required=True, help="dataset ID or name, e.g. 27 or Dataset027_ACDC")
    plan.add_argument("--method", required=True, help=f"one of: {', '.join(available_methods())}")
    plan.add_argument("--base-plans", default="nnUNetPlans",
                      help="existing nnU-Net plans to start from (default nnUNetPlans; e.g. nnUNetResEncUNetMPlans)")
    plan.add_argument("-c", nargs="+", default=None,
                      help="configurations to write (default: all of the base plans' that the method can train), "
                           "e.g. 2d 3d_fullres; an existing variant keeps its other configurations")
    plan.add_argument("--plans-name", default=None, help="name of the variant (default e.g. nnUNetFuseUNetPlans)")
    plan.add_argument("--overwrite", action="store_true", help="replace an earlier, different variant of ours")
    plan.add_argument("--keep-base-batch-and-patch", action="store_true",
                      help="keep nnU-Net's batch and patch size (same-input comparisons) instead of budgeting them "
                           "for the method's network within the memory nnU-Net planned for")
    plan.add_argument("--segment-with", choices=["fuseunet"], default=None,
                      help="with --method fuse4seg: the segmentation network behind the fusion stage (default: "
                           "nnU-Net's own from the base plans; fuseunet: the FuseUNet decoder)")
    plan.add_argument("--state-channels", type=whole_number(1), default=None, metavar="N",
                      help="FuseUNet decoder: channels of its ODE state, the decoder's only full-resolution features "
                           "(default: the paper's, 2 per output and at least 6); what a wider state gives and costs: "
                           "README, FuseUNet")
    plan.set_defaults(func=_plan)

    env = sub.add_parser("env", help="print the export line for nnUNet_extTrainer: eval \"$(nnunet-fuse env)\"")
    env.set_defaults(func=_env)

    version = sub.add_parser("version", help="this plugin's version and what it runs on; with model folders, which "
                                             "version wrote their plans and checkpoints and whether this one can use "
                                             "them")
    version.add_argument("model", nargs="*", help="trained model folders (nnUNet_results/DatasetXXX/TRAINER__PLANS__"
                                                  "CONFIGURATION)")
    version.set_defaults(func=_version)

    best = sub.add_parser("find-best-configuration",
                          help="nnU-Net's find_best_configuration over the trained models listed (our trainers and "
                               "nnU-Net's side by side), with ensembles of each pair")
    best.add_argument("-d", required=True, help="dataset ID or name")
    best.add_argument("-m", nargs="+", required=True, metavar="TRAINER__PLANS__CONFIGURATION",
                      help="trained models, named as their folders in nnUNet_results/DatasetXXX")
    best.add_argument("-f", type=int, nargs="+", default=[0, 1, 2, 3, 4], help="folds (default 0 1 2 3 4)")
    best.add_argument("-np", type=int, default=1, help="processes for ensembling and evaluation (default 1)")
    best.add_argument("--disable_ensembling", action="store_true", help="compare the models only")
    best.set_defaults(func=_find_best_configuration)

    prof = sub.add_parser("profile", help="parameters, FLOPs, step time, memory, inference: nnU-Net vs FuseUNet "
                                          "vs encoder alone, side by side")
    prof.add_argument("-d", default=None, help="dataset ID or name (plans from nnUNet_preprocessed)")
    prof.add_argument("-c", required=True, help="configuration, e.g. 2d or 3d_fullres")
    prof.add_argument("-p", nargs="+", default=None,
                      help="nnU-Net plans names to profile (default: nnUNetPlans and any nnUNetResEnc*Plans present);"
                           " each is profiled with its FuseUNet variant and its encoder alone")
    prof.add_argument("--plans-file", nargs="+", default=None, help="plans JSON file(s) instead of -d")
    prof.add_argument("--dataset-json", default=None, help="with --plans-file: dataset.json (default: beside it)")
    prof.add_argument("-device", choices=["cpu", "cuda"], default=None, help="default: cuda if available")
    prof.add_argument("--batch", type=whole_number(1), default=None, help="batch size (default: the plan's)")
    prof.add_argument("--patch-size", type=whole_number(1), nargs="+", default=None,
                      help="override the plan's patch size")
    prof.add_argument("--warmup", type=whole_number(0), default=1)
    prof.add_argument("--repeats", type=whole_number(1), default=3, help="timed training steps (median reported)")
    prof.add_argument("--compile", action="store_true", help="train through torch.compile (FLOPs, inference eager)")
    prof.add_argument("--no-inference", action="store_true", help="skip the sliding-window inference timing")
    prof.add_argument("--inference-repeats", type=whole_number(1), default=1,
                      help="timed sliding-window predictions per network, round-robin (median reported)")
    prof.add_argument("--plot", action="store_true", help="also write a PNG bar chart")
    prof.add_argument("--methods", default="fuseunet",
                      help="comma-separated methods profiled beside each base plans (default fuseunet; e.g. "
                           "fuseunet,hifuse,hifuse-fuseunet)")
    prof.add_argument("-o", default="nnunet_fuse_profile", help="output folder for .json/.csv/.md/.png")
    prof.set_defaults(func=_profile)

    conv = sub.add_parser("convert", help="public dataset -> nnU-Net raw format in $nnUNet_raw (validated first)")
    conv.add_argument("dataset", choices=list(CONVERTERS),
                      help="acdc: ACDC 'training' folder; msd: any MSD TaskXX_Name folder; kits23: the KiTS 2023 "
                           "'dataset' folder; brats: a BraTS 2021 training folder or BraTS 2013/2015 FLAIR+T1c case "
                           "folders (brats2021 / brats2015 force one layout); imagefolder: root/<class>/<image> "
                           "(png, jpg, bmp, tif or nii.gz) for classify")
    conv.add_argument("source", help="the folder as downloaded")
    conv.add_argument("-d", type=dataset_id, default=None,
                      help="dataset id (defaults: acdc 27, msd the task number, kits23 220, brats2021 137, "
                           "brats2015 138; imagefolder: required)")
    conv.set_defaults(func=_convert)

    classify = sub.add_parser("classify", help="case classification on nnU-Net's data: from segmentations (shape "
                                               "features) or from the images (HiFuse); train, predict, evaluate "
                                               "(classes from nnUNet_raw/DatasetXXX/classes.json)")
    actions = classify.add_subparsers(dest="action", required=True)
    from nnunet_fuse.budgets import CLASSIFIER_BUDGETS

    for action, text in (("train", "train folds (in nnUNet_results)"),
                         ("predict", "classify new scans or segmentations: one CSV row per case or patient"),
                         ("evaluate", "cross-validation report over the trained folds (MD, JSON, CSV, PNG)")):
        a = actions.add_parser(action, help=text)
        a.add_argument("-d", required=True, help="dataset ID or name")
        a.add_argument("--features", choices=["image", "shape"], default="image",
                       help="shape: volumes, ejection fractions, masses, thicknesses ... measured on label maps, "
                            "classified by a scikit-learn model chosen by nested cross-validation (model folder "
                            "ShapeClassifier__SOURCE); image: a HiFuse network on nnU-Net's preprocessed images "
                            "(model folder HiFuseClassifier_BUDGET__PLANS__CONFIGURATION; default)")
        if action != "predict":
            a.add_argument("--segmentations", default=None, metavar="SOURCE",
                           help="--features shape: the label maps of the held-out patients: a trained nnU-Net model "
                                "folder (fold k's validation/ predictions: the honest cross-validation) or a folder "
                                "of label maps (default: the references, labelsTr: the upper bound); the "
                                "classifiers always learn from the training patients' references")
        a.add_argument("-c", default="2d", help="--features image: 2d (slices, averaged) or 3d_fullres (default 2d)")
        a.add_argument("-p", default="nnUNetPlans", help="--features image: nnU-Net plans whose preprocessed data is "
                                                         "used (default nnUNetPlans)")
        a.add_argument("--budget", choices=list(CLASSIFIER_BUDGETS), default="small",
                       help="--features image: " + "; ".join(
                           f"{k}: {b.epochs} epochs × {b.iterations or 'one pass'} × batch {b.batch_size}"
                           for k, b in CLASSIFIER_BUDGETS.items()) + " (default small)")
        if action == "train":
            a.add_argument("-f", type=_fold, nargs="+", default=[0], help="folds 0-4 or all (default 0)")
            a.add_argument("--c", dest="continue_training", action="store_true",
                           help="--features image: continue from the fold's latest checkpoint")
        if action == "predict":
            a.add_argument("-i", default=None, help="input folder with CASE_XXXX files, as for nnUNetv2_predict")
            a.add_argument("-o", required=True, help="CSV file to write")
            a.add_argument("-f", type=_fold, nargs="+", default=[0, 1, 2, 3, 4],
                           help="folds to average (default 0 1 2 3 4)")
            a.add_argument("-chk", default="checkpoint_final.pth", help="checkpoint (default checkpoint_final.pth)")
            a.add_argument("--segmentations", default=None, metavar="FOLDER",
                           help="--features shape: the label maps to classify (CASE.nii.gz, e.g. nnUNetv2_predict's "
                                "output)")
            a.add_argument("--segment-with", default=None, metavar="MODEL_FOLDER",
                           help="--features shape: a trained nnU-Net model folder that segments -i SCANS first "
                                "(nnUNetv2_predict_from_modelfolder; the label maps go to OUT_segmentations/)")
            a.add_argument("--body-sizes", default=None, metavar="JSON",
                           help="--features shape: {patient: {\"height_cm\": ..., \"weight_kg\": ...}}, needed "
                                "where the classifier was trained with height and weight (ACDC)")
        if action == "evaluate":
            a.add_argument("-o", default=None, help="report folder (default MODEL_FOLDER/cv_report)")
        if action != "evaluate":
            a.add_argument("-device", choices=["cpu", "cuda", "mps"], default=None, help="default: cuda if available")
        a.set_defaults(func=_classify)

    rep = sub.add_parser("reproduce", help="train methods side by side with the same budget and compare their Dice")
    rep.add_argument("-d", type=dataset_id, required=True, help="dataset ID (raw data in nnUNet_raw)")
    rep.add_argument("-c", required=True, help="configuration, e.g. 2d or 3d_fullres")
    rep.add_argument("--methods", default="nnunet,fuseunet",
                     help="comma-separated (default nnunet,fuseunet); METHOD:TRAINER trains a trainer of yours "
                          "(a subclass of METHOD's budget trainer, in a folder of nnUNet_extTrainer) on METHOD's "
                          "plans")
    rep.add_argument("--folds", type=int, nargs="+", default=[0], help="folds to train (default 0)")
    rep.add_argument("--budget", choices=list(BUDGETS), default="small",
                     help="; ".join(f"{k}: {e} epochs × {i} iterations" for k, (e, i, _) in BUDGETS.items()))
    rep.add_argument("--curve", action="store_true",
                     help="also validate the snapshots the budget's trainers keep (budgets "
                          f"{', '.join(SNAPSHOT_EPOCHS)}): validation Dice against iterations, learning_curves.png")
    rep.add_argument("-device", choices=["cpu", "cuda", "mps"], default=None, help="default: cuda if available")
    rep.add_argument("-np", type=int, default=None, help="preprocessing processes (default nnUNet_def_n_proc or 8)")
    rep.add_argument("-o", default=None,
                     help="report folder (default nnUNet_results/DatasetXXX/nnunet_fuse_reproduce_CONFIG_BUDGET)")
    slurm = rep.add_argument_group(
        "where the trainings run", "--launcher slurm submits them as one SLURM job array (one job per method and "
        "fold) and returns; run the same command again to see their state, resubmit failed ones and, once all have "
        "finished, write the report")
    slurm.add_argument("--launcher", choices=["local", "slurm"], default="local",
                       help="local: here, one after another (default); slurm: a SLURM job array")
    slurm.add_argument("--partition", default=None, help="SLURM partition (default: the cluster's)")
    slurm.add_argument("--gpus-per-job", type=int, default=1, help="GPUs per training (default 1; 0: CPU jobs)")
    slurm.add_argument("--cpus-per-job", type=int, default=8,
                       help="CPUs per training (default 8; nnU-Net's augmentation workers = CPUs - 1)")
    slurm.add_argument("--mem", default=None, help="memory per training, e.g. 64G (default: the cluster's)")
    slurm.add_argument("--time", default="24:00:00",
                       help="time limit per job (default 24:00:00); a longer training is requeued and continues")
    slurm.add_argument("--max-parallel", type=int, default=None, help="trainings running at once (default all)")
    slurm.add_argument("--sbatch", type=_sbatch_option, action="append", default=[], metavar="KEY[=VALUE]",
                       help="any other sbatch option, repeatable: --sbatch account=mylab --sbatch qos=high")
    rep.set_defaults(func=_reproduce)

    exp = sub.add_parser("export-fused", help="the fused image of every case (Fuse4Seg), aligned with the input scans")
    exp.add_argument("-i", required=True, help="input folder with CASE_XXXX files, as for nnUNetv2_predict")
    exp.add_argument("-o", required=True, help="output folder (one CASE file per case)")
    exp.add_argument("-d", required=True, help="dataset ID or name")
    exp.add_argument("-c", required=True, help="configuration")
    exp.add_argument("-f", type=int, default=0, help="fold (default 0)")
    exp.add_argument("-tr", default="nnUNetTrainerFuse4Seg", help="trainer (default nnUNetTrainerFuse4Seg)")
    exp.add_argument("-p", default="nnUNetFuse4SegPlans", help="plans (default nnUNetFuse4SegPlans)")
    exp.add_argument("-chk", default="checkpoint_final.pth", help="checkpoint (default checkpoint_final.pth)")
    exp.add_argument("-step_size", type=float, default=0.5,
                     help="tile step as a fraction of the patch size, as nnUNetv2_predict's (default 0.5)")
    exp.add_argument("--labels", default=None, metavar="FOLDER",
                     help="reference label maps of the cases (CASE.nii.gz, e.g. labelsTr): also report each labelled "
                          "region's contrast in every modality, their average and max, and the fused image "
                          "(OUT/contrast.md, contrast.json)")
    exp.add_argument("-device", choices=["cpu", "cuda", "mps"], default=None, help="default: cuda if available")
    exp.set_defaults(func=_export_fused)

    check = sub.add_parser("check-inputs", help="check a folder of scans against a trained model before "
                                                 "nnUNetv2_predict (same arguments)")
    _prediction_arguments(check, output_required=False,
                          output_help="the output folder you will give nnUNetv2_predict (checked too)")
    check.set_defaults(func=_check_inputs)

    pred = sub.add_parser("predict", help="nnUNetv2_predict with its arguments, after check-inputs: new scans that "
                                           "do not fit the model stop with one error line naming the file")
    _prediction_arguments(pred, output_required=True, output_help="output folder")
    pred.add_argument("-device", choices=["cpu", "cuda", "mps"], default=None, help="default: cuda if available")
    pred.epilog = ("Every other nnUNetv2_predict option (-step_size, --disable_tta, --save_probabilities, -npp, -nps, "
                   "...) is passed on unchanged.")
    pred.set_defaults(func=_predict, nnunet_arguments=[])

    demo = sub.add_parser("demo", help="synthetic data -> plan -> train -> predict -> Dice table + PNG")
    demo.add_argument("--workdir", default="nnunet_fuse_demo", help="output folder (default ./nnunet_fuse_demo)")
    demo.add_argument("-device", choices=["cpu", "cuda", "mps"], default=None, help="default: cuda if available")
    demo.add_argument("-tr", default="nnUNetTrainerFuseUNet_demo",
                      help="trainer (default: the demo budget, 10 × 25 iterations)")
    demo.add_argument("--n-train", type=int, default=24)
    demo.add_argument("--n-test", type=int, default=6)
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--overwrite", action="store_true", help="replace an earlier demo run in --workdir")
    demo.set_defaults(func=_demo)
    return parser


def user_errors() -> tuple:
    """The exceptions that mean a mistake in the input (their message names the file and the fix)."""
    from nnunet_fuse.compatibility import IncompatibleVersionError
    from nnunet_fuse.datasets.converters import ConversionError
    from nnunet_fuse.fused_export import ExportError
    from nnunet_fuse.splits import SplitError

    return InputError, PlanningError, IncompatibleVersionError, ConversionError, ExportError, SplitError


def main(argv: Optional[List[str]] = None) -> int:
    """Run a command; a mistake in the input ends with one ``error:`` line and exit 2 (user_errors), for every
    command in this one place."""
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown and args.command != "predict":
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    args.nnunet_arguments = unknown  # predict passes nnUNetv2_predict's other options on
    try:
        return args.func(args)
    except Exception as e:
        if not isinstance(e, user_errors()):
            raise
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
