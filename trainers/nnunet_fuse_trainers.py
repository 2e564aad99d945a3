# Scanned by nnU-Net through `nnUNet_extTrainer` (see `nnunet-fuse env`). Thin re-export only: the classes live in
# the nnunet_fuse package so that they stay importable and picklable under their canonical names.
from nnunet_fuse.training import *  # noqa: F401,F403
from nnunet_fuse.training import __all__  # noqa: F401
