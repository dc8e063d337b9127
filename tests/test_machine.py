"""The machine beside every number: the CPU and torch's kernels for it in provenance, and in the key of
every cached base, so one cache key never names two different models (issue 32)."""

import json
import os
import subprocess
import sys

from critiquelab.io import provenance, read_json
from critiquelab.machine import differences, weights_key

KEY = "import json; from critiquelab.machine import weights_key; print(json.dumps(weights_key()))"


def test_provenance_names_the_cpu_its_kernels_and_the_blas():
    p = provenance()
    assert p["cpu"] and p["machine"]
    assert p["cpu_capability"] in ("DEFAULT", "AVX2", "AVX512", "ZVECTOR", "VSX", "SVE256", "NEON") or p["cpu_capability"]
    assert p["blas"]  # mkl on x86-64 wheels, openblas / accelerate elsewhere
    assert isinstance(p["kernel_env"], dict)


def _key_under(**env) -> dict:
    clean = {k: v for k, v in os.environ.items() if k not in ("ATEN_CPU_CAPABILITY", "MKL_CBWR", "MKL_NUM_THREADS")}
    out = subprocess.run([sys.executable, "-c", KEY], env={**clean, **env}, capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def test_other_kernels_are_another_key_and_the_difference_is_named():
    native, portable = _key_under(), _key_under(ATEN_CPU_CAPABILITY="default", MKL_CBWR="COMPATIBLE")
    assert portable["cpu_capability"] == "DEFAULT"
    assert native != portable
    named = differences(native, portable)
    assert any(d.startswith("kernel_env:") for d in named)
    assert differences(native, native) == []


def test_torch_threads_are_not_in_the_key():
    """Measured (benchmarks/results/cpu_kernels.json): torch's thread count does not change the weights."""
    assert _key_under(OMP_NUM_THREADS="1") == _key_under(OMP_NUM_THREADS="2")


def test_a_pretrained_base_records_what_built_it(tiny_model):
    record = read_json(tiny_model / "critiquelab_pretrain.json")
    assert record["built_with"] == weights_key()
    assert record["machine"]["cpu"] and record["machine"]["cpu_capability"]
