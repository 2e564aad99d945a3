"""FuseUNet: linear-multistep ODE fusion of encoder skips."""

from nnunet_fuse.ode.multistep import (
    adams_bashforth_step,
    adams_moulton_step,
    multistep_solve,
)
from nnunet_fuse.ode.decoder import FuseUNetDecoder, default_state_channels

__all__ = [
    "adams_bashforth_step",
    "adams_moulton_step",
    "multistep_solve",
    "FuseUNetDecoder",
    "default_state_channels",
]
