"""FuseUNet variants compared at the `long` budget (issue 29, benchmarks/README.md, "Learning curves on a fixed 40-case
subset per fold"). `reproduce` trains them as METHOD:TRAINER when this folder is in nnUNet_extTrainer (the
benchmark scripts add it, benchmarks/workdir_env.sh), e.g.

    bash benchmarks/learning_curves_hippocampus.sh WORKDIR "0 1" fuseunet:nnUNetTrainerFuseUNet_long_state32 40

An architecture change lives in the trainer's build_network_architecture, as nnU-Net's own architecture variants do:
nnUNetv2_predict builds the network through the trainer of the model folder, so prediction sees the same network.
"""
from nnunet_fuse.plans_network import with_arch_kwargs
from nnunet_fuse.training.budget import nnUNetTrainerFuseUNet_long


class nnUNetTrainerFuseUNet_long_state32(nnUNetTrainerFuseUNet_long):
    """The ODE state 32 channels wide instead of the paper's 2K (6 for Hippocampus's 3 outputs): the decoder's only
    full-resolution features, as wide as nnU-Net's first encoder stage."""

    state_channels = 32

    @classmethod
    def build_network_architecture(cls, plans_manager, configuration_manager, *args, **kwargs):
        return super().build_network_architecture(
            plans_manager, with_arch_kwargs(configuration_manager, {"state_channels": cls.state_channels}), *args,
            **kwargs)


class nnUNetTrainerFuseUNet_long_state16(nnUNetTrainerFuseUNet_long_state32):
    """A 16-channel ODE state: the widest that keeps FuseUNet within the memory nnU-Net plans for its own network at
    Hippocampus's batch and patch (nnU-Net's estimate per sample 0.84× its network's; 32 channels: 1.28×)."""

    state_channels = 16
