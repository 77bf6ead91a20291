"""The tutorial's recurrent networks: the LSTM and plain RNN equations as pure `jnp` functions, thin Linen wrappers.

The LSTM equations, with PyTorch's gate order (i, f, g, o) in the columns of one fused weight matrix:

    i_t = σ(x_t W_xi + h_{t-1} W_hi + b_i)        f_t = σ(x_t W_xf + h_{t-1} W_hf + b_f)
    g_t = tanh(x_t W_xg + h_{t-1} W_hg + b_g)     o_t = σ(x_t W_xo + h_{t-1} W_ho + b_o)
    c_t = f_t ⊙ c_{t-1} + i_t ⊙ g_t               h_t = o_t ⊙ tanh(c_t)

Parameters of one LSTM layer are ``{"w_x": f32[in, 4H], "w_h": f32[H, 4H], "b": f32[4H]}``. From a PyTorch
``nn.LSTM``: ``w_x = weight_ih_l0.T``, ``w_h = weight_hh_l0.T``, ``b = bias_ih_l0 + bias_hh_l0``.

Example:
  >>> model = TutorialLSTMClassifier()
  >>> x = jnp.zeros((64, 50, 10))                      # f32[batch, time, features]
  >>> variables = model.init(jax.random.key(0), x)
  >>> model.apply(variables, x).shape
  (64, 2)
"""

from __future__ import annotations

from typing import Any, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from medjax.nn import lstm_fast, lstm_kernel
from medjax.nn.checks import check_array

Params = Mapping[str, jax.Array]
IMPLEMENTATIONS = ("auto", "ffi", "custom_vjp", "scan")


def _bias(b: jax.Array, ndim: int) -> jax.Array:
    """b reshaped to broadcast against an array of rank ``ndim`` (rank promotion is an error in medjax's tests)."""
    return b.reshape((1,) * (ndim - 1) + b.shape)


def lstm_cell(params: Params, carry: tuple[jax.Array, jax.Array], x: jax.Array):
    """One LSTM step, exactly the tutorial's equations.

    Args:
      params: ``{"w_x": f32[in, 4H], "w_h": f32[H, 4H], "b": f32[4H]}``.
      carry: ``(c, h)``, each f32[..., H].
      x: f32[..., in].

    Returns:
      ``((c, h), h)``: the new carry and the output, shaped for `lax.scan`.
    """
    c, h = carry
    z = x @ params["w_x"] + h @ params["w_h"]
    z_i, z_f, z_g, z_o = jnp.split(z + _bias(params["b"], z.ndim), 4, axis=-1)
    i, f, g, o = jax.nn.sigmoid(z_i), jax.nn.sigmoid(z_f), jnp.tanh(z_g), jax.nn.sigmoid(z_o)
    c = f * c + i * g
    h = o * jnp.tanh(c)
    return (c, h), h


def rnn_cell(params: Params, h: jax.Array, x: jax.Array, activation=jnp.tanh):
    """One plain RNN step: h_t = activation(h_{t-1} W_h + x_t W_x + b).

    Args:
      params: ``{"w_x": f32[in, H], "w_h": f32[H, H], "b": f32[H]}``.
      h: f32[..., H], the previous hidden state.
      x: f32[..., in].
      activation: the nonlinearity f (tanh, as in PyTorch's ``nn.RNN``).

    Returns:
      ``(h, h)``: the new hidden state as carry and output, shaped for `lax.scan` like `lstm_cell`.
    """
    z = h @ params["w_h"] + x @ params["w_x"]
    h = activation(z + _bias(params["b"], z.ndim))
    return h, h


def _check_mask(mask: jax.Array, batch: int, time: int) -> None:
    check_array(mask, "mask", dims=("batch", "time"), shape=(batch, time), dtype_kind="b", hint="True on valid steps")


def _check_sequences(x: jax.Array, mask, implementation: str) -> None:
    """The checks `lstm_layer` and `LSTM` share; they raise at trace time, from static shapes."""
    check_array(x, "x", dims=("batch", "time", "features"))
    batch, time, _ = x.shape
    if time == 0:
        raise ValueError(f"x must have at least one time step; got shape {x.shape}")
    if mask is not None:
        _check_mask(mask, batch, time)
    if implementation not in IMPLEMENTATIONS:
        raise ValueError(f"implementation must be one of {IMPLEMENTATIONS}; got {implementation!r}")


