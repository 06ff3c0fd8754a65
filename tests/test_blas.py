"""OpenBLAS kernel pinning: what the CLI sets before numpy loads, and that OpenBLAS obeys it."""

import os
import subprocess
import sys

import pytest

from atm_bench.blas import PINNED_CORETYPE, cpu_flags, cpu_model, pin_openblas_kernels

CPUINFO = """processor\t: 0
model name\t: Intel(R) Xeon(R) Processor
flags\t\t: fpu sse2 avx fma avx2 avx512f
"""


def test_flags_and_model_are_read_from_cpuinfo():
    assert {"avx2", "fma", "avx512f"} <= cpu_flags(CPUINFO)
    assert cpu_model(CPUINFO) == "Intel(R) Xeon(R) Processor"
    assert cpu_flags("processor : 0\n") == set()


def test_pins_haswell_on_an_avx2_cpu():
    env: dict[str, str] = {}
    assert pin_openblas_kernels(env, "x86_64", cpu_flags(CPUINFO)) == PINNED_CORETYPE
    assert env == {"OPENBLAS_CORETYPE": PINNED_CORETYPE}


def test_leaves_a_users_choice_alone():
    env = {"OPENBLAS_CORETYPE": "SkylakeX"}
    assert pin_openblas_kernels(env, "x86_64", {"avx2", "fma"}) == "SkylakeX"
    assert env == {"OPENBLAS_CORETYPE": "SkylakeX"}


@pytest.mark.parametrize("machine, flags", [("x86_64", {"sse2", "avx"}), ("aarch64", {"asimd"})])
def test_no_pin_where_the_haswell_kernels_cannot_run(machine, flags):
    env: dict[str, str] = {}
    assert pin_openblas_kernels(env, machine, flags) is None
    assert env == {}


@pytest.mark.skipif(pin_openblas_kernels({}) is None, reason="this CPU runs no Haswell kernels")
def test_importing_the_cli_makes_numpys_openblas_run_the_pinned_kernels():
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_CORETYPE"}
    code = "import atm_bench.cli, numpy; from atm_bench.blas import active_openblas_core; print(active_openblas_core())"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == PINNED_CORETYPE


def test_an_unpinned_process_is_reported(capsys, monkeypatch):
    import numpy  # noqa: F401  (loaded already, so OpenBLAS chose its kernels)

    from atm_bench import blas

    active = blas.active_openblas_core()
    if active is None:
        pytest.skip("numpy brings no OpenBLAS here")
    monkeypatch.setenv("OPENBLAS_CORETYPE", "Prescott" if active != "Prescott" else "Haswell")
    blas.warn_if_unpinned("these demos")
    assert "these demos will repeat only on CPUs that pick the same" in capsys.readouterr().err
