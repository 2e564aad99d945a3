"""``nnUNetv2_train ... -pretrained_weights CHECKPOINT`` for our networks.

nnU-Net's run_training calls its module-level ``load_pretrained_weights(network, file)``, which requires every key of
the new network but the ``.seg_layers.`` ones to exist in the checkpoint with the same shape. Our networks have other
decoders (FuseUNet's head is ``decoder.head``) and the trainer has no hook for this, so ``install()`` (run when
nnunet_fuse.training is imported, i.e. whenever nnU-Net finds one of our trainers) routes that one call: networks of
``nnunet_fuse.architectures`` go through ``transfer_pretrained_weights``, every other network through nnU-Net's
function unchanged.

Rules: the encoder must come whole from the checkpoint (same names and shapes: the same base plans and input
channels), else a PretrainedWeightsError says which tensor does not fit and what to do; every other tensor is taken
where the checkpoint has one of the same name and shape (a checkpoint of the same method), and starts fresh otherwise
(an nnU-Net checkpoint into FuseUNet: the decoder). The layers that output classes (``.seg_layers.``,
``decoder.head.``) always start fresh, as in nnU-Net. Fuse4Seg's ``segmentation.`` prefix is matched with and
without it, so its segmentation network exchanges weights with the plain networks.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Dict, Union

import torch
from torch import nn

from nnunet_fuse.training.distributed import unwrapped

OUTPUT_LAYER_MARKERS = (".seg_layers.", "decoder.head.")  # layers sized by the number of classes: never transferred
WRAPPER_PREFIX = "segmentation."  # Fuse4SegNet's segmentation network


class PretrainedWeightsError(RuntimeError):
    """The checkpoint does not fit the network; the message names the tensor and says what to do."""


def _canonical(key: str) -> str:
    return key[len(WRAPPER_PREFIX):] if key.startswith(WRAPPER_PREFIX) else key


def transfer_pretrained_weights(network: nn.Module, checkpoint_file: Union[str, Path],
                                log: Callable[[str], None] = print) -> Dict[str, list]:
    """Copy the checkpoint's weights into ``network`` in place (rules in the module docstring).

    Returns {"encoder": keys loaded, "other": keys loaded, "fresh": keys left at their initial values}.
    """
    from nnunet_fuse.training.checkpoints import read_checkpoint

    checkpoint = read_checkpoint(checkpoint_file)
    source = {_canonical(k): v for k, v in checkpoint["network_weights"].items()}
    network = unwrapped(network)
    targets = network.state_dict(keep_vars=True)  # the live tensors: aliases (UNetDecoder's encoder) share them
    encoder_tensors = {id(t) for t in network.encoder.state_dict(keep_vars=True).values()}
    loaded = {"encoder": [], "other": [], "fresh": []}
    values = {}  # id(live tensor) -> checkpoint tensor
    for key, tensor in targets.items():
        name = _canonical(key)
        match = source.get(name)
        if any(marker in f".{name}" for marker in OUTPUT_LAYER_MARKERS):
            loaded["fresh"].append(key)
        elif match is not None and tuple(match.shape) == tuple(tensor.shape):
            values[id(tensor)] = match
            loaded["encoder" if id(tensor) in encoder_tensors else "other"].append(key)
        elif id(tensor) not in encoder_tensors:
            loaded["fresh"].append(key)
    for key, tensor in targets.items():  # every encoder tensor must come from the checkpoint under one of its names
        if id(tensor) in encoder_tensors and id(tensor) not in values:
            match = source.get(_canonical(key))
            found = "is missing" if match is None else f"has shape {tuple(match.shape)}"
            raise PretrainedWeightsError(
                f"{checkpoint_file} does not fit this network: encoder tensor '{_canonical(key)}' {found} in the "
                f"checkpoint (the network needs {tuple(tensor.shape)}). Fine-tuning needs the checkpoint's encoder: "
                f"plans made from the same base plans (nnUNetv2_move_plans_between_datasets copies them to another "
                f"dataset; preprocess with them, then run nnunet-fuse plan) and the same number of input channels.")
    with torch.no_grad():
        for key, tensor in targets.items():
            if id(tensor) in values:
                tensor.copy_(values[id(tensor)].to(device=tensor.device, dtype=tensor.dtype))
    log(f"pretrained weights from {checkpoint_file}: encoder: {len(loaded['encoder'])} tensors loaded; decoder and "
        f"other layers: {len(loaded['other'])} loaded, {len(loaded['fresh'])} start fresh (the class outputs and "
        f"what the checkpoint lacks or has in another shape)")
    return loaded


def install() -> None:
    """Route nnU-Net's ``-pretrained_weights`` call (run_training.load_pretrained_weights) for our networks."""
    from nnunetv2.run import run_training

    nnunet_loader = run_training.load_pretrained_weights
    if getattr(nnunet_loader, "routes_nnunet_fuse_networks", False):
        return

    def load_pretrained_weights(network, fname, verbose=False):
        from nnunet_fuse.architectures import NETWORK_CLASSES

        if isinstance(unwrapped(network), NETWORK_CLASSES):
            transfer_pretrained_weights(network, fname)
        else:
            nnunet_loader(network, fname, verbose=verbose)

    load_pretrained_weights.routes_nnunet_fuse_networks = True
    run_training.load_pretrained_weights = load_pretrained_weights