def _check_lstm_layer(params: Params, x: jax.Array, mask, initial_carry, implementation: str) -> None:
    missing = {"w_x", "w_h", "b"} - set(params)
    if missing:
        raise ValueError(f"LSTM params need keys 'w_x', 'w_h', 'b'; missing {sorted(missing)} in {sorted(params)}")
    _check_sequences(x, mask, implementation)
    batch, _, features = x.shape
    check_array(params["w_h"], "params['w_h']", dims=("hidden", "4 * hidden"))
    hidden = params["w_h"].shape[0]
    why = f"For x with {features} features and hidden size {hidden} (the rows of w_h)"
    check_array(params["w_h"], "params['w_h']", shape=(hidden, 4 * hidden), hint=why)
    check_array(params["w_x"], "params['w_x']", shape=(features, 4 * hidden), hint=why)
    check_array(params["b"], "params['b']", shape=(4 * hidden,), hint=why)
    if initial_carry is not None:
        if not isinstance(initial_carry, (tuple, list)) or len(initial_carry) != 2:
            raise ValueError(f"initial_carry must be a pair (c, h); got {type(initial_carry).__name__}")
        for name, part in zip(("c", "h"), initial_carry):
            check_array(part, f"initial_carry {name}", dims=("batch", "hidden"), shape=(batch, hidden))


def _scan_cell(params: Params, carry, xs: jax.Array, mask: jax.Array | None, reverse: bool):
    """`lax.scan` of `lstm_cell` over time-major ``xs: f32[time, batch, features]``, ``mask: bool[time, batch]``."""

    def step(carry, inputs):
        x_t, valid = inputs
        new_carry, _ = lstm_cell(params, carry, x_t)
        if valid is not None:
            # Past a sequence's end the carry freezes, so the final carry is the last valid step's.
            new_carry = tuple(jnp.where(valid[:, None], new, old) for new, old in zip(new_carry, carry))
        return new_carry, new_carry[1]

    return lax.scan(step, carry, (xs, mask), reverse=reverse)


# Layers the C++ loop takes: float32, and bfloat16 (``--precision bf16``) whose recurrence it runs in float32: XLA:CPU's
# bfloat16 loop was 6.7x slower than the kernel on the tutorial LSTM, 1.9x on the NER BiLSTM, on an AMD EPYC with
# AVX512-BF16 (benchmarks/RESULTS.md, "bf16 against fp32 on CPU"); the input projection stays a bfloat16 matmul.
_FFI_DTYPES = (jnp.float32, jnp.bfloat16)


def _ffi_refusal(dtype, platform: str | None = None) -> str | None:
    """Why the C++ loop cannot run this layer, or None: it runs float32 (and bfloat16 layers, upcast) on CPU, when
    it is built."""
    backend = platform or jax.default_backend()
    if backend != "cpu":
        return f"it runs on CPU only, and the default backend is {backend}"
    if jnp.dtype(dtype) not in _FFI_DTYPES:
        return f"it runs float32 (and bfloat16 layers in float32) only, got {jnp.dtype(dtype)}"
    return lstm_kernel.why_unavailable()


def choose_implementation(dtype, platform: str | None = None) -> str:
    """The kernel ``implementation="auto"`` runs: the C++ loop (`medjax.nn.lstm_kernel`) for float32 and bfloat16 on
    CPU when it is built, else the XLA loop with the hand-written backward (`medjax.nn.lstm_fast`).

    Chosen at trace time from the default backend, as `jax.jit` places the computation there.
    """
    why = _ffi_refusal(dtype, platform)
    if why is None:
        return "ffi"
    if why == lstm_kernel.why_unavailable():  # a CPU layer that the kernel would have run, had it been built
        lstm_kernel.say_fallback()
    return "custom_vjp"


