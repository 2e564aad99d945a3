"""``nnunet-fuse profile``: networks of real plans measured side by side in one process.

For each base plans (nnU-Net's own): nnU-Net's network, the variant of the same plans for each method asked for
(default FuseUNet; also e.g. hifuse, hifuse-fuseunet), and the encoder alone with a trivial head (the floor no decoder
can beat). Networks are built as their trainers build them: nnU-Net's with deep supervision (nnUNetTrainer), FuseUNet
without (nnUNetTrainerFuseUNet), HiFuse with (nnUNetTrainerHiFuse).

What is measured:
- parameters (total, encoder, decoder = total − encoder);
- forward FLOPs of one batch: torch.utils.flop_counter (convolutions and matrix products only, elementwise ops,
  norms, interpolation are not counted);
- training step: forward + nnU-Net's loss (Dice+CE, or Dice+BCE for regions; deep supervision where enabled) +
  backward + SGD step, median seconds of ``repeats`` after ``warmup`` steps; on CUDA under autocast (fp16) with a
  GradScaler as nnU-Net;
- peak memory of a training step: the tensors held before it (weights, optimiser state, batch) plus the peak of
  what the step allocates on top (CUDA: the caching allocator's max_memory_allocated; CPU: the peak of live bytes
  from the allocation events of torch's profiler, exact for tensors);
- sliding-window inference of one random case of the plan's median shape through nnU-Net's nnUNetPredictor
  (step 0.5, Gaussian weighting, no mirroring), after one patch predicted as warm-up, the networks round-robin, median
  of ``inference_repeats``.
With ``compile`` the training step runs through ``torch.compile`` (as nnU-Net trains on CUDA with nnUNet_compile);
FLOPs and inference are measured on the eager network.
"""
from __future__ import annotations

import copy
import json
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
import torch
from torch import nn

from nnunet_fuse.architectures import parameter_counts
from nnunet_fuse.planning import MARKER_KEY, load_overlay, make_plans_variant
from nnunet_fuse.plans_network import network_from_plans, trainer_deep_supervision


@dataclass
class ProfileRow:
    name: str
    plans: str
    kind: str  # "network" or "encoder alone"
    params_total: int
    params_encoder: int
    params_decoder: int
    forward_gflops: float
    step_seconds: float
    peak_memory_mb: float
    inference_seconds: Optional[float] = None
    ratios: Dict[str, float] = field(default_factory=dict)


class EncoderAlone(nn.Module):
    """The encoder with a trivial head: forward returns its skips; the loss is the sum of their means."""

    def __init__(self, encoder: nn.Module):
        super().__init__()
        self.encoder = encoder

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        return self.encoder(x)


def _deep_supervision_targets(target: torch.Tensor, outputs: Sequence[torch.Tensor]) -> List[torch.Tensor]:
    return [target if o.shape[2:] == target.shape[2:] else
            torch.nn.functional.interpolate(target, size=o.shape[2:], mode="nearest") for o in outputs]


def make_loss(network: nn.Module, deep_supervision: bool, batch_dice: bool, regions: bool) -> Callable:
    """loss(outputs, target) as nnUNetTrainer._build_loss: Dice + CE (labels) or Dice + BCE (regions), wrapped for
    deep supervision with nnU-Net's weights. The encoder alone gets the trivial loss Σ mean(skip)."""
    if isinstance(network, EncoderAlone):
        return lambda outputs, target: sum(o.float().mean() for o in outputs)
    from nnunetv2.training.loss.compound_losses import DC_and_BCE_loss, DC_and_CE_loss
    from nnunetv2.training.loss.deep_supervision import DeepSupervisionWrapper
    from nnunetv2.training.loss.dice import MemoryEfficientSoftDiceLoss

    if regions:
        loss = DC_and_BCE_loss({}, {"batch_dice": batch_dice, "do_bg": True, "smooth": 1e-5, "ddp": False},
                               use_ignore_label=False, dice_class=MemoryEfficientSoftDiceLoss)
    else:
        loss = DC_and_CE_loss({"batch_dice": batch_dice, "smooth": 1e-5, "do_bg": False, "ddp": False}, {},
                              weight_ce=1, weight_dice=1, ignore_label=None, dice_class=MemoryEfficientSoftDiceLoss)
    if not deep_supervision:
        return loss
    n = len(network.encoder.output_channels) - 1
    weights = np.array([1 / (2 ** i) for i in range(n)])
    weights[-1] = 0
    wrapped = DeepSupervisionWrapper(loss, weights / weights.sum())
    return lambda outputs, target: wrapped(outputs, _deep_supervision_targets(target, outputs))


