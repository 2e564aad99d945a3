"""Case-level classification with HiFuse on nnU-Net's preprocessed data (``nnunet-fuse classify``).

The case classes are ``classes.json`` beside the raw dataset (datasets/classes.py). samples.py: cases → samples (a
patient's frames together) and network inputs; metrics.py: accuracy, balanced accuracy, F1, AUC, confusion matrix;
training.py: budgets, the training loop and its checkpoints; prediction.py: new scans → class probabilities;
evaluation.py: the cross-validation report.
"""
