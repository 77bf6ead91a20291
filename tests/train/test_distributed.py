"""Multi-host start-up: a no-op on one machine; the right call when a launcher's variables are present."""

import jax
import pytest

from medjax.train import distributed


@pytest.fixture
def calls(monkeypatch):
    """Records calls to jax.distributed.initialize instead of making them."""
    made = []
    monkeypatch.setattr(jax.distributed, "initialize", lambda **kwargs: made.append(kwargs))
    return made


def test_single_host_is_a_no_op(calls):
    assert distributed.initialize({"HOME": "/root", "SLURM_JOB_ID": "7", "SLURM_NTASKS": "1"}) is False
    assert calls == []


@pytest.mark.parametrize(
    "environ, kind",
    [
        ({"SLURM_JOB_ID": "7", "SLURM_NTASKS": "4"}, "slurm"),
        ({"OMPI_MCA_orte_hnp_uri": "1531576320.0;tcp://10.0.0.1:34911"}, "mpi"),
        ({"TPU_WORKER_HOSTNAMES": "host0,host1"}, "tpu"),
        ({"TPU_WORKER_HOSTNAMES": "host0"}, None),
    ],
)
def test_launchers_are_detected_and_left_to_jax(environ, kind, calls):
    assert distributed.multi_host_environment(environ) == kind
    assert distributed.initialize(environ) is (kind is not None)
    assert calls == ([{}] if kind else [])


def test_an_explicit_launch_passes_its_variables(calls):
    environ = {"JAX_COORDINATOR_ADDRESS": "10.0.0.1:1234", "JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "1"}
    assert distributed.initialize(environ) is True
    assert calls == [{"coordinator_address": "10.0.0.1:1234", "num_processes": 2, "process_id": 1}]
    with pytest.raises(ValueError, match="JAX_COORDINATOR_ADDRESS is set but JAX_PROCESS_ID is not"):
        distributed.initialize({"JAX_COORDINATOR_ADDRESS": "10.0.0.1:1234", "JAX_NUM_PROCESSES": "2"})
