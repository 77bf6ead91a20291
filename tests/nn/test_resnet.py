"""ResNet-18/50 (MedMNIST "(28)" form) against a PyTorch twin of MedMNIST's reference model, with copied weights.

The twin follows ``MedMNIST/experiments`` ``MedMNIST2D/models.py`` (3×3 stride-1 stem, no max-pool, projection
shortcuts as 1×1 conv + BN). Compared: parameter structure and counts, eval-mode logits (running statistics),
train-mode logits (batch statistics) and the updated running averages, and for a small bottleneck network the
gradients. Flax keeps the biased batch variance in its running average where PyTorch keeps the unbiased one, so the
expected running variance is converted with the n/(n − 1) factor (n = batch × height × width of the layer's input).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from medjax.nn.resnet import BasicBlock, Bottleneck, ResNet, ResNet18, ResNet50

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.torch
F = torch.nn.functional


class TorchBasicBlock(torch.nn.Module):
    expansion = 1

    def __init__(self, cin, planes, stride):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(cin, planes, 3, stride, 1, bias=False)
        self.bn1 = torch.nn.BatchNorm2d(planes)
        self.conv2 = torch.nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = torch.nn.BatchNorm2d(planes)
        self.shortcut = _torch_shortcut(cin, planes, stride)

    def forward(self, x):
        y = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu(y + self.shortcut(x))


class TorchBottleneck(torch.nn.Module):
    expansion = 4

    def __init__(self, cin, planes, stride):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(cin, planes, 1, bias=False)
        self.bn1 = torch.nn.BatchNorm2d(planes)
        self.conv2 = torch.nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = torch.nn.BatchNorm2d(planes)
        self.conv3 = torch.nn.Conv2d(planes, 4 * planes, 1, bias=False)
        self.bn3 = torch.nn.BatchNorm2d(4 * planes)
        self.shortcut = _torch_shortcut(cin, 4 * planes, stride)

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = F.relu(self.bn2(self.conv2(y)))
        return F.relu(self.bn3(self.conv3(y)) + self.shortcut(x))


def _torch_shortcut(cin, cout, stride):
    if stride == 1 and cin == cout:
        return torch.nn.Sequential()
    return torch.nn.Sequential(torch.nn.Conv2d(cin, cout, 1, stride, bias=False), torch.nn.BatchNorm2d(cout))


class TorchResNet(torch.nn.Module):
    def __init__(self, block, stage_sizes, in_channels, num_classes, width=64):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(in_channels, width, 3, 1, 1, bias=False)
        self.bn1 = torch.nn.BatchNorm2d(width)
        cin, stages = width, []
        for stage, num_blocks in enumerate(stage_sizes):
            blocks = []
            for index in range(num_blocks):
                blocks.append(block(cin, width * 2**stage, 2 if stage > 0 and index == 0 else 1))
                cin = width * 2**stage * block.expansion
            stages.append(torch.nn.Sequential(*blocks))
        self.layers = torch.nn.ModuleList(stages)
        self.linear = torch.nn.Linear(cin, num_classes)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        for layer in self.layers:
            x = layer(x)
        return self.linear(x.mean(dim=(2, 3)))


def _flax_path(torch_name):
    """'layers.1.0.shortcut.1.running_var' -> ('batch_stats', 'layer2_0', 'shortcut_bn', 'var')."""
    parts = torch_name.split(".")
    path = []
    if parts[0] == "layers":
        path.append(f"layer{int(parts[1]) + 1}_{parts[2]}")
        parts = parts[3:]
    if parts[0] == "shortcut":
        parts = [("shortcut_conv" if parts[1] == "0" else "shortcut_bn"), *parts[2:]]
    module, leaf = parts
    is_bn = module.startswith("bn") or module == "shortcut_bn"
    if leaf in ("running_mean", "running_var"):
        return ("batch_stats", *path, module, {"running_mean": "mean", "running_var": "var"}[leaf])
    if is_bn:
        return ("params", *path, module, {"weight": "scale", "bias": "bias"}[leaf])
    return ("params", *path, module, {"weight": "kernel", "bias": "bias"}[leaf])


def _to_flax(tensors):
    """PyTorch state (parameters, gradients or buffers) by name -> a Flax variables tree; OIHW -> HWIO, Linear ᵀ."""
    tree = {}
    for name, value in tensors.items():
        if name.endswith("num_batches_tracked"):
            continue
        value = value.detach().numpy().copy()  # .numpy() shares memory, and PyTorch updates buffers in place
        path = _flax_path(name)
        if value.ndim == 4:
            value = value.transpose(2, 3, 1, 0)
        elif value.ndim == 2:
            value = value.T
        node = tree
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = value
    return tree


def _randomise_batch_norm(model, seed):
    # Non-trivial running statistics and affine parameters, so eval mode differs from train mode and from identity.
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                n = module.num_features
                module.running_mean.copy_(0.2 * torch.randn(n, generator=generator))
                module.running_var.copy_(0.5 + torch.rand(n, generator=generator))
                module.weight.copy_(1 + 0.2 * torch.randn(n, generator=generator))
                module.bias.copy_(0.2 * torch.randn(n, generator=generator))


def _assert_close(actual, reference, tol=1e-4):
    actual, reference = np.asarray(actual), np.asarray(reference)
    assert actual.shape == reference.shape
    scale = max(1.0, float(np.abs(reference).max()))
    error = float(np.abs(actual - reference).max())
    assert error <= tol * scale, f"max abs error {error:.3g} > {tol:g} × {scale:.3g}"


def _assert_tree_close(actual, reference, tol=1e-4):
    assert jax.tree.structure(actual) == jax.tree.structure(reference)
    for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(actual), jax.tree.leaves(reference)):
        try:
            _assert_close(a, b, tol)
        except AssertionError as error:
            raise AssertionError(f"{jax.tree_util.keystr(path)}: {error}") from None


def _pair(model_fn, torch_block, stage_sizes, channels, num_classes, width, seed):
    torch.manual_seed(seed)
    reference = TorchResNet(torch_block, stage_sizes, channels, num_classes, width)
    _randomise_batch_norm(reference, seed)
    model = model_fn(num_classes=num_classes, width=width)
    variables = _to_flax(reference.state_dict())
    shapes = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 28, 28, channels)))
    assert jax.tree.map(jnp.shape, shapes) == jax.tree.map(np.shape, variables)
    return reference, model, variables


def _torch_train_step(reference, x):
    """Train-mode forward; returns logits and, per BN layer, the element count n its batch statistics used."""
    counts = {}
    hooks = [
        module.register_forward_hook(
            lambda m, inputs, _, name=name: counts.__setitem__(name, inputs[0].numel() // inputs[0].shape[1])
        )
        for name, module in reference.named_modules()
        if isinstance(module, torch.nn.BatchNorm2d)
    ]
    old = {name: b.clone() for name, b in reference.named_buffers()}
    reference.train()
    logits = reference(torch.from_numpy(x).permute(0, 3, 1, 2))
    for hook in hooks:
        hook.remove()
    # PyTorch: new = 0.9 old + 0.1 · unbiased. Flax: 0.9 old + 0.1 · biased = 0.9 old + 0.1 · unbiased · (n−1)/n.
    expected = {}
    for name, new in reference.named_buffers():
        if name.endswith("running_var"):
            n = counts[name.rsplit(".", 1)[0]]
            new = 0.9 * old[name] + (new - 0.9 * old[name]) * (n - 1) / n
        expected[name] = new
    return logits, _to_flax(expected)["batch_stats"]


def test_resnet18_equals_torch_eval_and_train_mode_and_at_64px():
    reference, model, variables = _pair(ResNet18, TorchBasicBlock, (2, 2, 2, 2), 3, 7, 64, seed=0)
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(4, 28, 28, 3)).astype(np.float32)

    reference.eval()
    with torch.no_grad():
        _assert_close(jax.jit(model.apply)(variables, x), reference(torch.from_numpy(x).permute(0, 3, 1, 2)).numpy())
        x64 = rng.uniform(size=(2, 64, 64, 3)).astype(np.float32)  # MedMNIST+ size, same parameters
        logits_64 = reference(torch.from_numpy(x64).permute(0, 3, 1, 2)).numpy()
        _assert_close(jax.jit(model.apply)(variables, x64), logits_64)

        train_apply = jax.jit(lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats"]))
        logits, updates = train_apply(variables, x)
        logits_torch, expected_stats = _torch_train_step(reference, x)
    _assert_close(logits, logits_torch.numpy())
    _assert_tree_close(updates["batch_stats"], expected_stats)
    # The statistics did move: a no-op update would also "match" if nothing were compared.
    assert np.abs(updates["batch_stats"]["bn1"]["mean"] - variables["batch_stats"]["bn1"]["mean"]).max() > 1e-3


def test_bottleneck_network_equals_torch_train_mode_with_gradients():
    reference, model, variables = _pair(
        lambda **kw: ResNet(stage_sizes=(1, 2, 1, 1), block=Bottleneck, **kw), TorchBottleneck, (1, 2, 1, 1), 1, 3,
        8, seed=1,
    )
    rng = np.random.default_rng(1)
    x = rng.normal(size=(3, 20, 20, 1)).astype(np.float32)
    labels = np.array([0, 2, 1])

    def loss(params):
        logits, updates = model.apply(
            {"params": params, "batch_stats": variables["batch_stats"]}, x, train=True, mutable=["batch_stats"]
        )
        log_p = jax.nn.log_softmax(logits)
        return -jnp.mean(jnp.take_along_axis(log_p, jnp.asarray(labels)[:, None], axis=1)), (logits, updates)

    grads, (logits, updates) = jax.jit(jax.grad(loss, has_aux=True))(variables["params"])

    logits_torch, expected_stats = _torch_train_step(reference, x)
    F.cross_entropy(logits_torch, torch.from_numpy(labels)).backward()
    _assert_close(logits, logits_torch.detach().numpy())
    _assert_tree_close(updates["batch_stats"], expected_stats)
    torch_grads = _to_flax({name: p.grad for name, p in reference.named_parameters()})["params"]
    _assert_tree_close(grads, torch_grads)


@pytest.mark.parametrize("model_fn, torch_block, stage_sizes", [
    (ResNet18, TorchBasicBlock, (2, 2, 2, 2)),
    (ResNet50, TorchBottleneck, (3, 4, 6, 3)),
])
@pytest.mark.parametrize("channels, num_classes", [(1, 2), (3, 9)])
def test_parameter_counts_equal_torch(model_fn, torch_block, stage_sizes, channels, num_classes):
    reference = TorchResNet(torch_block, stage_sizes, channels, num_classes)
    shapes = jax.eval_shape(model_fn(num_classes=num_classes).init, jax.random.key(0), jnp.zeros((1, 28, 28, channels)))
    count = sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(shapes["params"]))
    assert count == sum(p.numel() for p in reference.parameters())
    stats = sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(shapes["batch_stats"]))
    assert stats == sum(b.numel() for name, b in reference.named_buffers() if "running" in name)
    if (model_fn, channels, num_classes) == (ResNet18, 3, 9):
        assert count == 11_173_962 - 513  # the known 10-class count (kuangliu/pytorch-cifar) less one head row


def test_blocks_downsample_and_expand():
    x = jnp.zeros((2, 7, 7, 16))
    for block, expected in [(BasicBlock(32, stride=2), (2, 4, 4, 32)), (Bottleneck(8, stride=2), (2, 4, 4, 32))]:
        variables = jax.eval_shape(block.init, jax.random.key(0), x)
        assert jax.eval_shape(block.apply, variables, x).shape == expected
        assert "shortcut_conv" in variables["params"]
    identity = jax.eval_shape(BasicBlock(16).init, jax.random.key(0), x)
    assert "shortcut_conv" not in identity["params"]


def test_bad_inputs():
    model = ResNet18(num_classes=2, width=4)
    variables = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 28, 28, 1)))
    with pytest.raises(TypeError, match=r"images: expected float array .* got uint8 array .* Scale integer pixels"):
        jax.eval_shape(model.apply, variables, np.zeros((2, 28, 28, 1), np.uint8))
    with pytest.raises(ValueError, match=r"images: expected float array of rank 4 \[batch, height, width, channels\]"):
        jax.eval_shape(model.apply, variables, np.zeros((2, 28, 28), np.float32))
    with pytest.raises(ValueError, match=r"conv1 input: .* shape \(\*, \*, \*, 1\) .* got float32 array of shape "
                       r"\(2, 28, 28, 3\)\. The parameters were initialised for 1 input channels"):
        jax.eval_shape(model.apply, variables, np.zeros((2, 28, 28, 3), np.float32))
