"""HiFuse variants compared at the `long` budget (issue 29 item 2, benchmarks/README.md, "Learning curves on a fixed
40-case subset per fold"): what is ours in HiFuse's segmentation network — the slimmed MLPs, where global attention
is placed, the learning rate of the attention blocks. `reproduce` trains them as METHOD:TRAINER when this folder is in
nnUNet_extTrainer (benchmarks/workdir_env.sh adds it), e.g.

    bash benchmarks/learning_curves_hippocampus.sh WORKDIR "0" hifuse:nnUNetTrainerHiFuse_long_paper_mlp 40

An architecture change lives in the trainer's build_network_architecture (as in fuseunet_variants), so
nnUNetv2_predict, which builds the network through the model folder's trainer, sees the same network.
"""
from nnunetv2.training.lr_scheduler.polylr import PolyLRScheduler

from nnunet_fuse.plans_network import with_arch_kwargs
from nnunet_fuse.training.budget import nnUNetTrainerHiFuse_long


class _ArchitectureVariant(nnUNetTrainerHiFuse_long):
    """nnUNetTrainerHiFuse_long with ``arch_changes`` written over the plans' architecture arguments."""

    arch_changes: dict = {}

    @classmethod
    def build_network_architecture(cls, plans_manager, configuration_manager, *args, **kwargs):
        return super().build_network_architecture(plans_manager, with_arch_kwargs(configuration_manager,
                                                                                  cls.arch_changes), *args, **kwargs)


class nnUNetTrainerHiFuse_long_paper_mlp(_ArchitectureVariant):
    """The paper's MLP expansions: the global blocks' MLP ×4 (ours ×2), the HFF blocks' IRMLP ×4 (ours ×1)."""

    arch_changes = {"mlp_ratio": 4, "irmlp_ratio": 4}


class nnUNetTrainerHiFuse_long_deepest_attention(_ArchitectureVariant):
    """Global attention at the deepest stage only (the plan puts it at every stage of at most 4096 voxels; on
    Hippocampus's 40 × 56 × 40 patch stages 2 and 3)."""

    arch_changes = {"global_stages": [3]}


class _GroupScaledPolyLR(PolyLRScheduler):
    """nnU-Net's PolyLR with each parameter group's lr multiplied by its ``lr_scale`` (default 1)."""

    def step(self, current_step=None):
        super().step(current_step)
        for group in self.optimizer.param_groups:
            group["lr"] *= group.get("lr_scale", 1.0)
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]


class nnUNetTrainerHiFuse_long_attention_lr(nnUNetTrainerHiFuse_long):
    """The global branch (its downsampling, window-attention blocks and HFF blocks) at 0.1× nnU-Net's lr: SGD with
    momentum 0.99 at lr 1e-2 is nnU-Net's setting for convolutions; attention blocks are usually trained gentler."""

    attention_lr_scale = 0.1
    attention_modules = (".global_down.", ".global_blocks.", ".hff.")

    def configure_optimizers(self):
        import torch

        named = list(self.network.named_parameters())
        attention = [p for n, p in named if any(m in f".{n}" for m in self.attention_modules)]
        if not attention:
            raise RuntimeError(f"no parameters of {self.attention_modules} in {type(self.network).__name__}")
        ids = {id(p) for p in attention}
        groups = [{"params": [p for _, p in named if id(p) not in ids]},
                  {"params": attention, "lr_scale": self.attention_lr_scale}]
        optimizer = torch.optim.SGD(groups, self.initial_lr, weight_decay=self.weight_decay, momentum=0.99,
                                    nesterov=True)
        return optimizer, _GroupScaledPolyLR(optimizer, self.initial_lr, self.num_epochs)
