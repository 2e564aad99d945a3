"""Plans variants written from real nnU-Net plans (nnUNetPlans and ResEnc M) and their error cases."""
import json
from pathlib import Path

import pytest
import torch
from nnunetv2.utilities.get_network_from_plans import get_network_from_plans
from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

from nnunet_fuse import __version__
from nnunet_fuse.architectures import FuseResEncUNet, FuseUNet
from nnunet_fuse.planning import (
    PlanningError,
    available_methods,
    make_plans_variant,
    load_overlay,
    variant_plans_name,
    write_plans_variant,
)

from conftest import TINY_ID


def preprocessed_folder(workdir):
    return next((workdir / "nnUNet_preprocessed").glob(f"Dataset{TINY_ID}_*"))


def test_variant_names():
    assert variant_plans_name("nnUNetPlans", "FuseUNet") == "nnUNetFuseUNetPlans"
    assert variant_plans_name("nnUNetResEncUNetMPlans", "FuseUNet") == "nnUNetFuseUNetResEncUNetMPlans"
    assert "fuseunet" in available_methods()


@pytest.mark.parametrize("base,network_class", [("nnUNetPlans", FuseUNet), ("nnUNetResEncUNetMPlans", FuseResEncUNet)])
def test_variant_from_real_plans_builds_the_network_nnunet_would(planned_dataset, tmp_path, base, network_class):
    workdir, _, raw = planned_dataset
    folder = preprocessed_folder(workdir)
    base_plans = json.loads((folder / f"{base}.json").read_text())
    result = write_plans_variant(workdir / "nnUNet_preprocessed", TINY_ID, "fuseunet", base_plans_name=base,
                                 plans_name=f"test_{base}_variant")
    assert result["status"] == "written"
    plans = json.loads(result["path"].read_text())
    assert plans["plans_name"] == result["path"].stem == f"test_{base}_variant"
    assert json.loads((folder / f"{base}.json").read_text()) == base_plans  # base untouched
    assert set(plans["configurations"]) == set(base_plans["configurations"])
    for name, cfg in plans["configurations"].items():
        assert cfg.get("data_identifier") == base_plans["configurations"][name].get("data_identifier")
    dataset_json = json.loads((raw / "dataset.json").read_text())
    pm = PlansManager(plans)
    for name in ("2d", "3d_fullres"):
        cm = pm.get_configuration(name)
        net = get_network_from_plans(cm.network_arch_class_name, cm.network_arch_init_kwargs,
                                     cm.network_arch_init_kwargs_req_import, 1,
                                     pm.get_label_manager(dataset_json).num_segmentation_heads,
                                     deep_supervision=False)
        assert isinstance(net, network_class)
        out = net(torch.randn(1, 1, *cm.patch_size))
        assert out.shape == (1, 4, *cm.patch_size)


def test_configuration_subset_and_rewrite_rules(planned_dataset, monkeypatch, capsys):
    workdir, _, _ = planned_dataset
    result = write_plans_variant(workdir / "nnUNet_preprocessed", f"Dataset{TINY_ID}_Tiny", "fuseunet",
                                 configurations=["2d"], plans_name="test_subset")
    plans = json.loads(result["path"].read_text())
    assert list(plans["configurations"]) == ["2d"]
    kwargs = plans["configurations"]["2d"]["architecture"]["arch_kwargs"]
    assert "n_conv_per_stage_decoder" not in kwargs
    assert kwargs["max_order"] == 4 and kwargs["corrector"] is True and kwargs["state_channels"] is None
    assert plans["nnunet_fuse"]["method"] == "fuseunet"
    assert plans["nnunet_fuse"]["version"] == __version__
    # same call again: nothing changes; another configuration is added beside the first
    again = write_plans_variant(workdir / "nnUNet_preprocessed", TINY_ID, "fuseunet", configurations=["2d"],
                                plans_name="test_subset")
    assert again["status"] == "unchanged"
    lines = []
    added = write_plans_variant(workdir / "nnUNet_preprocessed", TINY_ID, "fuseunet", configurations=["3d_fullres"],
                                plans_name="test_subset", log=lines.append)
    both = json.loads(added["path"].read_text())
    assert list(both["configurations"]) == ["2d", "3d_fullres"] == added["configurations"]
    assert both["configurations"]["2d"] == plans["configurations"]["2d"]
    assert set(both["nnunet_fuse"]["memory_budget"]) == {"2d", "3d_fullres"}
    assert lines == ["added ['3d_fullres'] to test_subset.json; kept ['2d']"]
    # a configuration the file holds otherwise (written with other settings), or another method: --overwrite only
    both["configurations"]["2d"]["batch_size"] += 1
    added["path"].write_text(json.dumps(both))
    with pytest.raises(PlanningError, match=r"already holds configuration\(s\) \['2d'\].*--overwrite"):
        write_plans_variant(workdir / "nnUNet_preprocessed", TINY_ID, "fuseunet", configurations=["2d"],
                            plans_name="test_subset")
    with pytest.raises(PlanningError, match="another method.*--overwrite"):
        write_plans_variant(workdir / "nnUNet_preprocessed", TINY_ID, "hifuse", configurations=["2d"],
                            plans_name="test_subset")
    assert json.loads(added["path"].read_text()) == both
    replaced = write_plans_variant(workdir / "nnUNet_preprocessed", TINY_ID, "hifuse",
                                   configurations=["3d_fullres"], plans_name="test_subset", overwrite=True)
    assert list(json.loads(replaced["path"].read_text())["configurations"]) == ["3d_fullres"]
    # the command says what -c does (it writes or adds configurations; others are kept), and why nothing was written
    from nnunet_fuse import cli

    monkeypatch.setenv("nnUNet_preprocessed", str(workdir / "nnUNet_preprocessed"))
    capsys.readouterr()
    assert cli.main(["plan", "-d", str(TINY_ID), "--method", "hifuse", "-c", "3d_fullres", "--plans-name",
                     "test_subset", "--overwrite"]) == 0
    said = " ".join(capsys.readouterr().out.split())
    assert "unchanged: " in said and "(it already holds these configurations as this version plans them: nothing to " \
                                     "replace)" in said, said
    with pytest.raises(SystemExit):
        cli.main(["plan", "-h"])
    usage = " ".join(capsys.readouterr().out.split())
    assert "configurations to write" in usage and "an existing variant keeps its other configurations" in usage


