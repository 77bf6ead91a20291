"""The GPU set: medjax against PyTorch on one NVIDIA GPU (sized for an H200), in under 8 minutes.

    python -m benchmarks.gpu                # on the GPU machine, from the repository root
    python -m benchmarks.gpu --tiny         # the same code paths on CPU at tiny sizes: checks the script anywhere

Three parts, in this order (the headline figure first, should the budget run out), each framework in its own process
(JAX preallocates most of the GPU's memory), JAX first (it writes the starts, batch and weights, that PyTorch loads):
- ``attention``: scaled dot-product attention through cuDNN (medjax ``implementation="cudnn"``, and XLA's for
  contrast) against ``F.scaled_dot_product_attention``, bfloat16, 16 heads of 128, 64k tokens a batch, sequence length
  1k to 16k; achieved TFLOP/s against the card's bfloat16 matmul peak (`PEAK_TFLOPS`);
- ``workloads``: the six CPU workloads scaled up to fill the chip; bfloat16 mixed precision on both sides (float32
  master weights; PyTorch's autocast, channels-last for the convolutional ones) except the LSTMs, which run float32
  (TF32 matmuls, both sides' default) because `jax.experimental.rnn`'s cuDNN LSTM has no bfloat16;
- ``lstm``: a large 2-layer LSTM, medjax's scan (float32 and bfloat16) and `jax.experimental.rnn`'s cuDNN LSTM
  against PyTorch's cuDNN ``nn.LSTM`` (float32 and autocast bfloat16).
Each worker appends a JSON line per measurement as it goes, so a timeout keeps what finished; a measurement that fails
(cuDNN absent, out of memory) is recorded with its error and the rest go on. Output: ``--out/gpu-<date-time>/``
``records.jsonl`` and ``report.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import time
import traceback
from typing import Any, Callable

from benchmarks import measure

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
# Measured bfloat16 dense matmul peak of an H200 (the figure), the yardstick for attention's TFLOP/s.
PEAK_TFLOPS = 790.0
# (workload, size overrides, mixed precision) on the GPU; the LSTMs stay float32 (see the module docstring).
GPU_WORKLOADS = (
    ("cnn", {"batch": 1024}, True),
    ("resnet18", {"batch": 1024}, True),
    ("lstm", {}, False),
    ("bilstm", {"batch": 256}, False),
    ("attention", {"batch": 1024}, True),
    ("transformer", {"batch": 64, "time": 1024, "width": 512, "heads": 8, "mlp": 2048}, True),
)
LSTM_LARGE = {"batch": 256, "time": 256, "features": 256, "hidden": 512, "layers": 2, "classes": 2}
ATTENTION_TOKENS, ATTENTION_HEADS, ATTENTION_HEAD_DIM = 65_536, 16, 128
ATTENTION_LENGTHS = (1024, 2048, 4096, 8192, 16384)
TINY_ATTENTION = (256, 2, 8, (16, 32))  # tokens, heads, head dim, lengths


class Recorder:
    """Appends one JSON line per measurement; a failing measurement becomes a line with its error."""

    def __init__(self, path: pathlib.Path, framework: str):
        self.path, self.framework = path, framework

    def __call__(self, part: str, label: str, measure_fn: Callable[[], dict]) -> None:
        started = time.time()
        try:
            record = {"status": "ok", **measure_fn()}
        except Exception as error:  # cuDNN missing, out of memory, an API that moved: a result, not a crash
            record = {"status": "failed", "error": f"{type(error).__name__}: {str(error).strip()[:300]}",
                      "trace": traceback.format_exc(limit=3)[-1500:]}
        record.update({"framework": self.framework, "part": part, "label": label, "wall_s": time.time() - started})
        with open(self.path, "a") as file:
            file.write(json.dumps(record) + "\n")
        timing = f"{record['median_ms']:.3f} ms" if "median_ms" in record else record.get("error", "")
        print(f"  {self.framework} {part} {label}: {record['status']} {timing}", flush=True)


def time_calls(call: Callable[[], Any], sync: Callable[[Any], Any], rounds: int = 5, number: int = 10) -> dict:
    """Median time of one call from ``rounds`` rounds of ``number`` back-to-back calls, synchronised per round.

    Kernel-level timing: queuing calls back to back is how a training loop drives a GPU, and the per-round
    synchronisation keeps the launch queue from hiding work past the timer.
    """
    sync(call())
    per_call = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(number):
            out = call()
        sync(out)
        per_call.append((time.perf_counter() - start) / number)
    return {"median_ms": statistics.median(per_call) * 1e3, "min_ms": min(per_call) * 1e3}


def attention_flops(batch: int, heads: int, length: int, head_dim: int) -> dict[str, float]:
    """FLOPs of attention without a mask: forward 2 matmuls of 2·T²·d each per head; backward 2.5× the forward
    (FlashAttention-2's accounting: 5 matmuls, the forward's recomputed scores included)."""
    forward = 4.0 * batch * heads * length * length * head_dim
    return {"fwd": forward, "fwd+bwd": 3.5 * forward}


def attention_shapes(tiny: bool):
    tokens, heads, dim, lengths = TINY_ATTENTION if tiny else (ATTENTION_TOKENS, ATTENTION_HEADS, ATTENTION_HEAD_DIM,
                                                              ATTENTION_LENGTHS)
    return [(tokens // length, heads, length, dim) for length in lengths]


def _tflops(flops: float, timing: dict) -> dict:
    achieved = flops / (timing["median_ms"] * 1e-3) / 1e12
    return {**timing, "tflops": achieved, "percent_of_peak": 100 * achieved / PEAK_TFLOPS}


def _sizes(name: str, overrides: dict, tiny: bool) -> dict[str, int]:
    from benchmarks import workloads

    module = workloads.medjax_module(name)
    return dict(module.TINY) if tiny else workloads.parse_sizes(module.SIZES, overrides)


def _without_steps(record: dict) -> dict:
    return {k: v for k, v in record.items() if k != "step_ms"} | {"median_ms": record["timing"]["median_ms"]}


def _cudnn_lstm_params(variables: dict, layers: int) -> dict:
    """medjax's LSTM weights packed as cuDNN's flat vector (per layer W_ih [4H, in], W_hh [4H, H]; then per layer
    b_ih, b_hh; gate order i, f, g, o, as PyTorch's), so the cuDNN LSTM starts from the same weights."""
    import numpy as np

    layer_params = [variables["params"]["lstm"][f"layer_{i}"] for i in range(layers)]
    weights = [np.concatenate([p["w_x"].T.ravel(), p["w_h"].T.ravel()]) for p in layer_params]
    biases = [np.concatenate([p["b"], np.zeros_like(p["b"])]) for p in layer_params]
    return {"lstm": np.concatenate(weights + biases), "head": variables["params"]["head"]}


def _jax_cudnn_lstm(start: pathlib.Path, sizes: dict, steps: int, warmup: int, reference: bool) -> dict:
    """A training step of LSTM + head through `jax.experimental.rnn.lstm` (cuDNN); ``reference`` uses its
    ``lstm_ref`` (plain JAX, any device) instead, which checks the weight packing on a machine without cuDNN."""
    import jax
    import jax.numpy as jnp
    import optax
    from jax.experimental import rnn

    from benchmarks import medjax_step, workloads
    from medjax.train.losses import softmax_cross_entropy

    batch, variables = workloads.load_start(start)
    b, t, f, h, layers = (sizes[k] for k in ("batch", "time", "features", "hidden", "layers"))
    params = jax.device_put(_cudnn_lstm_params(variables, layers))
    batch = jax.device_put(batch)
    lengths = jnp.full((b,), t, jnp.int32)

    def loss(params, batch):
        zeros = jnp.zeros((layers, b, h), jnp.float32)
        if reference:
            w_ih, w_hh, b_ih, b_hh = rnn.unpack_lstm_weights(params["lstm"], f, h, layers, False)
            y, _, _ = rnn.lstm_ref(batch["x"], zeros, zeros, w_ih, w_hh, b_ih, b_hh, lengths, f, h, layers, 0.0, False)
        else:
            y, _, _ = rnn.lstm(batch["x"], zeros, zeros, params["lstm"], lengths, input_size=f, hidden_size=h,
                               num_layers=layers, dropout=0.0, bidirectional=False)
        logits = y[:, -1] @ params["head"]["kernel"] + params["head"]["bias"].reshape(1, -1)
        return softmax_cross_entropy(logits, batch["labels"])

    tx = optax.adam(medjax_step.LEARNING_RATE)

    def step(state, batch):
        params, opt_state = state
        value, grads = jax.value_and_grad(loss)(params, batch)
        updates, opt_state = tx.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), value

    compiled = jax.jit(step, donate_argnums=0).lower((params, tx.init(params)), batch).compile()
    state, first = compiled((params, tx.init(params)), batch)
    holder = {"state": state}

    def one_step():
        holder["state"], value = compiled(holder["state"], batch)
        return jax.block_until_ready((holder["state"], value))

    for _ in range(warmup):
        one_step()
    seconds, _ = measure.time_steps(one_step, steps)
    return {"timing": measure.summarize(seconds), "median_ms": measure.summarize(seconds)["median_ms"],
            "first_loss": float(first), "sizes": sizes, "reference_path": reference}