def _lstm_layer(params: Params, x: jax.Array, mask, initial_carry, reverse: bool, implementation: str):
    """`lstm_layer` without its input checks, for callers that checked their inputs once (`LSTM`)."""
    batch, hidden = x.shape[0], params["w_h"].shape[0]
    dtype = jnp.result_type(x.dtype, *(params[name].dtype for name in ("w_x", "w_h", "b")))
    if initial_carry is None:
        initial_carry = (jnp.zeros((batch, hidden), dtype), jnp.zeros((batch, hidden), dtype))
    dtype = jnp.result_type(dtype, *initial_carry)
    if implementation == "auto":
        implementation = choose_implementation(dtype)
    elif implementation == "ffi" and (why := _ffi_refusal(dtype)):
        raise ValueError(f"implementation='ffi' cannot run: {why}")
    # Time-major inside: the loop slices whole [batch, ...] blocks per step.
    xs = jnp.swapaxes(x, 0, 1)
    mask_t = None if mask is None else mask.T
    if implementation == "scan":
        carry, hs = _scan_cell(params, tuple(initial_carry), xs, mask_t, reverse)
    else:
        # The fast kernel takes the input projection for all steps at once, outside its loop. Transposing x (F wide)
        # before the projection, rather than its 4H-wide result, made the tutorial LSTM ~15% faster on XLA CPU.
        # As one 2-D matmul over all (step, row) pairs: its weight gradient is then a plain [T·B, F]ᵀ [T·B, 4H]
        # contraction, where the 3-D form made XLA:CPU transpose dz and run a slow dot (benchmarks/RESULTS.md,
        # LSTM cost growth).
        time, batch, features = xs.shape
        xw = (xs.reshape(time * batch, features) @ params["w_x"]).reshape(time, batch, -1) + _bias(params["b"], 3)
        kernel = lstm_kernel if implementation == "ffi" else lstm_fast
        # The C++ loop computes in float32: a bfloat16 layer's recurrence goes in and out cast (no-ops otherwise).
        compute = jnp.float32 if implementation == "ffi" else dtype
        c0, h0 = (a.astype(compute) for a in initial_carry)
        hs, carry = kernel.lstm_recurrence(xw.astype(compute), params["w_h"].astype(compute), mask_t, c0, h0, reverse)
        hs, carry = hs.astype(dtype), tuple(a.astype(dtype) for a in carry)
    if mask_t is not None:
        hs = jnp.where(mask_t[:, :, None], hs, 0)
    return hs.transpose(1, 0, 2), carry


def lstm_layer(
    params: Params,
    x: jax.Array,
    mask: jax.Array | None = None,
    initial_carry: tuple[jax.Array, jax.Array] | None = None,
    reverse: bool = False,
    implementation: str = "auto",
):
    """One LSTM layer over a batch of sequences.

    Args:
      params: ``{"w_x": f32[features, 4H], "w_h": f32[H, 4H], "b": f32[4H]}``.
      x: f32[batch, time, features].
      mask: bool[batch, time], True on valid steps, or None (all valid). Past a sequence's end the carry is held, so
        ``reverse=True`` starts each sequence at its own last valid step, as PyTorch's packed sequences do.
      initial_carry: ``(c, h)``, each f32[batch, H]; zeros if None.
      reverse: run from the last step to the first (the backward half of a bidirectional layer).
      implementation: ``"scan"`` is `lax.scan` of `lstm_cell` itself, differentiated by JAX (also forward-mode);
        ``"custom_vjp"`` is the XLA loop of `medjax.nn.lstm_fast` and ``"ffi"`` the C++ loop of
        `medjax.nn.lstm_kernel` (float32 on CPU), both with a hand-written backward (reverse-mode only) and tested
        equal to ``"scan"``; ``"auto"`` chooses between them (`choose_implementation`).

    Returns:
      ``(outputs, (c, h))``: outputs f32[batch, time, H], zero on padded steps; the final carry, each f32[batch, H].
    """
    _check_lstm_layer(params, x, mask, initial_carry, implementation)
    return _lstm_layer(params, x, mask, initial_carry, reverse, implementation)


def _last_valid(outputs: jax.Array, mask: jax.Array | None) -> jax.Array:
    if mask is None:
        return outputs[:, -1]
    # argmax finds the first True of the reversed mask, so masks with holes also read their last True step.
    index = outputs.shape[1] - 1 - jnp.argmax(mask[:, ::-1], axis=1)
    return jnp.take_along_axis(outputs, index[:, None, None], axis=1)[:, 0]


def last_valid(outputs: jax.Array, mask: jax.Array | None = None) -> jax.Array:
    """The output at the last valid step of each sequence.

    Args:
      outputs: f32[batch, time, H].
      mask: bool[batch, time], True on valid steps, or None (the last step of every sequence).

    Returns:
      f32[batch, H]. A sequence with no valid step reads its last position.
    """
    check_array(outputs, "outputs", dims=("batch", "time", "hidden"))
    if mask is not None:
        _check_mask(mask, *outputs.shape[:2])
    return _last_valid(outputs, mask)


