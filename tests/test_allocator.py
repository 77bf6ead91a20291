"""glibc's allocator settings made on import: the exact mallopt calls, when they are not made, and their effect on
XLA:CPU's page faults in a fresh process."""

import os
import subprocess
import sys

import pytest

from medjax import allocator


class FakeLibc:
    def __init__(self):
        self.calls = []

    def mallopt(self, parameter, value):
        self.calls.append((parameter.value, value.value))
        return 1


def test_the_three_settings_as_c_ints(monkeypatch):
    monkeypatch.setattr(allocator, "_backend_running", lambda: False)
    libc = FakeLibc()
    assert allocator.apply({}, libc) is True
    assert libc.calls == [(-8, 1), (-3, 2**31 - 1), (-1, 2**31 - 1)]


@pytest.mark.parametrize("environ", [{"MEDJAX_MALLOC_DEFAULTS": "0"}, {"MALLOC_ARENA_MAX": "4"},
                                     {"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"}])
def test_never_over_the_users_own_settings(environ, monkeypatch):
    monkeypatch.setattr(allocator, "_backend_running", lambda: False)
    libc = FakeLibc()
    assert allocator.apply(environ, libc) is False and libc.calls == []


def test_a_running_backend_is_left_alone_with_the_fix_said_once(monkeypatch, capsys):
    monkeypatch.setattr(allocator, "_backend_running", lambda: True)
    libc = FakeLibc()
    assert allocator.apply({}, libc) is False and libc.calls == []
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "import medjax first" in err and "MALLOC_ARENA_MAX=1" in err


FAULTS = """
import resource
import medjax, jax, jax.numpy as jnp
from medjax.nn.conv import TutorialCNN
# The tutorial CNN's gradient at batch 256: XLA's per-execution scratch block is large enough that glibc mmaps it
# afresh every time unless the settings are in force. (A pair of 2048² matmuls, used before, did not always fault.)
model, x = TutorialCNN(num_classes=2), jnp.ones((256, 28, 28, 1))
variables = model.init(jax.random.key(0), x)
f = jax.jit(jax.grad(lambda v, x: model.apply(v, x).sum()))
jax.block_until_ready(f(variables, x))
faults = []
for _ in range(9):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    jax.block_until_ready(f(variables, x))
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(medjax.ALLOCATOR_DEFAULTS, *faults)
"""


@pytest.mark.skipif(allocator._glibc() is None, reason="glibc only")
def test_the_settings_remove_the_page_faults_of_each_execution():
    def faults(**extra):
        env = {k: v for k, v in os.environ.items() if k not in allocator.USER_VARIABLES and k != "XLA_FLAGS"}
        out = subprocess.run([sys.executable, "-c", FAULTS], env={**env, "JAX_PLATFORMS": "cpu", **extra},
                             capture_output=True, text=True, check=True).stdout.split()
        return out[0], sorted(int(n) for n in out[1:])

    (set_, with_defaults), (unset, without) = faults(), faults(MEDJAX_MALLOC_DEFAULTS="0")
    assert (set_, unset) == ("True", "False")
    # Without the settings every call maps its scratch afresh: ~28,400 faults each on a 2-core AMD EPYC. With them the
    # typical call has none. The heap may still grow by one scratch block (~28,400 faults) once or twice in a
    # process's life, when threads free in an order that leaves no free chunk large enough (seen with another JAX
    # process on the cores: `brk` between calls, then none again), so the median call is what is held to zero.
    assert without[0] > 5000, without
    assert with_defaults[len(with_defaults) // 2] < 50, with_defaults