def test_state_channels_setting_reaches_the_network_and_its_memory_budget(planned_dataset):
    """`nnunet-fuse plan --state-channels 32`: the plans carry it, the network nnU-Net builds from them has a 32-channel
    state, the memory budget counts it, and a variant trained with another width is not rewritten silently."""
    workdir, _, raw = planned_dataset
    pre = workdir / "nnUNet_preprocessed"
    dataset_json = json.loads((raw / "dataset.json").read_text())
    budgets, widths = {}, {}
    for width in (None, 32):
        name = f"test_state_{width}"
        result = write_plans_variant(pre, TINY_ID, "fuseunet", configurations=["3d_fullres"], plans_name=name,
                                     arch_settings={} if width is None else {"state_channels": width})
        pm = PlansManager(json.loads(result["path"].read_text()))
        cm = pm.get_configuration("3d_fullres")
        assert cm.network_arch_init_kwargs["state_channels"] == width
        net = get_network_from_plans(cm.network_arch_class_name, cm.network_arch_init_kwargs,
                                     cm.network_arch_init_kwargs_req_import, 1,
                                     pm.get_label_manager(dataset_json).num_segmentation_heads, deep_supervision=False)
        widths[width] = net.decoder.head.weight.shape[1]
        budgets[width] = json.loads(result["path"].read_text())["nnunet_fuse"]["memory_budget"]["3d_fullres"]
    assert widths == {None: 8, 32: 32}  # the paper's 2K for K = 4 outputs, and the setting
    assert budgets[32]["estimate_per_sample"] > budgets[None]["estimate_per_sample"]  # the wider state is counted
    # here the 32-channel state keeps more than nnU-Net's network: the patch shrinks, and the shrunk plans (made
    # again at each trial patch) keep the setting
    assert budgets[None]["patch_size"] == budgets[None]["base_patch_size"] != budgets[32]["patch_size"]
    with pytest.raises(PlanningError, match="different"):
        write_plans_variant(pre, TINY_ID, "fuseunet", configurations=["3d_fullres"], plans_name="test_state_32",
                            arch_settings={"state_channels": 16})
    assert json.loads((preprocessed_folder(workdir) / "test_state_32.json").read_text())["configurations"][
        "3d_fullres"]["architecture"]["arch_kwargs"]["state_channels"] == 32


