"""The machine a number was computed on, as far as it changes the number.

The same seed gives different weights on different CPUs: torch picks vectorised kernels for the
CPU's instruction set (`torch.backends.cpu.get_cpu_capability()`: DEFAULT, AVX2, AVX512, ...) and
MKL picks its own code path, so sums are taken in another order. Measured on one AVX2 host
(benchmarks/cpu_kernels.py): each of `ATEN_CPU_CAPABILITY`, MKL's code path (`MKL_CBWR`) and, under
MKL_CBWR=COMPATIBLE, MKL's thread count changes the weights of a world pretraining; torch's own thread
count does not. Pinning all three (the `PORTABLE` settings) gives the same weights whatever the x86-64
CPU, at about a fifth of the speed, so it is offered, not imposed: see the README.

`cpu_facts()` goes into every provenance; `weights_key()` into the key of every cached base model,
so one cache key never names two different models.
"""

from __future__ import annotations

import os
import platform
import re
from functools import cache

__all__ = ["KNOBS", "PORTABLE", "cpu_facts", "cpu_model", "weights_key", "differences"]

# Environment variables that change which kernels run (and so the weights), read when torch loads
KNOBS = ("ATEN_CPU_CAPABILITY", "MKL_CBWR", "MKL_NUM_THREADS", "OMP_NUM_THREADS")
# The settings that give bitwise-equal weights across x86-64 CPUs (set them before torch loads)
PORTABLE = {"ATEN_CPU_CAPABILITY": "default", "MKL_CBWR": "COMPATIBLE", "MKL_NUM_THREADS": "1"}


@cache
def cpu_model() -> str:
    """The CPU's marketing name ("AMD EPYC", "Intel(R) Xeon(R) ..."), or the platform's processor."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.lower().startswith(("model name", "hardware", "cpu model")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@cache
def _torch_facts() -> dict:
    import torch

    config = torch.__config__.show()
    blas = re.search(r"BLAS_INFO=(\w+)", config)
    mkl = re.search(r"Math Kernel Library Version ([\d.]+)", config)
    return {"cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "blas": blas.group(1) if blas else None,
            "mkl": mkl.group(1) if mkl else None}


def cpu_facts() -> dict:
    """The CPU, torch's kernel choice for it, the BLAS, and the kernel settings in the environment."""
    return {"cpu": cpu_model(), "machine": platform.machine(), **_torch_facts(),
            "kernel_env": {k: os.environ[k] for k in KNOBS if k in os.environ}}


def weights_key() -> dict:
    """What, beyond the configs and the data, decides a trained model's weights on a CPU: the
    library versions and the kernels (torch's thread count is left out: it does not change them)."""
    from importlib import metadata

    facts = cpu_facts()
    env = {k: v for k, v in facts["kernel_env"].items() if k != "OMP_NUM_THREADS"}
    return {"torch": metadata.version("torch"), "transformers": metadata.version("transformers"),
            "tokenizers": metadata.version("tokenizers"),
            "machine": facts["machine"], "cpu_capability": facts["cpu_capability"], "blas": facts["blas"],
            "mkl": facts["mkl"], "kernel_env": env}


def differences(built: dict, now: dict) -> list[str]:
    """The entries of two `weights_key()`s that differ, as 'name: built -> now' (empty: the same)."""
    return [f"{k}: {built.get(k)} -> {now.get(k)}" for k in sorted(set(built) | set(now)) if built.get(k) != now.get(k)]
