"""nnunet_fuse: multi-scale / multi-modal fusion methods (FuseUNet, ...) as an nnU-Net v2 plugin."""

__version__ = "0.4.0"
