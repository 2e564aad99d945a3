"""Datasets: the synthetic generator, validated converters of public datasets to nnU-Net raw format, and the case
classes beside a raw dataset (classes.json)."""
