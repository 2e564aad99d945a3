"""HiFuse: local CNN / global window-attention branches fused stage by stage by HFF blocks (2D and 3D)."""
