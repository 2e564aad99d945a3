"""HiFuse through nnU-Net: plans variants on real plans, training and prediction through nnU-Net's commands (2d with
nnU-Net's decoder, 3d_fullres with the FuseUNet decoder), refusals; and the 2D classifier learning a small task."""
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from conftest import TINY_ID, assert_beats_baselines, run
from nnunet_fuse.commands import nnunet_command
from nnunet_fuse.hifuse.classifier import HiFuseClassifier
from nnunet_fuse.hifuse.encoder import attention_settings
from nnunet_fuse.planning import load_overlay, make_plans_variant
from nnunet_fuse.plans_network import network_from_plans

BIN = Path(sys.executable).parent
PLANS = Path(__file__).resolve().parents[1] / "benchmarks" / "plans"


def test_attention_settings_choose_affordable_stages_and_dividing_windows():
    assert attention_settings([256, 224], [[1, 1]] + [[2, 2]] * 6, 4096, 8) == {
        "global_stages": [2, 3, 4, 5, 6], "window_size": [8, 7]}   # maps 64×56 ... 4×3
    anisotropic = [[1, 1, 1], [1, 2, 2], [1, 2, 2], [2, 2, 2], [1, 2, 2], [1, 2, 2]]
    assert attention_settings([10, 256, 224], anisotropic, 4096, 4) == {
        "global_stages": [4, 5], "window_size": [5, 4, 7]}         # maps 5×16×14, 5×8×7: one window along z


@pytest.mark.parametrize("dataset,configuration,method,network", [
    ("Dataset027_ACDC", "2d", "hifuse", "HiFuseUNet"),
    ("Dataset137_BraTSlike", "3d_fullres", "hifuse-fuseunet", "HiFuseFuseUNet")])
def test_plans_variants_of_real_plans_build_the_network(dataset, configuration, method, network):
    base = json.loads((PLANS / dataset / "nnUNetPlans.json").read_text())
    dataset_json = json.loads((PLANS / dataset / "dataset.json").read_text())
    plans = make_plans_variant(base, load_overlay(method), "variant", [configuration])
    kwargs = plans["configurations"][configuration]["architecture"]["arch_kwargs"]
    assert plans["configurations"][configuration]["architecture"]["network_class_name"].endswith(network)
    assert kwargs["global_stages"] and max(kwargs["global_stages"]) == kwargs["n_stages"] - 1
    built, _ = network_from_plans(plans, dataset_json, configuration)
    assert type(built).__name__ == network and built.encoder.global_stages == kwargs["global_stages"]


def test_plan_train_predict_2d_and_3d_through_nnunet(planned_dataset):
    workdir, env, raw = planned_dataset
    for method, configuration, plans in (("hifuse", "2d", "nnUNetHiFusePlans"),
                                         ("hifuse-fuseunet", "3d_fullres", "nnUNetHiFuseFuseUNetPlans")):
        planned = run([str(BIN / "nnunet-fuse"), "plan", "-d", str(TINY_ID), "--method", method, "-c",
                       configuration], env)
        assert f"{configuration}: global attention only at stages" in planned.stdout
        run([nnunet_command("nnUNetv2_train"), str(TINY_ID), configuration, "0", "-tr", "nnUNetTrainerHiFuse_smoke",
             "-p", plans, "-device", "cpu"], env)
        out = workdir / f"hifuse_predictions_{configuration}"
        run([nnunet_command("nnUNetv2_predict"), "-i", str(raw / "imagesTs"), "-o", str(out), "-d", str(TINY_ID),
             "-c", configuration, "-f", "0", "-tr", "nnUNetTrainerHiFuse_smoke", "-p", plans, "-device", "cpu",
             "--disable_tta", "-npp", "1", "-nps", "1"], env)
        for label_file in sorted((raw / "labelsTs").glob("*.nii.gz")):
            prediction = sitk.ReadImage(str(out / label_file.name))
            assert prediction.GetSize() == sitk.ReadImage(str(label_file)).GetSize()
            assert set(np.unique(sitk.GetArrayFromImage(prediction))) <= {0, 1, 2, 3}
        # 8 iterations (nnU-Net does not seed its training): 2d has ended at 2.8x, 3d at 2.6x the Dice of a labelling at
        # the label frequencies in five runs, about 1.5x what a uniformly random labelling scores (the best baseline)
        assert_beats_baselines(out, raw / "labelsTs", factor=1.2)
    refused = run([nnunet_command("nnUNetv2_train"), str(TINY_ID), "2d", "0", "-tr", "nnUNetTrainerHiFuse_smoke",
                   "-p", "nnUNetPlans", "-device", "cpu"], env, check=False)
    assert refused.returncode != 0 and "needs HiFuse plans" in refused.stderr and "--method hifuse" in refused.stderr


def bars(n: int, generator: torch.Generator):
    """Images of one bright bar, horizontal (class 0) or vertical (class 1), at a random place, in noise."""
    labels = torch.randint(0, 2, (n,), generator=generator)
    images = 0.3 * torch.randn(n, 1, 32, 32, generator=generator)
    positions = torch.randint(4, 28, (n,), generator=generator)
    for image, label, position in zip(images, labels, positions):
        if label == 0:
            image[0, position - 1:position + 2, 4:28] += 1
        else:
            image[0, 4:28, position - 1:position + 2] += 1
    return images, labels


def test_classifier_learns_bar_orientation():
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    model = HiFuseClassifier(1, 2, features_per_stage=(8, 16, 32), strides=(2, 2, 2), window_size=4,
                             head_channels=8)
    optimiser = torch.optim.AdamW(model.parameters(), 3e-3)
    for _ in range(60):
        images, labels = bars(16, generator)
        loss = torch.nn.functional.cross_entropy(model(images), labels)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    images, labels = bars(128, generator)
    with torch.no_grad():
        accuracy = (model(images).argmax(1) == labels).float().mean().item()
    assert accuracy > 0.9, f"accuracy {accuracy:.2f} on held-out images (chance 0.5)"
    with pytest.raises(ValueError, match="is 2D"):
        model(torch.zeros(1, 1, 8, 8, 8))
