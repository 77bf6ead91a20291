"""Metrics computed on the host in NumPy, after the jitted steps: `classification` (MedMNIST AUC/ACC, accuracy, macro
F1, ROC curve, confusion matrix) and `entities` (entity-level precision/recall/F1 for NER tags, as seqeval)."""
