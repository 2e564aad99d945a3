"""Case-level classification (``nnunet-fuse classify``), from segmentations or from the images.

The case classes are ``classes.json`` beside the raw dataset (datasets/classes.py). From segmentations
(``--features shape``): shape_features.py measures label maps, tabular.py chooses a scikit-learn model,
from_segmentations.py trains, validates and predicts. From the images (HiFuse): samples.py turns cases into samples (a
patient's frames together) and network inputs; training.py: budgets, the training loop and its checkpoints;
prediction.py: new scans → class probabilities. Both: metrics.py (accuracy, balanced accuracy, F1, AUC, confusion
matrix) and evaluation.py (the cross-validation report).
"""
