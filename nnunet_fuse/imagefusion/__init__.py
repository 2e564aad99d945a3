"""Fuse4Seg: image-level fusion of N modalities into one readable image (DESIGN.md §3)."""
