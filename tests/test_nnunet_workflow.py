"""nnU-Net's commands after training, with our trainers: fine-tuning (-pretrained_weights), sharing a model (export
to zip → install on an empty nnUNet_results → predict), choosing (find-best-configuration) and ensembling."""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from nnunet_fuse import __version__
from nnunet_fuse.commands import nnunet_command

from conftest import TINY_ID, run

OTHER_ID = 992  # the tiny dataset's images with one foreground class instead of three
NNUNET = ("nnUNetTrainer_check", "nnUNetPlans")
FUSEUNET = ("nnUNetTrainerFuseUNet_check", "nnUNetFuseUNetPlans")


def fold_folder(workdir, dataset_id, trainer, plans, configuration="2d", fold=0):
    return next((workdir / "nnUNet_results").glob(f"Dataset{dataset_id:03d}_*")) / \
        f"{trainer}__{plans}__{configuration}" / f"fold_{fold}"


def train(env, dataset_id, trainer, plans, *extra):
    return run(f'eval "$(nnunet-fuse env)" && nnUNetv2_train {dataset_id} 2d 0 -tr {trainer} -p {plans} '
               f'-device cpu --npz {" ".join(extra)}', env)


def encoder_distance(checkpoint_a, checkpoint_b):
    """Relative L2 distance between the encoder weights ('encoder.*') of two checkpoints."""
    a, b = (torch.load(c, map_location="cpu", weights_only=False)["network_weights"] for c in (checkpoint_a,
                                                                                              checkpoint_b))
    keys = [k for k in a if k.startswith("encoder.") and a[k].is_floating_point() and a[k].numel() > 1]
    difference = torch.sqrt(sum(((a[k] - b[k]) ** 2).sum() for k in keys))
    return float(difference / torch.sqrt(sum((b[k] ** 2).sum() for k in keys)))


def make_one_class_dataset(workdir, raw):
    """Dataset992: Dataset991's training images, labels 1-3 merged into one foreground class."""
    target = workdir / "nnUNet_raw" / f"Dataset{OTHER_ID}_OneClass"
    shutil.copytree(raw / "imagesTr", target / "imagesTr")
    (target / "labelsTr").mkdir()
    for label_file in (raw / "labelsTr").glob("*.nii.gz"):
        image = sitk.ReadImage(str(label_file))
        merged = sitk.GetImageFromArray((sitk.GetArrayFromImage(image) > 0).astype(np.uint8))
        merged.CopyInformation(image)
        sitk.WriteImage(merged, str(target / "labelsTr" / label_file.name))
    dataset_json = json.loads((raw / "dataset.json").read_text())
    dataset_json["labels"] = {"background": 0, "object": 1}
    (target / "dataset.json").write_text(json.dumps(dataset_json))
    return target


@pytest.fixture(scope="module")
def trained(planned_dataset):
    """nnU-Net's network and FuseUNet, each trained 2 iterations on fold 0 (2d, --npz); FuseUNet fine-tuned from
    nnU-Net's checkpoint. Returns (workdir, env, raw, FuseUNet training output)."""
    workdir, env, raw = planned_dataset
    train(env, TINY_ID, *NNUNET)
    run(f"nnunet-fuse plan -d {TINY_ID} --method fuseunet -c 2d", env)
    source = fold_folder(workdir, TINY_ID, *NNUNET) / "checkpoint_final.pth"
    output = train(env, TINY_ID, *FUSEUNET, f"-pretrained_weights {source}").stdout
    return workdir, env, raw, output


def test_nnunet_checkpoint_seeds_the_fuseunet_encoder(trained):
    workdir, _, _, output = trained
    assert "pretrained weights from" in output and "encoder: " in output
    source = fold_folder(workdir, TINY_ID, *NNUNET) / "checkpoint_final.pth"
    tuned = fold_folder(workdir, TINY_ID, *FUSEUNET) / "checkpoint_final.pth"
    # two SGD steps move the loaded encoder by a fraction of a percent; an encoder initialised anew is ~1.4 away
    assert encoder_distance(tuned, source) < 0.05
    assert torch.load(tuned, map_location="cpu", weights_only=False)["nnunet_fuse_version"] == __version__


