"""PyTorch twins of the benchmark workloads: the same model as PyTorch users write it, with medjax's weights copied in.

One module per workload (`benchmarks.workloads` describes what each provides). These modules import PyTorch and NumPy
only, so a PyTorch benchmark process never loads JAX.
"""
