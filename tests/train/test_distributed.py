"""Multi-process start-up: a no-op on one machine; the right call when a launcher's variables are present, and a bad
launch variable named in one line."""

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
    timeouts = {"initialization_timeout": 120 + 60, "heartbeat_timeout_seconds": 3 * 10}
    assert calls == ([timeouts] if kind else [])


def test_an_explicit_launch_passes_its_variables(calls):
    environ = {"JAX_COORDINATOR_ADDRESS": "10.0.0.1:1234", "JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "1",
               "MEDJAX_CONNECT_SECONDS": "30"}
    assert distributed.initialize(environ) is True
    # JAX's own timeouts are set beyond medjax's, so that medjax speaks first, in one line.
    assert calls == [{"coordinator_address": "10.0.0.1:1234", "num_processes": 2, "process_id": 1,
                      "initialization_timeout": 90, "heartbeat_timeout_seconds": 30}]


def test_a_kubernetes_indexed_job_gives_the_process_index():
    environ = {"JAX_COORDINATOR_ADDRESS": "job-0.medjax:29500", "JAX_NUM_PROCESSES": "4", "JOB_COMPLETION_INDEX": "3"}
    assert distributed.explicit_launch(environ)["process_id"] == 3


@pytest.mark.parametrize("environ, message", [
    ({"JAX_NUM_PROCESSES": "2"}, "JAX_PROCESS_ID: expected it beside JAX_COORDINATOR_ADDRESS"),
    ({"JAX_PROCESS_ID": "0"}, "JAX_NUM_PROCESSES: expected it beside JAX_COORDINATOR_ADDRESS"),
    ({"JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "2"},
     "JAX_PROCESS_ID: expected a process index from 0 to 1 (JAX_NUM_PROCESSES=2), got 2"),
    ({"JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "-1"}, "JAX_PROCESS_ID: expected a process index from 0 to 1"),
    ({"JAX_NUM_PROCESSES": "two", "JAX_PROCESS_ID": "0"}, "JAX_NUM_PROCESSES: expected a whole number, got 'two'"),
    ({"JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "0", "MEDJAX_HEARTBEAT_SECONDS": "0"},
     "MEDJAX_HEARTBEAT_SECONDS: expected 1 second or more, got 0"),
])
def test_a_bad_launch_is_named_in_one_line_before_joining(environ, message, calls, monkeypatch, capsys):
    from medjax.cli import main

    for name in ("JAX_NUM_PROCESSES", "JAX_PROCESS_ID", "JOB_COMPLETION_INDEX", "MEDJAX_HEARTBEAT_SECONDS"):
        monkeypatch.delenv(name, raising=False)
    for name, value in {"JAX_COORDINATOR_ADDRESS": "127.0.0.1:1", **environ}.items():
        monkeypatch.setenv(name, value)
    assert main(["train", "medmnist", "--model", "cnn", "--workdir", "/nonexistent/never-made"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("medjax: error: " + message) and err.count("\n") == 1, err
    assert calls == []