def test_fine_tune_to_a_dataset_with_another_number_of_classes(trained):
    workdir, env, raw, _ = trained
    make_one_class_dataset(workdir, raw)  # nnU-Net's fine-tuning recipe: fingerprint, the source's plans, preprocess
    run([nnunet_command("nnUNetv2_extract_fingerprint"), "-d", str(OTHER_ID), "-np", "1"], env)
    run([nnunet_command("nnUNetv2_move_plans_between_datasets"), "-s", str(TINY_ID), "-t", str(OTHER_ID),
         "-sp", "nnUNetPlans", "-tp", "nnUNetPlans"], env)
    target = next((workdir / "nnUNet_preprocessed").glob(f"Dataset{OTHER_ID}_*"))
    shutil.copy(workdir / "nnUNet_raw" / target.name / "dataset.json", target)  # nnUNetv2_preprocess reads it there
    run([nnunet_command("nnUNetv2_preprocess"), "-d", str(OTHER_ID), "-plans_name", "nnUNetPlans", "-c", "2d",
         "-np", "1"], env)
    run(f"nnunet-fuse plan -d {OTHER_ID} --method fuseunet -c 2d", env)
    source = fold_folder(workdir, TINY_ID, *FUSEUNET) / "checkpoint_final.pth"
    output = train(env, OTHER_ID, *FUSEUNET, f"-pretrained_weights {source}").stdout
    assert "pretrained weights from" in output
    tuned = fold_folder(workdir, OTHER_ID, *FUSEUNET) / "checkpoint_final.pth"
    assert encoder_distance(tuned, source) < 0.05
    head = torch.load(tuned, map_location="cpu", weights_only=False)["network_weights"]["decoder.head.weight"]
    assert head.shape[0] == 2  # background + one class: the class layer started fresh

    # a checkpoint that does not fit: the 2d one into the 3d network; the message names the tensor and the fix
    added = run(f"nnunet-fuse plan -d {TINY_ID} --method fuseunet -c 3d_fullres", env).stdout
    assert "2d" in added and "3d_fullres" in added  # added to the variant, 2d kept
    result = run(f'eval "$(nnunet-fuse env)" && nnUNetv2_train {TINY_ID} 3d_fullres 0 -tr {FUSEUNET[0]} '
                 f'-p {FUSEUNET[1]} -device cpu -pretrained_weights {source}', env, check=False)
    assert result.returncode != 0
    assert "does not fit this network: encoder tensor" in result.stderr, result.stderr[-2000:]
    assert not (fold_folder(workdir, TINY_ID, *FUSEUNET, configuration="3d_fullres") / "checkpoint_final.pth").exists()


def test_export_install_predict_on_another_machine(trained, tmp_path):
    workdir, env, raw, _ = trained
    archive = tmp_path / "model.zip"
    run([nnunet_command("nnUNetv2_export_model_to_zip"), "-d", str(TINY_ID), "-o", str(archive), "-c", "2d",
         "-tr", FUSEUNET[0], "-p", FUSEUNET[1], "-f", "0"], env)
    other = dict(env)  # the receiving machine: empty nnU-Net folders, the plugin installed, no nnUNet_extTrainer
    for variable in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        other[variable] = str(tmp_path / "other" / variable)
        Path(other[variable]).mkdir(parents=True)
    other.pop("nnUNet_extTrainer", None)
    run([nnunet_command("nnUNetv2_install_pretrained_model_from_zip"), str(archive)], other)
    model = next(Path(other["nnUNet_results"]).glob(f"Dataset{TINY_ID}_*")) / f"{FUSEUNET[0]}__{FUSEUNET[1]}__2d"
    versions = run(f"nnunet-fuse version {model}", other).stdout
    assert f"nnunet_fuse {__version__}, method fuseunet: usable by this version" in versions
    assert f"checkpoint_final.pth: nnunet_fuse {__version__}: usable" in versions
    predict = (f'eval "$(nnunet-fuse env)" && nnUNetv2_predict -i {raw / "imagesTs"} -o {tmp_path / "out"} '
               f'-d {TINY_ID} -c 2d -f 0 -tr {FUSEUNET[0]} -p {FUSEUNET[1]} -device cpu -npp 1 -nps 1')
    run(predict, other)
    for image_file in sorted((raw / "imagesTs").glob("*_0000.nii.gz")):
        prediction = tmp_path / "out" / image_file.name.replace("_0000", "")
        assert sitk.ReadImage(str(prediction)).GetSize() == sitk.ReadImage(str(image_file)).GetSize()

    # a model written by a newer plugin version: predict refuses with what to install, writes nothing
    plans_file = model / "plans.json"
    plans = json.loads(plans_file.read_text())
    plans["nnunet_fuse"]["version"] = "9.1.0"
    plans_file.write_text(json.dumps(plans))
    result = run(predict.replace(str(tmp_path / "out"), str(tmp_path / "out_newer")), other, check=False)
    assert result.returncode != 0
    assert "written by nnunet_fuse 9.1.0, newer than the installed" in result.stdout + result.stderr
    assert not any((tmp_path / "out_newer").glob("*.nii.gz"))
    assert "NOT usable" in run(f"nnunet-fuse version {model}", other).stdout


