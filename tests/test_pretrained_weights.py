"""Fine-tuning (nnUNetv2_train -pretrained_weights) with our networks: what transfers, what starts fresh, and the
message for a checkpoint that does not fit; through the real command, from a FuseUNet checkpoint to a dataset with
another number of classes and from nnU-Net's own network into FuseUNet."""
import json

import pytest
import torch

from nnunet_fuse.planning import write_plans_variant
from nnunet_fuse.plans_network import network_from_plans
from nnunet_fuse.training.pretrained import PretrainedWeightsError, transfer_pretrained_weights

from conftest import TINY_ID


def build(workdir, raw, plans_name, num_classes=None, configuration="2d"):
    """The network nnU-Net's trainer builds from the tiny dataset's plans (num_classes: labels incl. background)."""
    folder = next((workdir / "nnUNet_preprocessed").glob(f"Dataset{TINY_ID}_*"))
    dataset_json = json.loads((raw / "dataset.json").read_text())
    if num_classes:
        dataset_json["labels"] = {"background": 0, **{f"c{i}": i for i in range(1, num_classes)}}
    network, _ = network_from_plans(json.loads((folder / f"{plans_name}.json").read_text()), dataset_json,
                                    configuration)
    network.apply(network.initialize)  # as the trainers initialise it (all networks here have initialize)
    return network


def save_checkpoint(network, path):
    torch.save({"network_weights": network.state_dict(), "trainer_name": "x"}, path)
    return path


def test_nnunet_and_resenc_checkpoints_seed_the_fuseunet_encoder(planned_dataset, tmp_path):
    workdir, _, raw = planned_dataset
    for base in ("nnUNetPlans", "nnUNetResEncUNetMPlans"):
        variant = write_plans_variant(workdir / "nnUNet_preprocessed", TINY_ID, "fuseunet", base_plans_name=base,
                                      configurations=["2d"], plans_name=f"pretrained_{base}")["plans_name"]
        source, target = build(workdir, raw, base), build(workdir, raw, variant)
        before = {k: v.clone() for k, v in target.state_dict().items()}
        loaded = transfer_pretrained_weights(target, save_checkpoint(source, tmp_path / f"{base}.pth"))
        for key, value in target.encoder.state_dict().items():
            assert torch.equal(value, source.encoder.state_dict()[key]), key
        assert len(loaded["encoder"]) == len(target.encoder.state_dict()) > 10
        assert loaded["other"] == []  # nnU-Net's decoder has nothing FuseUNet's could take
        assert all(torch.equal(target.state_dict()[k], before[k]) for k in loaded["fresh"])
        assert any(k.startswith("decoder.projections.") for k in loaded["fresh"])


def test_same_method_other_number_of_classes_keeps_all_but_the_class_layers(planned_dataset, tmp_path):
    workdir, _, raw = planned_dataset
    write_plans_variant(workdir / "nnUNet_preprocessed", TINY_ID, "hifuse", configurations=["2d"],
                        plans_name="pretrained_hifuse")
    source = build(workdir, raw, "pretrained_hifuse", num_classes=4)
    target = build(workdir, raw, "pretrained_hifuse", num_classes=2)
    loaded = transfer_pretrained_weights(target, save_checkpoint(source, tmp_path / "hifuse.pth"))
    assert loaded["fresh"] and all(".seg_layers." in k for k in loaded["fresh"])
    source_weights = source.state_dict()
    for key, value in target.state_dict().items():
        assert torch.equal(value, source_weights[key]) == (".seg_layers." not in key), key


def test_checkpoint_that_does_not_fit_names_the_tensor_and_the_fix(planned_dataset, tmp_path):
    workdir, _, raw = planned_dataset
    source = build(workdir, raw, "nnUNetPlans", configuration="3d_fullres")
    target = build(workdir, raw, "pretrained_nnUNetPlans")
    before = {k: v.clone() for k, v in target.state_dict().items()}
    with pytest.raises(PretrainedWeightsError, match=r"encoder tensor 'encoder\.stages\.0\..*' has shape .*"
                                                     r"nnUNetv2_move_plans_between_datasets"):
        transfer_pretrained_weights(target, save_checkpoint(source, tmp_path / "3d.pth"))
    assert all(torch.equal(v, before[k]) for k, v in target.state_dict().items())  # nothing half-loaded
    (tmp_path / "broken.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(RuntimeError, match="broken.pth cannot be read"):
        transfer_pretrained_weights(target, tmp_path / "broken.pth")