def test_inheriting_and_cascade_configurations_keep_their_parents():
    base = {"plans_name": "nnUNetPlans", "configurations": {
        "3d_fullres": {"data_identifier": "a", "architecture": {
            "network_class_name": "dynamic_network_architectures.architectures.unet.PlainConvUNet",
            "arch_kwargs": {"n_conv_per_stage_decoder": [2]}, "_kw_requires_import": []}},
        "3d_lowres": {"inherits_from": "3d_fullres", "data_identifier": "b", "next_stage": "3d_cascade_fullres"},
        "3d_cascade_fullres": {"inherits_from": "3d_fullres", "previous_stage": "3d_lowres"},
        "2d": {"data_identifier": "c", "architecture": {
            "network_class_name": "dynamic_network_architectures.architectures.unet.PlainConvUNet",
            "arch_kwargs": {}, "_kw_requires_import": []}}}}
    plans = make_plans_variant(base, load_overlay("fuseunet"), "X", ["3d_cascade_fullres"])
    assert set(plans["configurations"]) == {"3d_cascade_fullres", "3d_fullres", "3d_lowres"}
    assert plans["configurations"]["3d_fullres"]["architecture"]["network_class_name"].endswith("FuseUNet")
    assert base["configurations"]["3d_fullres"]["architecture"]["arch_kwargs"] == {"n_conv_per_stage_decoder": [2]}


def test_errors_are_clear_and_write_nothing(planned_dataset, tmp_path):
    workdir, _, _ = planned_dataset
    pre = workdir / "nnUNet_preprocessed"
    before = sorted(p.name for p in preprocessed_folder(workdir).iterdir())
    with pytest.raises(PlanningError, match="unknown method 'nope'; available: .*fuseunet"):
        write_plans_variant(pre, TINY_ID, "nope")
    with pytest.raises(PlanningError, match="has not been planned yet.*nnUNetv2_plan_and_preprocess -d 4"):
        write_plans_variant(pre, 4, "fuseunet")
    with pytest.raises(PlanningError, match="no plans 'nnUNetResEncUNetLPlans'"):
        write_plans_variant(pre, TINY_ID, "fuseunet", base_plans_name="nnUNetResEncUNetLPlans")
    with pytest.raises(PlanningError, match=r"configuration\(s\) \['3d_lowres'\] do not exist"):
        write_plans_variant(pre, TINY_ID, "fuseunet", configurations=["3d_lowres"])
    with pytest.raises(PlanningError, match="not written by nnunet_fuse; refusing to overwrite"):
        write_plans_variant(pre, TINY_ID, "fuseunet", plans_name="nnUNetResEncUNetMPlans", overwrite=True)
    with pytest.raises(PlanningError, match="must differ"):
        write_plans_variant(pre, TINY_ID, "fuseunet", plans_name="nnUNetPlans")
    assert sorted(p.name for p in preprocessed_folder(workdir).iterdir()) == before


def test_plugin_versions_decide_what_loads(tmp_path):
    from nnunet_fuse.compatibility import IncompatibleVersionError, check_compatible
    from nnunet_fuse.training.checkpoints import read_checkpoint

    def ours(version):
        return {"nnunet_fuse": {"method": "fuseunet", "version": version}}

    check_compatible(ours(__version__), "x")
    check_compatible({"nnunet_fuse": {"method": "fuseunet"}}, "x")  # 0.1.x recorded no version; it is read as 0.1.0
    check_compatible({"plans_name": "nnUNetPlans"}, "x")  # nnU-Net's own plans
    with pytest.raises(IncompatibleVersionError, match=r"plans P was written by nnunet_fuse 9\.0\.0, newer .* "
                                                        r"pip install 'nnunet_fuse>=9\.0'"):
        check_compatible(ours("9.0.0"), "plans P")
    with pytest.raises(IncompatibleVersionError, match=r"0\.0\.3; the installed .* nnunet_fuse==0\.0\.3"):
        check_compatible(ours("0.0.3"), "plans P")
    checkpoint = tmp_path / "checkpoint_latest.pth"
    torch.save({"network_weights": {}, "nnunet_fuse_version": "0.99.0"}, checkpoint)
    with pytest.raises(IncompatibleVersionError, match=f"checkpoint {checkpoint} was written by nnunet_fuse 0.99.0"):
        read_checkpoint(checkpoint)


BRATS_PLANS = Path(__file__).resolve().parents[1] / "benchmarks" / "plans" / "Dataset137_BraTSlike"


def plans_of_every_method(version: str) -> dict:
    """{method: its plans variant of real 4-channel plans, recorded as written by ``version``}."""
    base = json.loads((BRATS_PLANS / "nnUNetPlans.json").read_text())
    variants = {}
    for method in available_methods():
        overlay = load_overlay(method)
        plans = make_plans_variant(base, overlay, variant_plans_name("nnUNetPlans", overlay["plans_infix"]),
                                   ["3d_fullres"])
        plans["nnunet_fuse"]["version"] = version
        variants[method] = plans
    return variants