def init_lstm_params(key: jax.Array, in_features: int, hidden: int, dtype: Any = jnp.float32) -> dict:
    """PyTorch's LSTM initialisation: every weight and bias from U(−1/√H, 1/√H)."""
    bound = hidden**-0.5
    shapes = {"w_x": (in_features, 4 * hidden), "w_h": (hidden, 4 * hidden), "b": (4 * hidden,)}
    keys = jax.random.split(key, len(shapes))
    return {
        name: jax.random.uniform(k, shape, dtype, -bound, bound) for k, (name, shape) in zip(keys, shapes.items())
    }


class LSTM(nn.Module):
    """A stacked, optionally bidirectional LSTM, like PyTorch's ``nn.LSTM(batch_first=True)``.

    Parameters are named as PyTorch names its layers: ``layer_0``, ``layer_0_reverse``, ``layer_1``, ... each holding
    the ``{"w_x", "w_h", "b"}`` dict of `lstm_layer`. Dropout (rng ``"dropout"``) acts on the outputs of every layer
    but the last, when ``train=True``.

    Attributes:
      hidden: H, the hidden size of each direction.
      num_layers: stacked layers; layer k > 0 reads the (concatenated) outputs of layer k − 1.
      bidirectional: add a reversed layer at every level and concatenate both outputs (2H features).
      dropout: dropout rate between layers.
      implementation: see `lstm_layer`.
    """

    hidden: int
    num_layers: int = 1
    bidirectional: bool = False
    dropout: float = 0.0
    implementation: str = "auto"

    @nn.compact
    def __call__(self, x, mask=None, initial_carry=None, train: bool = False):
        """Runs the stack.

        Args:
          x: f32[batch, time, features].
          mask: bool[batch, time], True on valid steps, or None.
          initial_carry: ``(c0, h0)``, each f32[num_layers * directions, batch, H] in PyTorch's order (layer-major,
            forward before reverse), or None for zeros.
          train: apply dropout between layers.

        Returns:
          ``(outputs, (c_n, h_n))``: outputs f32[batch, time, directions * H], zero on padded steps; the final carries,
          each f32[num_layers * directions, batch, H], in the same order as ``initial_carry``.
        """
        _check_sequences(x, mask, self.implementation)
        suffixes = ("", "_reverse") if self.bidirectional else ("",)
        if initial_carry is not None:
            expected = (self.num_layers * len(suffixes), x.shape[0], self.hidden)
            for name, part in zip(("c0", "h0"), initial_carry):
                dims = ("layers * directions", "batch", "hidden")
                check_array(part, f"initial_carry {name}", dims=dims, shape=expected)
        finals_c, finals_h = [], []
        for layer in range(self.num_layers):
            if layer > 0 and self.dropout > 0:
                x = nn.Dropout(self.dropout)(x, deterministic=not train)
            outputs = []
            for direction, suffix in enumerate(suffixes):
                params = self.param(f"layer_{layer}{suffix}", init_lstm_params, x.shape[-1], self.hidden)
                index = layer * len(suffixes) + direction
                carry = None if initial_carry is None else (initial_carry[0][index], initial_carry[1][index])
                out, (c, h) = _lstm_layer(params, x, mask, carry, bool(direction), self.implementation)
                outputs.append(out)
                finals_c.append(c)
                finals_h.append(h)
            x = jnp.concatenate(outputs, axis=-1)
        return x, (jnp.stack(finals_c), jnp.stack(finals_h))


class TutorialLSTMClassifier(nn.Module):
    """The tutorial's sequence classifier made right: an LSTM stack, then a linear head on the last *valid* step.

    Attributes:
      hidden: H of each LSTM layer (tutorial: 32).
      num_layers: stacked LSTM layers (tutorial: 2).
      num_classes: logits per sequence (tutorial: 2).
    """

    hidden: int = 32
    num_layers: int = 2
    num_classes: int = 2

    @nn.compact
    def __call__(self, x, mask=None, train: bool = False):
        """x: f32[batch, time, features]; mask: bool[batch, time] or None. Returns logits f32[batch, num_classes]."""
        outputs, _ = LSTM(self.hidden, self.num_layers, name="lstm")(x, mask, train=train)  # checks x and mask
        return nn.Dense(self.num_classes, name="head")(_last_valid(outputs, mask))
