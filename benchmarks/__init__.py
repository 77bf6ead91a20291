"""Side-by-side benchmarks of medjax against PyTorch.

Each workload (the tutorial's CNN, LSTM and attention models, ResNet-18, a BiLSTM tagger, a transformer encoder) exists
twice: the medjax model and a PyTorch twin with the same shapes, built from the same initial weights and fed the same
inputs. The runner times one training step (forward, backward, Adam update) of each in its own process and writes JSON
plus a Markdown table of ratios (medjax time / the faster PyTorch time; < 1 means medjax is faster).

Run from the repository root::

    python -m benchmarks --workloads cnn,lstm --variants medjax,torch,torch-compile --repeats 3 --steps 100

`benchmarks/gpu.py` is the prepared GPU set; `benchmarks/RESULTS.md` keeps the latest figures.
"""
