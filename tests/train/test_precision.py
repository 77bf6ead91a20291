"""``--precision bf16`` on every model family: each matmul and convolution of the differentiated step computes in
bfloat16, parameters and gradients stay float32, the CRF stays float32, and loss and gradients equal float32's within
bfloat16's rounding."""

import copy
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

from medjax.nn import lstm_kernel
from medjax.nn.conv import TutorialCNN
from medjax.nn.resnet import BasicBlock, ResNet
from medjax.nn.taggers import BiLSTMTagger
from medjax.nn.text_classifiers import TransformerTextClassifier
from medjax.nn.transformer_seq2seq import TransformerSeq2Seq
from medjax.train import loop
from medjax.train.precision import Mixed, policy_of

rng = np.random.default_rng(0)
B, T = 4, 9
IMAGES = (rng.normal(size=(B, 28, 28, 1)).astype(np.float32),)
IDS = rng.integers(1, 40, (B, T)).astype(np.int32)
MASK = np.arange(T)[None, :] < np.array([[9], [7], [5], [3]])

# The tutorial's three families (convolution, LSTM, attention) and what the tasks add to them: batch norm and
# residuals, a CRF, an encoder-decoder with cross-attention. The ECG, treatment and molecule models are built from
# the same layers.
FAMILIES = {
    "tutorial CNN": (TutorialCNN(num_classes=2), IMAGES),
    "ResNet with batch norm": (ResNet(stage_sizes=(1, 1), block=BasicBlock, num_classes=2, width=8), IMAGES),
    "BiLSTM-CRF tagger": (BiLSTMTagger(num_tags=3, vocab_size=40, embed_dim=16, char_features=0, hidden=16, crf=True),
                          (IDS, MASK)),
    "attention text classifier": (TransformerTextClassifier(vocab_size=40, num_classes=3, embed_dim=16, num_heads=2,
                                                            mlp_dim=32), (IDS, MASK)),
    "transformer seq2seq": (TransformerSeq2Seq(vocab=40, width=16, heads=2, layers=1, max_len=16), (IDS, MASK, IDS)),
}


def scalar_of(outputs):
    """A loss-like scalar of every floating output (a CRF's transition scores included)."""
    leaves = [x for x in jax.tree_util.tree_leaves(outputs) if jnp.issubdtype(x.dtype, jnp.floating)]
    return sum(jnp.mean(jnp.sin(x.astype(jnp.float32))) for x in leaves)


SEQ2SEQ = (TransformerSeq2Seq,)  # called without ``train``: the translation task's wrapper takes it


def loss_and_grads(model, variables, inputs):
    """The training-mode forward (dropout, batch statistics) and its gradient, as `medjax.train.steps` takes it."""
    train = {} if isinstance(getattr(model, "model", model), SEQ2SEQ) else {"train": True}

    def loss(params):
        out = model.apply({**variables, "params": params}, *inputs, rngs={"dropout": jax.random.key(1)},
                          mutable=["batch_stats"], **train)[0]
        return scalar_of(out)

    return jax.value_and_grad(loss)


def rounded(tree):
    return jax.tree_util.tree_map(
        lambda x: x.astype(jnp.bfloat16).astype(x.dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x, tree)


def relative_error(a, b):
    a, b = (jnp.concatenate([leaf.ravel() for leaf in jax.tree_util.tree_leaves(t)]) for t in (a, b))
    return float(jnp.linalg.norm(a - b) / jnp.linalg.norm(b))


def matmuls(jaxpr):
    """(primitive, operand dtypes, output shape) of every dot and convolution, in sub-jaxprs too (scan, custom_vjp,
    pjit)."""
    found = []
    for eqn in jaxpr.eqns:
        if eqn.primitive.name in ("dot_general", "conv_general_dilated"):
            found.append((eqn.primitive.name, tuple(str(v.aval.dtype) for v in eqn.invars), eqn.outvars[0].aval.shape))
        for param in eqn.params.values():
            for sub in param if isinstance(param, (list, tuple)) else (param,):
                inner = getattr(sub, "jaxpr", sub)
                if hasattr(inner, "eqns"):
                    found += matmuls(inner)
    return found


@pytest.mark.parametrize("family", FAMILIES)
def test_bf16_computes_every_matmul_in_bfloat16_and_matches_float32(family):
    model, inputs = FAMILIES[family]
    mixed = policy_of("bf16").wrap(model)
    variables = mixed.init({"params": jax.random.key(0), "dropout": jax.random.key(1)}, *inputs)
    params = variables["params"]
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree_util.tree_leaves(params))

    fn = loss_and_grads(mixed, variables, inputs)
    found = matmuls(jax.make_jaxpr(fn)(params).jaxpr)
    # By design in float32: an LSTM's recurrence, which on CPU runs in the C++ kernel (XLA:CPU's bfloat16 loop was
    # 1.9-6.7x slower), so the recurrent weight's gradient, h_{t-1}ᵀ dz, is a float32 [H, 4H] contraction.
    recurrent = [leaf.shape for path, leaf in jax.tree_util.tree_leaves_with_path(params)
                 if getattr(path[-1], "key", None) == "w_h" and lstm_kernel.why_unavailable() is None]
    full = [shape for _, dtypes, shape in found if dtypes != ("bfloat16", "bfloat16")]
    assert found and sorted(full) == sorted(recurrent), found

    full, full_rounded = loss_and_grads(model, variables, inputs), loss_and_grads(model, variables, rounded(inputs))
    # One compilation for the three: bfloat16, float32, and float32 on bfloat16-rounded inputs and parameters.
    (loss16, grads16), (loss32, grads32), (_, grads_rounded) = jax.jit(
        lambda p: (fn(p), full(p), full_rounded(rounded(p))))(params)
    assert loss16.dtype == jnp.float32 and abs(float(loss16 - loss32)) <= 1e-2 * max(1.0, abs(float(loss32)))
    assert all(g.dtype == jnp.float32 for g in jax.tree_util.tree_leaves(grads16))
    # bfloat16 keeps 8 significant bits: measured 0.4-0.9% off float32's gradient. Batch norm over 4 images is
    # ill-conditioned: float32 itself moves 25% when only its inputs and parameters are rounded to bfloat16 (ResNet
    # measured 31%), so the bound is the larger of 2% and twice that sensitivity.
    sensitivity = relative_error(grads_rounded, grads32)
    assert relative_error(grads16, grads32) < max(0.02, 2 * sensitivity), sensitivity