def jax_worker(out_dir: pathlib.Path, parts: list[str], tiny: bool, steps: int, warmup: int) -> None:
    import jax
    import jax.numpy as jnp

    from benchmarks import medjax_step
    from medjax.nn.attention_kernels import dot_product_attention

    record = Recorder(out_dir / "records.jsonl", "jax")
    device = jax.devices()[0]
    record("info", "device", lambda: {"device": device.device_kind, "platform": device.platform,
                                      "jax": jax.__version__})
    if "attention" in parts:
        for b, h, t, d in attention_shapes(tiny):
            q, k, v, dout = (jax.random.normal(jax.random.PRNGKey(i), (b, h, t, d), jnp.bfloat16) for i in range(4))
            flops = attention_flops(b, h, t, d)
            # XLA's path materialises the [b, h, t, t] scores: past 4k tokens it only measures memory traffic.
            for implementation in ("cudnn", "xla") if t <= 4096 else ("cudnn",):
                def one(implementation=implementation, q=q, k=k, v=v, dout=dout, flops=flops):
                    def attend(q, k, v):
                        return dot_product_attention(q, k, v, implementation=implementation)

                    forward = jax.jit(attend)
                    both = jax.jit(lambda q, k, v, dout: jax.vjp(attend, q, k, v)[1](dout))
                    return {"shape": [b, h, t, d],
                            "fwd": _tflops(flops["fwd"], time_calls(lambda: forward(q, k, v), jax.block_until_ready)),
                            "fwd+bwd": _tflops(flops["fwd+bwd"],
                                               time_calls(lambda: both(q, k, v, dout), jax.block_until_ready))}

                record("attention", f"{implementation} T={t}", one)
    if "workloads" in parts:
        for name, overrides, mixed in GPU_WORKLOADS:
            sizes, start = _sizes(name, overrides, tiny), out_dir / "start" / f"{name}.npz"

            def one(name=name, sizes=sizes, start=start, mixed=mixed):
                prepared = medjax_step.prepare(name, sizes, 0, start)
                ran = medjax_step.run(name, sizes, start, steps, warmup, "bf16" if mixed else "fp32")
                return {**_without_steps(ran), "sizes": sizes, "float32_first_loss": prepared}

            record("workloads", name, one)
    if "lstm" in parts:
        sizes, start = (_sizes("lstm", {}, True) if tiny else LSTM_LARGE), out_dir / "start" / "lstm-large.npz"
        record("lstm", "prepare", lambda: {"first_loss": medjax_step.prepare("lstm", sizes, 0, start), "sizes": sizes})
        for label, precision in (("medjax scan f32", "fp32"), ("medjax scan bf16", "bf16")):
            record("lstm", label, lambda precision=precision: _without_steps(
                medjax_step.run("lstm", sizes, start, steps, warmup, precision)))
        record("lstm", "jax.experimental.rnn cuDNN f32",
               lambda: _jax_cudnn_lstm(start, sizes, steps, warmup, reference=False))
        if device.platform == "cpu":
            record("lstm", "jax.experimental.rnn lstm_ref f32 (packing check)",
                   lambda: _jax_cudnn_lstm(start, sizes, steps, warmup, reference=True))