def random_target(plans: dict, dataset_json: dict, batch_size: int, patch_size: Sequence[int],
                  device: torch.device) -> tuple:
    """(target, regions): random labels (b, 1, *patch) or region masks (b, heads, *patch), as nnU-Net feeds them."""
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    label_manager = PlansManager(plans).get_label_manager(dataset_json)
    heads = label_manager.num_segmentation_heads
    if label_manager.has_regions:
        return torch.randint(0, 2, (batch_size, heads, *patch_size), device=device).float(), True
    return torch.randint(0, heads, (batch_size, 1, *patch_size), device=device).float(), False


class TrainingStep:
    """One nnU-Net-style training step (SGD, Nesterov 0.99) of a network on a fixed random batch."""

    def __init__(self, network: nn.Module, loss: Callable, batch: torch.Tensor, target: torch.Tensor):
        self.network, self.loss, self.batch, self.target = network, loss, batch, target
        self.optimizer = torch.optim.SGD(network.parameters(), 1e-2, weight_decay=3e-5, momentum=0.99, nesterov=True)
        self.cuda = batch.device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda") if self.cuda else None

    def resident_tensors(self) -> list:
        state = [v for per_param in self.optimizer.state.values() for v in per_param.values()
                 if isinstance(v, torch.Tensor)]
        params = list(self.network.parameters())
        return [*params, *(p.grad for p in params), *state, self.batch, self.target]

    def __call__(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.float16, enabled=self.cuda):
            loss = self.loss(self.network(self.batch), self.target)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            loss.backward()
            self.optimizer.step()
        if self.cuda:
            torch.cuda.synchronize()


class BilevelTrainingStep(TrainingStep):
    """Fuse4Seg's training step (imagefusion.bilevel, the bi-level phase) as its trainer runs it: SGD on the
    segmentation network, AdamW on the fusion network, one forward and backward of both."""

    def __init__(self, network: nn.Module, loss: Callable, batch: torch.Tensor, target: torch.Tensor):
        super().__init__(network.segmentation, loss, batch, target)
        self.network = network
        self.fusion_optimizer = torch.optim.AdamW(network.fusion.parameters(), 1e-4, weight_decay=1e-4)

    def resident_tensors(self) -> list:
        state = [v for per_param in self.fusion_optimizer.state.values() for v in per_param.values()
                 if isinstance(v, torch.Tensor)]
        fusion = list(self.network.fusion.parameters())
        return [*super().resident_tensors(), *fusion, *(p.grad for p in fusion), *state]

    def __call__(self) -> None:
        from nnunet_fuse.imagefusion.bilevel import BilevelSettings, bilevel_step

        bilevel_step(self.network, self.batch, self.target, self.loss, self.optimizer, self.fusion_optimizer,
                     BilevelSettings(), pretraining=False, scaler=self.scaler)
        if self.cuda:
            torch.cuda.synchronize()


def median_seconds(fn: Callable[[], None], warmup: int, repeats: int) -> float:
    return interleaved_median_seconds([fn], warmup, repeats)[0]


