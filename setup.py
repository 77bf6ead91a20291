"""Builds the one native part of medjax: the CPU LSTM kernel (medjax/nn/_lstm_cpu.cc) behind `jax.ffi`.

Everything else is in pyproject.toml. The extension is optional: if the machine has no C++17 compiler, the build
prints why and medjax runs its XLA loop instead (medjax.nn.lstm_kernel.available() says which).
"""

import os

import jaxlib
from setuptools import Extension, setup

lstm_cpu = Extension(
    "medjax.nn._lstm_cpu",
    sources=["medjax/nn/_lstm_cpu.cc"],
    include_dirs=[os.path.join(os.path.dirname(jaxlib.__file__), "include")],  # XLA's FFI headers, as jaxlib ships them
    # Built where it runs (pip install), so the host's vector width; -ffp-contract=fast lets the GEMM use FMA.
    extra_compile_args=["-std=c++17", "-O3", "-march=native", "-ffp-contract=fast", "-Wno-attributes",
                        "-Wno-return-type"],
    language="c++",
    optional=True,
)

setup(ext_modules=[lstm_cpu])