def torch_worker(out_dir: pathlib.Path, parts: list[str], tiny: bool, steps: int, warmup: int) -> None:
    import torch
    import torch.nn.functional as F

    from benchmarks import torch_step

    device = "cuda" if torch.cuda.is_available() else "cpu"
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    record = Recorder(out_dir / "records.jsonl", "torch")
    record("info", "device", lambda: {"device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
                                      "torch": torch.__version__, "cudnn": torch.backends.cudnn.version()})

    def run(name, sizes, start, amp, channels_last=False):
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        ran = torch_step.run(name, sizes, start, steps, warmup, compile=False, device=device,
                             amp_dtype=torch.bfloat16 if amp else None, channels_last=channels_last)
        return {**_without_steps(ran), "sizes": sizes}

    if "attention" in parts:
        for b, h, t, d in attention_shapes(tiny):
            def one(b=b, h=h, t=t, d=d):
                q, k, v, dout = (torch.randn(b, h, t, d, device=device, dtype=torch.bfloat16) for _ in range(4))
                q.requires_grad_(), k.requires_grad_(), v.requires_grad_()
                flops = attention_flops(b, h, t, d)

                def forward():
                    with torch.no_grad():
                        return F.scaled_dot_product_attention(q, k, v)

                def both():
                    return torch.autograd.grad(F.scaled_dot_product_attention(q, k, v), (q, k, v), dout)

                return {"shape": [b, h, t, d], "fwd": _tflops(flops["fwd"], time_calls(forward, lambda _: sync())),
                        "fwd+bwd": _tflops(flops["fwd+bwd"], time_calls(both, lambda _: sync()))}

            record("attention", f"sdpa T={t}", one)
    if "workloads" in parts:
        for name, overrides, mixed in GPU_WORKLOADS:
            sizes, start = _sizes(name, overrides, tiny), out_dir / "start" / f"{name}.npz"
            record("workloads", name, lambda name=name, sizes=sizes, start=start, mixed=mixed: run(
                name, sizes, start, mixed, channels_last=name in ("cnn", "resnet18")))
    if "lstm" in parts:
        sizes, start = (_sizes("lstm", {}, True) if tiny else LSTM_LARGE), out_dir / "start" / "lstm-large.npz"
        record("lstm", "PyTorch nn.LSTM (cuDNN) f32", lambda: run("lstm", sizes, start, False))
        record("lstm", "PyTorch nn.LSTM (cuDNN) autocast bf16", lambda: run("lstm", sizes, start, True))