def interleaved_median_seconds(fns: Sequence[Callable[[], None]], warmup: int, repeats: int) -> List[float]:
    """Median seconds of each fn, timed round-robin (fn 0, 1, ..., 0, 1, ...) after `warmup` calls of each, so a
    machine that speeds up or slows down during the measurement (shared CPUs, clocks) shifts all of them alike and
    their ratios stay fair."""
    for fn in fns:
        for _ in range(warmup):
            fn()
    times: List[List[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for fn, fn_times in zip(fns, times):
            start = time.perf_counter()
            fn()
            fn_times.append(time.perf_counter() - start)
    return [statistics.median(fn_times) for fn_times in times]


def _allocation_events(fn: Callable[[], object]) -> tuple:
    """(fn(), [(time ns, bytes)]): every CPU allocation (+) and free (−) while fn ran, from torch profiler's
    allocation events (exact for tensors; the CPU allocator has no peak counter of its own)."""
    from torch._C._profiler import _EventType
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        result = fn()
    events = []

    def collect(node) -> None:
        if node.tag == _EventType.Allocation:
            events.append((node.start_time_ns, node.extra_fields.alloc_size))
        for child in node.children:
            collect(child)

    for root in prof.profiler.kineto_results.experimental_event_tree():
        collect(root)
    return result, sorted(events)


def peak_step_memory_bytes(step: Callable[[], None], device: torch.device) -> int:
    """Peak bytes allocated during step() above what was allocated before it.

    CUDA: torch.cuda.max_memory_allocated. CPU: the peak of live bytes, from the allocation events of torch's
    profiler."""
    if device.type == "cuda":
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        step()
        return torch.cuda.max_memory_allocated(device) - before
    _, events = _allocation_events(step)
    live = peak = 0
    for _, size in events:
        live += size
        peak = max(peak, live)
    return peak


def forward_kept_bytes(module: Callable[..., object], *inputs: torch.Tensor) -> int:
    """Bytes that a training forward of module allocates and still holds when it returns, its outputs included: what
    autograd keeps for the backward (activation checkpointing included) and what it hands on. CPU only; the check
    that a network's ``compute_conv_feature_map_size`` is right."""
    outputs, events = _allocation_events(lambda: module(*inputs))
    del outputs
    return sum(size for _, size in events)


def resident_bytes(tensors) -> int:
    """Bytes of the distinct storages behind tensors (weights, gradients, optimiser state, batch)."""
    storages = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in tensors if t is not None}
    return sum(storages.values())


def forward_gflops(network: nn.Module, batch: torch.Tensor) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        network(batch)
    return counter.get_total_flops() / 1e9


def sliding_window_inference(network: nn.Module, plans: dict, dataset_json: dict, configuration: str,
                             device: torch.device) -> Callable[[], None]:
    """A call predicting one random case of the plan's median shape through nnUNetPredictor (sliding window, as
    nnUNetv2_predict). One patch is predicted here first, so the timed calls pay no one-time setup (oneDNN primitives
    for the patch shape, constant caches, FuseUNet's CPU kernels)."""
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    plans_manager = PlansManager(plans)
    cm = plans_manager.get_configuration(configuration)
    shape = [int(round(s)) for s in cm.median_image_size_in_voxels]
    if len(cm.patch_size) == 2:  # 2D networks predict a 3D case slice by slice
        shape = [int(round(plans["original_median_shape_after_transp"][0])), *shape]
    network = copy.deepcopy(network).eval()  # the training step's network keeps its deep supervision
    network.decoder.deep_supervision = False
    predictor = nnUNetPredictor(tile_step_size=0.5, use_gaussian=True, use_mirroring=False,
                                perform_everything_on_device=device.type == "cuda", device=device, verbose=False,
                                allow_tqdm=False)
    predictor.manual_initialization(network, plans_manager, cm, None, dataset_json, "profile", None)
    case = torch.randn(input_channels(dataset_json), *shape)
    with torch.no_grad(), torch.autocast(device.type, enabled=device.type == "cuda"):  # as nnUNetPredictor
        network(torch.randn(1, input_channels(dataset_json), *cm.patch_size, device=device))

    def predict() -> None:
        with torch.no_grad():
            predictor.predict_sliding_window_return_logits(case)
        if device.type == "cuda":
            torch.cuda.synchronize()
    return predict


def candidates(base_plans: Sequence[dict], configuration: str, methods: Sequence[str] = ("fuseunet",)) -> List[tuple]:
    """(name, plans, kind) for each base plans: nnU-Net's network, its variant for each method that can replace that
    network (plans/<method>.json), its encoder alone (last of the group)."""
    rows = []
    for plans in base_plans:
        if MARKER_KEY in plans:
            raise ValueError(f"pass nnU-Net's own plans (got the variant {plans['plans_name']}); the methods' "
                             f"variants are profiled next to their base automatically")
        name = plans["plans_name"]
        base_network = plans["configurations"][configuration].get("architecture", {}).get("network_class_name")
        rows.append((f"nnU-Net {name}", plans, "network"))
        for method in methods:
            overlay = load_overlay(method)
            if base_network in overlay["network_class_by_base"]:
                label = overlay["plans_infix"].replace("FuseUNet", "+FuseUNet") if method != "fuseunet" else "FuseUNet"
                variant = make_plans_variant(plans, overlay, f"{label}({name})", [configuration])
                rows.append((f"{label} on {name}", variant, "network"))
        rows.append((f"encoder alone ({name})", plans, "encoder alone"))
    return rows


def profile_plans(base_plans: Sequence[dict], dataset_json: dict, configuration: str, device: torch.device,
                  batch_size: Optional[int] = None, patch_size: Optional[Sequence[int]] = None,
                  warmup: int = 1, repeats: int = 3, inference: bool = True, compile: bool = False,
                  log: Callable[[str], None] = print, methods: Sequence[str] = ("fuseunet",),
                  inference_repeats: int = 1) -> List[ProfileRow]:
    """Measure every candidate of every base plans for one configuration; ratios against the first network of each
    base plans (nnU-Net's) and against that plans' encoder alone. All candidates are built first and their training
    steps timed round-robin (interleaved_median_seconds); memory and FLOPs are then measured one network at a time,
    and last the networks' inference, round-robin again (median of inference_repeats)."""
    if repeats < 1 or inference_repeats < 1:
        raise ValueError(f"--repeats and --inference-repeats must be at least 1, got {repeats} and "
                         f"{inference_repeats}")
    built = []
    for name, plans, kind in candidates(base_plans, configuration, methods):
        plans = copy.deepcopy(plans)
        cfg = plans["configurations"][configuration]
        if patch_size:
            check_patch_size(patch_size, cfg["architecture"]["arch_kwargs"]["strides"])
            cfg["patch_size"] = list(patch_size)
        network, cm = network_from_plans(plans, dataset_json, configuration,
                                         deep_supervision=trainer_deep_supervision(plans))
        counts = parameter_counts(network)
        deep_supervision = network.decoder.deep_supervision
        if kind == "encoder alone":
            network = EncoderAlone(network.encoder)
            counts = {"total": counts["encoder"], "encoder": counts["encoder"], "decoder": 0}
        network = network.to(device).train()
        batch_n = batch_size or cm.batch_size
        batch = torch.randn(batch_n, input_channels(dataset_json), *cm.patch_size, device=device)
        target, regions = random_target(plans, dataset_json, batch_n, cm.patch_size, device)
        log(f"built {name}: patch {cm.patch_size}, batch {batch_n}, {device.type}"
            f"{', torch.compile' if compile else ''}")
        step_class = BilevelTrainingStep if hasattr(network, "fusion") else TrainingStep
        step = step_class(torch.compile(network) if compile else network,
                          make_loss(network, deep_supervision, cm.batch_dice, regions), batch, target)
        built.append((name, plans, kind, counts, network, step))
    log(f"timing {len(built)} training steps round-robin ({repeats} each)")
    seconds = interleaved_median_seconds([step for *_, step in built], max(warmup, 2) if compile else warmup, repeats)
    rows: List[ProfileRow] = []
    for (name, plans, kind, counts, network, step), step_seconds in zip(built, seconds):
        log(f"measuring memory and FLOPs of {name}")
        peak = resident_bytes(step.resident_tensors()) + peak_step_memory_bytes(step, device)
        gflops = forward_gflops(network, step.batch)
        rows.append(ProfileRow(name, plans["plans_name"], kind, counts["total"], counts["encoder"],
                               counts["decoder"], gflops, step_seconds, peak / 2 ** 20))
    if inference:
        predicted = [(row, sliding_window_inference(network, plans, dataset_json, configuration, device))
                     for row, (_, plans, kind, _, network, _) in zip(rows, built) if kind == "network"]
        log(f"timing sliding-window inference of {len(predicted)} networks round-robin ({inference_repeats} each)")
        for (row, _), infer in zip(predicted, interleaved_median_seconds([p for _, p in predicted], 0,
                                                                         inference_repeats)):
            row.inference_seconds = infer
    add_ratios(rows)
    return rows


def check_patch_size(patch_size: Sequence[int], strides: Sequence[Sequence[int]]) -> None:
    """A patch the plan's network can train on: divisible by the total stride, at least 2 voxels at the bottleneck
    per axis (instance norm needs more than one voxel). Raises ValueError saying which patch would work."""
    total = np.prod(np.array(strides), axis=0)
    if len(patch_size) != len(total):
        raise ValueError(f"patch size {list(patch_size)} has {len(patch_size)} axes, the plan's network {len(total)}")
    if any(p % t or p // t < 2 for p, t in zip(patch_size, total)):
        smallest = [int(2 * t) for t in total]
        raise ValueError(f"patch size {list(patch_size)} does not fit the plan's strides (total stride "
                         f"{total.tolist()}): each axis must be a multiple of its total stride and at least twice "
                         f"it, e.g. {smallest}")


def input_channels(dataset_json: dict) -> int:
    """Image channels of a dataset (nnU-Net v2 ``channel_names``, v1 ``modality``)."""
    return len(dataset_json.get("channel_names") or dataset_json["modality"])


def add_ratios(rows: List[ProfileRow]) -> None:
    """Per base plans: ratios of step time, memory, FLOPs, parameters, inference to nnU-Net's network (the group's
    first row) and to the encoder alone (the group's last row)."""
    start = 0
    for end, row in enumerate(rows):
        if row.kind != "encoder alone":
            continue
        group, default, floor = rows[start:end + 1], rows[start], row
        start = end + 1
        for row in group:
            row.ratios = {
                "params_vs_default": row.params_total / default.params_total,
                "flops_vs_default": row.forward_gflops / default.forward_gflops,
                "step_vs_default": row.step_seconds / default.step_seconds,
                "step_vs_encoder": row.step_seconds / floor.step_seconds,
                "memory_vs_default": row.peak_memory_mb / default.peak_memory_mb,
                "memory_vs_encoder": row.peak_memory_mb / floor.peak_memory_mb,
            }
            if row.inference_seconds is not None and default.inference_seconds:
                row.ratios["inference_vs_default"] = row.inference_seconds / default.inference_seconds


TABLE_COLUMNS = ["network", "params M (enc + dec)", "fwd GFLOPs", "step s", "step ×default", "step ×encoder",
                 "peak MB", "mem ×default", "mem ×encoder", "inference s", "infer ×default"]


def table_rows(rows: Sequence[ProfileRow]) -> List[List[str]]:
    out = [TABLE_COLUMNS]
    for r in rows:
        out.append([r.name, f"{r.params_total / 1e6:.2f} ({r.params_encoder / 1e6:.2f} + {r.params_decoder / 1e6:.3f})",
                    f"{r.forward_gflops:.1f}", f"{r.step_seconds:.3f}", f"{r.ratios['step_vs_default']:.2f}",
                    f"{r.ratios['step_vs_encoder']:.2f}", f"{r.peak_memory_mb:.0f}",
                    f"{r.ratios['memory_vs_default']:.2f}", f"{r.ratios['memory_vs_encoder']:.2f}",
                    "—" if r.inference_seconds is None else f"{r.inference_seconds:.2f}",
                    f"{r.ratios['inference_vs_default']:.2f}" if "inference_vs_default" in r.ratios else "—"])
    return out


def write_outputs(rows: Sequence[ProfileRow], meta: dict, stem: Path, plot: bool) -> List[Path]:
    """stem.json (rows + meta), stem.csv, stem.md and with plot stem.png, each written whole; returns the paths."""
    from nnunet_fuse.atomic_files import replaced_atomically, write_csv_atomically, write_text_atomically
    from nnunet_fuse.reporting import format_table

    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.with_suffix(".json"), stem.with_suffix(".csv"), stem.with_suffix(".md")]
    write_text_atomically(paths[0], json.dumps({"meta": meta, "rows": [asdict(r) for r in rows]}, indent=2))
    write_csv_atomically(paths[1], table_rows(rows))
    write_text_atomically(paths[2], format_table(table_rows(rows)) + "\n")
    if plot:
        with replaced_atomically(stem.with_suffix(".png")) as png:
            plot_rows(rows, meta, png)
        paths.append(stem.with_suffix(".png"))
    return paths


def plot_rows(rows: Sequence[ProfileRow], meta: dict, png: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = [("params_total", "parameters (M)", 1e-6), ("forward_gflops", "forward GFLOPs", 1),
               ("step_seconds", "training step (s)", 1), ("peak_memory_mb", "peak memory of a step (MB)", 1)]
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 4))
    names = [r.name for r in rows]
    for ax, (attr, title, scale) in zip(axes, metrics):
        ax.barh(names, [getattr(r, attr) * scale for r in rows],
                color=["tab:gray" if r.kind == "encoder alone" else "tab:blue" if "FuseUNet" in r.name
                       else "tab:orange" for r in rows])
        ax.set_title(title)
        ax.invert_yaxis()
    for ax in axes[1:]:
        ax.set_yticklabels([])
    fig.suptitle(f"{meta['dataset']} {meta['configuration']} — patch {meta['patch_size']}, "
                 f"batch {meta['batch_size']}, {meta['device']}")
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)
    return png