def test_fuse4seg_files_from_before_its_current_fusion_network_are_refused_by_every_reader(tmp_path, monkeypatch):
    """Fuse4Seg's fusion network changed in 0.3 (tile-independent) and 0.4 (it corrects the average), both times
    with the same parameter names, so loading would succeed and fuse differently. The check is keyed on the network
    class a file holds, so every method built on Fuse4SegNet (fuse4seg, fuse4seg-fuseunet) is refused at 0.3 and
    the others load; each reader of plans and checkpoints refuses: the trainer (plans, --c checkpoint), the network
    builder (profile, parameter counts), -pretrained_weights, check-inputs and `nnunet-fuse versions`."""
    from nnunet_fuse.compatibility import IncompatibleVersionError, check_compatible, model_versions
    from nnunet_fuse.input_check import InputError, check_prediction_inputs
    from nnunet_fuse.plans_network import network_from_plans
    from nnunet_fuse.training.checkpoints import read_checkpoint
    from nnunet_fuse.training.fuse4seg import nnUNetTrainerFuse4Seg
    from nnunet_fuse.training.pretrained import transfer_pretrained_weights

    refused = r"written by nnunet_fuse 0\.3\.0 for {}; Fuse4Seg's fusion network changed in 0\.4 .* " \
              r"nnunet_fuse==0\.3\.0 .*nnunet-fuse plan -d DATASET --method {} --overwrite"
    old = plans_of_every_method("0.3.0")
    fuse4seg_methods = sorted(m for m, plans in old.items()
                              if plans["configurations"]["3d_fullres"]["architecture"]["network_class_name"]
                              == "nnunet_fuse.architectures.Fuse4SegNet")
    assert fuse4seg_methods == ["fuse4seg", "fuse4seg-fuseunet"]
    for method, plans in old.items():
        checkpoint = tmp_path / f"{method}.pth"
        torch.save({"network_weights": {}, "nnunet_fuse_version": "0.3.0",
                    "init_args": {"plans": plans, "configuration": "3d_fullres"}}, checkpoint)
        if method in fuse4seg_methods:
            match = refused.format(method, method)
            with pytest.raises(IncompatibleVersionError, match=match):
                check_compatible(plans, "plans P")
            with pytest.raises(IncompatibleVersionError, match=match):
                read_checkpoint(checkpoint)
            with pytest.raises(IncompatibleVersionError, match=match):
                transfer_pretrained_weights(torch.nn.Linear(1, 1), checkpoint)
            with pytest.raises(IncompatibleVersionError, match=match):
                network_from_plans(plans, json.loads((BRATS_PLANS / "dataset.json").read_text()), "3d_fullres")
        else:
            check_compatible(plans, "plans P")
            read_checkpoint(checkpoint)
    current = plans_of_every_method(__version__)
    for method in fuse4seg_methods:
        check_compatible(current[method], "plans P")
    # the trainer refuses the plans before creating anything
    monkeypatch.setenv("nnUNet_results", str(tmp_path / "results"))
    dataset_json = json.loads((BRATS_PLANS / "dataset.json").read_text())
    with pytest.raises(IncompatibleVersionError, match=refused.format("fuse4seg-fuseunet", "fuse4seg-fuseunet")):
        nnUNetTrainerFuse4Seg(old["fuse4seg-fuseunet"], "3d_fullres", 0, dataset_json, device=torch.device("cpu"))
    assert not (tmp_path / "results").exists()
    # a trained model folder: check-inputs and `nnunet-fuse versions`
    model = tmp_path / "nnUNetTrainerFuse4Seg__nnUNetFuse4SegFuseUNetPlans__3d_fullres"
    (model / "fold_0").mkdir(parents=True)
    (model / "plans.json").write_text(json.dumps(old["fuse4seg-fuseunet"]))
    (model / "dataset.json").write_text(json.dumps(dataset_json))
    (tmp_path / "fuse4seg-fuseunet.pth").rename(model / "fold_0" / "checkpoint_final.pth")
    with pytest.raises(InputError, match=refused.format("fuse4seg-fuseunet", "fuse4seg-fuseunet")):
        check_prediction_inputs(model, tmp_path, "3d_fullres", [0])
    (model / "plans.json").write_text(json.dumps(current["fuse4seg-fuseunet"]))  # the checkpoint alone is refused
    with pytest.raises(InputError, match=refused.format("fuse4seg-fuseunet", "fuse4seg-fuseunet")):
        check_prediction_inputs(model, tmp_path, "3d_fullres", [0])
    verdicts = model_versions(model)
    assert "usable by this version" in verdicts[0][1]
    assert "NOT usable" in verdicts[1][1] and "fusion network changed in 0.4" in verdicts[1][1], verdicts
