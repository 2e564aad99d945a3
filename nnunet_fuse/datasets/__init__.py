"""Datasets: the synthetic generator and validated converters of public datasets to nnU-Net raw format."""