def test_find_best_configuration_and_ensemble_over_ours_and_nnunets(trained, tmp_path):
    workdir, env, raw, _ = trained
    models = [f"{NNUNET[0]}__{NNUNET[1]}__2d", f"{FUSEUNET[0]}__{FUSEUNET[1]}__2d"]
    # nnU-Net's own command takes every trainer × plans combination and stops at the untrained ones
    plain = run([nnunet_command("nnUNetv2_find_best_configuration"), str(TINY_ID), "-c", "2d", "-tr", NNUNET[0],
                 FUSEUNET[0], "-p", NNUNET[1], FUSEUNET[1], "-f", "0", "-np", "1"], env, check=False)
    assert plain.returncode != 0 and "does not have an output folder" in plain.stderr
    # ... and runs where every combination was trained: here our trainer and plans alone
    ours = run([nnunet_command("nnUNetv2_find_best_configuration"), str(TINY_ID), "-c", "2d", "-tr", FUSEUNET[0],
                "-p", FUSEUNET[1], "-f", "0", "-np", "1", "--disable_ensembling"], env)
    assert f"*Best*: {models[1]}" in ours.stdout
    result = run(f"nnunet-fuse find-best-configuration -d {TINY_ID} -m {' '.join(models)} -f 0 -np 1", env)
    assert f"ensemble___{models[0]}___{models[1]}___0" in result.stdout and "*Best*" in result.stdout
    information = json.loads((next((workdir / "nnUNet_results").glob(f"Dataset{TINY_ID}_*")) /
                              "inference_information.json").read_text())
    assert set(information["all_results"]) == {*models, f"ensemble___{models[0]}___{models[1]}___0"}
    missing = run(f"nnunet-fuse find-best-configuration -d {TINY_ID} -m {models[0]} "
                  f"nnUNetTrainerHiFuse__nnUNetHiFusePlans__2d -f 0", env, check=False)
    assert missing.returncode == 2 and "has no validation results" in missing.stderr
    assert "nnUNetv2_train 991 2d 0 -tr nnUNetTrainerHiFuse -p nnUNetHiFusePlans --npz" in missing.stderr

    outputs = []
    for trainer, plans in (NNUNET, FUSEUNET):
        outputs.append(tmp_path / trainer)
        run(f'eval "$(nnunet-fuse env)" && nnUNetv2_predict -i {raw / "imagesTs"} -o {outputs[-1]} -d {TINY_ID} '
            f'-c 2d -f 0 -tr {trainer} -p {plans} -device cpu -npp 1 -nps 1 --save_probabilities', env)
    run([nnunet_command("nnUNetv2_ensemble"), "-i", *map(str, outputs), "-o", str(tmp_path / "ensemble"), "-np", "1"],
        env)
    cases = sorted(p.name for p in (tmp_path / "ensemble").glob("*.nii.gz"))
    assert cases == sorted(p.name.replace("_0000", "") for p in (raw / "imagesTs").glob("*_0000.nii.gz"))
    probabilities = [np.load(o / cases[0].replace(".nii.gz", ".npz"))["probabilities"] for o in outputs]
    ensembled = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "ensemble" / cases[0])))
    assert np.array_equal(ensembled, np.argmax((probabilities[0] + probabilities[1]) / 2, 0))  # the mean's argmax