def _ms(record: dict | None, key: str | None = None) -> str:
    if record is None:
        return "not run"
    if record["status"] != "ok":
        return f"failed: {record['error'][:120]}"
    if key is None:
        return f"{record['median_ms']:.2f}"
    part = record[key]
    return f"{part['median_ms']:.2f} ({part['tflops']:.0f} TFLOP/s, {part['percent_of_peak']:.0f}%)"


def _ratio(ours: dict | None, theirs: dict | None, key: str | None = None) -> str:
    if not (ours and theirs and ours["status"] == theirs["status"] == "ok"):
        return "n/a"
    value = (ours[key]["median_ms"] / theirs[key]["median_ms"]) if key else ours["median_ms"] / theirs["median_ms"]
    return f"**{value:.2f}**"


def report(records: list[dict], command: str, tiny: bool) -> str:
    """The Markdown report of the GPU set: devices, workloads, LSTM and attention tables."""
    find = {(r["framework"], r["part"], r["label"]): r for r in records}
    devices = [r for r in records if r["part"] == "info" and r["status"] == "ok"]
    lines = ["# GPU benchmark", "", f"Command: `{command}`", ""]
    lines += [f"- {r['framework']}: " + ", ".join(f"{k} {v}" for k, v in r.items()
                                                   if k not in ("status", "framework", "part", "label", "wall_s"))
              for r in devices]
    lines += ["", "## Workloads (training step: forward, backward, Adam)", "",
              "| workload | sizes | precision | medjax ms | PyTorch ms | ratio (≤ 1.0 is the target) "
              "| images/s medjax / PyTorch |",
              "|---|---|---|---|---|---|---|"]
    for name, _, mixed in GPU_WORKLOADS:
        ours, theirs = find.get(("jax", "workloads", name)), find.get(("torch", "workloads", name))
        sizes = (ours or theirs or {}).get("sizes", {})
        images = "–"
        if name in ("cnn", "resnet18") and ours and theirs and ours["status"] == theirs["status"] == "ok":
            images = " / ".join(f"{sizes['batch'] / r['median_ms'] * 1e3:,.0f}" for r in (ours, theirs))
        precision = "bf16 mixed (autocast, channels-last)" if mixed and name in ("cnn", "resnet18") else (
            "bf16 mixed (autocast)" if mixed else "f32 (TF32)")
        lines.append(f"| {name} | {', '.join(f'{k} {v}' for k, v in sizes.items())} | {precision} | {_ms(ours)} | "
                     f"{_ms(theirs)} | {_ratio(ours, theirs)} | {images} |")
    lstm = [r for r in records if r["part"] == "lstm" and r["label"] != "prepare"]
    reference = find.get(("torch", "lstm", "PyTorch nn.LSTM (cuDNN) f32"))
    lines += ["", "## LSTM", "", f"Sizes: {next((r['sizes'] for r in lstm if 'sizes' in r), LSTM_LARGE)}.", "",
              "| variant | ms per training step | / PyTorch cuDNN f32 | first loss |", "|---|---|---|---|"]
    for r in lstm:
        loss = f"{r['first_loss']:.5f}" if r.get("first_loss") is not None else "–"
        lines.append(f"| {r['framework']}: {r['label']} | {_ms(r)} | {_ratio(r, reference)} | {loss} |")
    lines += ["", f"## Attention (bf16, no mask; % of the {PEAK_TFLOPS:.0f} TFLOP/s bf16 peak)", "",
              "| shape [b, h, T, d] | medjax cuDNN fwd | medjax cuDNN fwd+bwd | medjax XLA fwd+bwd | "
              "PyTorch SDPA fwd+bwd | medjax cuDNN / PyTorch (fwd+bwd) |", "|---|---|---|---|---|---|"]
    for b, h, t, d in attention_shapes(tiny):
        cudnn, xla = find.get(("jax", "attention", f"cudnn T={t}")), find.get(("jax", "attention", f"xla T={t}"))
        sdpa = find.get(("torch", "attention", f"sdpa T={t}"))
        lines.append(f"| [{b}, {h}, {t}, {d}] | {_ms(cudnn, 'fwd')} | {_ms(cudnn, 'fwd+bwd')} | "
                     f"{_ms(xla, 'fwd+bwd') if xla else '–'} | {_ms(sdpa, 'fwd+bwd')} | "
                     f"{_ratio(cudnn, sdpa, 'fwd+bwd')} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu", description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiny", action="store_true", help="tiny sizes on CPU: checks every code path in a minute")
    parser.add_argument("--parts", default="attention,workloads,lstm", help="comma-separated parts to run")
    parser.add_argument("--budget", type=float, default=450, help="seconds for everything (default: 450)")
    parser.add_argument("--steps", type=int, default=0, help="timed steps per training step (default: 30; tiny 3)")
    parser.add_argument("--warmup", type=int, default=-1, help="untimed steps after the first (default: 5; tiny 1)")
    parser.add_argument("--out", default=str(REPO_ROOT / "benchmarks" / "out"), help="parent of the run folder")
    parser.add_argument("--worker", choices=("jax", "torch"), help=argparse.SUPPRESS)
    parser.add_argument("--run-dir", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    parts = [p for p in args.parts.split(",") if p]
    unknown = sorted(set(parts) - {"workloads", "lstm", "attention"})
    if unknown:
        parser.error(f"unknown part(s) {unknown}; valid parts: workloads, lstm, attention")
    steps = args.steps or (3 if args.tiny else 30)
    warmup = args.warmup if args.warmup >= 0 else (1 if args.tiny else 5)
    if args.worker:
        worker = jax_worker if args.worker == "jax" else torch_worker
        worker(pathlib.Path(args.run_dir), parts, args.tiny, steps, warmup)
        return 0
    run_dir = pathlib.Path(args.out) / time.strftime("gpu-%Y%m%d-%H%M%S")
    (run_dir / "start").mkdir(parents=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH")) if p)}
    if args.tiny:
        env["JAX_PLATFORMS"] = "cpu"
    command = ["python", "-m", "benchmarks.gpu", *(sys.argv[1:] if argv is None else argv)]
    deadline = time.time() + args.budget
    print(f"GPU set in {run_dir}", flush=True)
    # JAX first: it writes the starts the PyTorch process loads. It gets 60% of the budget (compilation is its cost).
    for framework, share in (("jax", 0.6), ("torch", 1.0)):
        left = (deadline - time.time()) * share
        worker = [sys.executable, "-m", "benchmarks.gpu", "--worker", framework, "--run-dir", str(run_dir),
                  "--parts", args.parts, "--steps", str(steps), "--warmup", str(warmup)] + ["--tiny"] * args.tiny
        try:
            subprocess.run(worker, cwd=REPO_ROOT, env=env, timeout=max(left, 1))
        except subprocess.TimeoutExpired:
            print(f"{framework} worker stopped after {left:.0f} s; its finished measurements are kept", flush=True)
    path = run_dir / "records.jsonl"
    records = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    text = report(records, " ".join(command), args.tiny)
    (run_dir / "report.md").write_text(text)
    for start in (run_dir / "start").glob("*.npz"):
        start.unlink()
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