def test_the_crf_and_batch_statistics_stay_float32():
    model, inputs = FAMILIES["BiLSTM-CRF tagger"]
    mixed = policy_of("bf16").wrap(model)
    variables = mixed.init(jax.random.key(0), *inputs)
    crf = {name: jax.random.normal(jax.random.key(i), x.shape) for i, (name, x) in
           enumerate(variables["params"]["crf"].items())}
    variables = {"params": {**variables["params"], "crf": crf}}
    out = mixed.apply(variables, *inputs)
    # The CRF's scores leave the model exactly as stored: never rounded through bfloat16.
    jax.tree_util.tree_map(np.testing.assert_array_equal, out["crf"], {k: crf[k] for k in out["crf"]})
    assert not np.array_equal(np.asarray(crf["transitions"]),
                              np.asarray(crf["transitions"].astype(jnp.bfloat16).astype(jnp.float32)))

    model, inputs = FAMILIES["ResNet with batch norm"]
    mixed = policy_of("bf16").wrap(model)
    variables = mixed.init(jax.random.key(0), *inputs)
    _, mutated = mixed.apply(variables, *inputs, train=True, mutable=["batch_stats"])
    assert {leaf.dtype for leaf in jax.tree_util.tree_leaves(mutated)} == {jnp.dtype(jnp.float32)}


def test_fp32_is_the_model_itself_and_equal_policies_hash_equal():
    model = TutorialCNN(num_classes=2)
    assert policy_of("fp32").wrap(model) is model
    a, b = policy_of("bf16").wrap(model), policy_of("bf16").wrap(TutorialCNN(num_classes=2))
    assert isinstance(a, Mixed) and a == b and hash(a) == hash(b)
    assert copy.deepcopy(a) == a and a.num_classes == 2  # other attributes are the model's


@pytest.mark.filterwarnings("ignore:Sharding info not provided")
def test_a_bf16_run_keeps_float32_state_resumes_exactly_and_evaluates_to_its_results(tiny_task, tiny_config, tmp_path):
    task = tiny_task(batch_norm=True, dropout=0.2)
    task = dataclasses.replace(task, model=policy_of("bf16").wrap(task.model))

    def config(name):
        return tiny_config(tmp_path / name, precision="bf16", num_devices=1)

    whole = loop.train(task, config("whole"), "blobs")
    assert loop.train(task, config("cut"), "blobs", stop_after_epoch=1) is None
    resumed = loop.train(task, config("cut"), "blobs")
    assert {k: v for k, v in resumed.items() if k != "wall_seconds"} == {
        k: v for k, v in whole.items() if k != "wall_seconds"}
    saved = {run: {item: ocp.PyTreeCheckpointer().restore(
        (tmp_path / run / "checkpoints" / "latest" / "3" / item).absolute()) for item in ("model", "train")}
        for run in ("whole", "cut")}
    jax.tree_util.tree_map(np.testing.assert_array_equal, saved["cut"], saved["whole"])
    floating = [np.asarray(x).dtype for x in jax.tree_util.tree_leaves(saved["whole"])
                if jnp.issubdtype(np.asarray(x).dtype, jnp.floating)]
    # Parameters, batch statistics and both Adam moments: float32 only.
    assert floating and set(floating) == {np.dtype(np.float32)}
    again = loop.evaluate(task, config("whole"))
    assert again == {"best_epoch": whole["best_epoch"], **{k: v for k, v in whole.items() if k.startswith("test_")}}


def test_attention_receives_bfloat16_heads_that_cudnn_would_take(monkeypatch):
    from medjax.nn import attention_kernels, multihead

    seen = []

    def recording(q, k, v, mask=None, **kwargs):
        seen.append((q, k, v, mask))
        return attention_kernels.dot_product_attention(q, k, v, mask, **kwargs)

    monkeypatch.setattr(multihead, "dot_product_attention", recording)
    model = policy_of("bf16").wrap(TransformerTextClassifier(vocab_size=40, num_classes=3, embed_dim=32, num_heads=2,
                                                             mlp_dim=32))
    ids, mask = IDS[:, :8], MASK[:, :8]
    variables = jax.eval_shape(model.init, jax.random.key(0), ids, mask)
    jax.eval_shape(model.apply, variables, ids, mask)
    q, k, v, head_mask = seen[-1]
    assert {q.dtype, k.dtype, v.dtype} == {jnp.dtype(jnp.bfloat16)}
    # The dispatcher's choice on an H100 for these heads: cuDNN's flash attention (float32 heads would be refused).
    assert attention_kernels.choose_implementation(q, k, v, head_mask, platform="gpu", capability="9.0") == "cudnn"
