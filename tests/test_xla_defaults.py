"""medjax's XLA defaults: added when unset, never over a flag the user set, off on request."""

from medjax import xla_defaults


def test_defaults_are_added_to_what_the_user_set():
    env = {"XLA_FLAGS": "--xla_force_host_platform_device_count=8"}
    assert xla_defaults.apply(env) == list(xla_defaults.DEFAULTS)
    assert env["XLA_FLAGS"] == "--xla_force_host_platform_device_count=8 " + " ".join(xla_defaults.DEFAULTS)
    assert xla_defaults.apply(env) == []  # applying twice adds nothing


def test_a_flag_the_user_set_wins_and_the_defaults_can_be_turned_off():
    mine = {"XLA_FLAGS": "--xla_cpu_experimental_ynn_fusion_type="}
    assert xla_defaults.apply(mine) == [] and mine["XLA_FLAGS"] == "--xla_cpu_experimental_ynn_fusion_type="
    off = {"MEDJAX_XLA_DEFAULTS": "0"}
    assert xla_defaults.apply(off) == [] and "XLA_FLAGS" not in off


def test_the_running_process_has_them():
    import os

    assert all(flag in os.environ["XLA_FLAGS"] for flag in xla_defaults.DEFAULTS)
