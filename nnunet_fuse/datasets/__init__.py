"""Datasets: the synthetic generator (and, later, thin wrappers around nnunetv2's converters)."""
