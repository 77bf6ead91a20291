"""Metrics computed on the host after the jitted steps, by scikit-learn and seqeval behind input checks:
`classification` (MedMNIST AUC/ACC, accuracy, macro F1, ROC curve, confusion matrix) and `entities` (entity-level
precision/recall/F1 for NER tags)."""
