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


def _ship(tiny_model, tiny_world, tiny_cfg, shipped_root, monkeypatch):
    import shutil

    import critiquelab.pretrain as pretrain
    from critiquelab.io import sha256_dir, write_json

    monkeypatch.setattr(pretrain, "SHIPPED", shipped_root)
    d = shipped_root / "tiny"
    shutil.copytree(tiny_model, d)
    write_json(d / "shipped.json", {"key": pretrain.config_key(tiny_cfg.world, tiny_cfg.model, tiny_cfg.pretrain),
                                    "sha256": sha256_dir(d, skip=("shipped.json",))})
    return d


def test_a_shipped_base_is_taken_for_its_settings_and_checked(tiny_model, tiny_world, tiny_cfg, tmp_path, monkeypatch):
    """The base shipped for exactly these settings is used on any machine (no pretraining here), its files
    checked against their recorded sha256; other settings, or pretrain.shipped=false, pretrain as before."""
    import dataclasses

    import pytest

    import critiquelab.pretrain as pretrain
    from critiquelab.io import UserError

    d = _ship(tiny_model, tiny_world, tiny_cfg, tmp_path / "bases", monkeypatch)
    monkeypatch.setenv("CRITIQUELAB_CACHE", str(tmp_path / "cache"))
    ran = []
    monkeypatch.setattr(pretrain, "pretrain", lambda *a, **k: ran.append(a))
    assert pretrain.cached_base_model(tiny_world, tiny_cfg.world, tiny_cfg.model, tiny_cfg.pretrain) == (d, True)
    assert ran == []
    other = dataclasses.replace(tiny_cfg.pretrain, seed=7)
    path, cached = pretrain.cached_base_model(tiny_world, tiny_cfg.world, tiny_cfg.model, other)
    assert path != d and not cached and len(ran) == 1
    mine = dataclasses.replace(tiny_cfg.pretrain, shipped=False)
    assert pretrain.cached_base_model(tiny_world, tiny_cfg.world, tiny_cfg.model, mine)[0] != d and len(ran) == 2
    with open(d / "model.safetensors", "r+b") as f:  # one flipped byte
        f.seek(100)
        b = f.read(1)
        f.seek(100)
        f.write(bytes([b[0] ^ 1]))
    with pytest.raises(UserError, match="do not match their sha256"):
        pretrain.cached_base_model(tiny_world, tiny_cfg.world, tiny_cfg.model, tiny_cfg.pretrain)
