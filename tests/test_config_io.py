import json

import pytest

from critiquelab.config import RunConfig, load_config
from critiquelab.experiment import PRESETS, preset_config, recipes_dir
from critiquelab.io import UserError, atomic_write, read_jsonl, write_jsonl


def test_yaml_then_overrides_with_given_not_truthy_precedence(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("train:\n  bf16: true\n  lr: 1e-4\nseeds: [1, 2]\n")
    cfg = load_config(RunConfig, recipe, ["train.bf16=false", "train.batch_size=4"])
    assert cfg.train.bf16 is False  # a CLI false beats a YAML true
    assert cfg.train.lr == pytest.approx(1e-4)  # YAML reads 1e-4 as a string; coerced to float
    assert cfg.train.batch_size == 4 and cfg.seeds == [1, 2]
    assert cfg.train.epochs == RunConfig().train.epochs


def test_unknown_keys_and_bad_types_are_reported_together(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("train:\n  lr: fast\n  learning_rate: 1\nwrold: {}\n")
    with pytest.raises(UserError) as e:
        load_config(RunConfig, recipe)
    msg = str(e.value)
    assert "train.lr: expected float" in msg and "train.learning_rate: unknown key" in msg and "wrold" in msg


def test_override_needs_key_value():
    with pytest.raises(UserError, match="key=value"):
        load_config(RunConfig, None, ["train.lr"])


def test_every_recipe_loads():
    recipes = sorted(recipes_dir().glob("*.yaml"))
    assert recipes, "no recipes found"
    for r in recipes:
        load_config(RunConfig, r)
    for p in PRESETS:
        preset_config(p)
    with pytest.raises(UserError, match="unknown preset"):
        preset_config("huge")


def test_malformed_jsonl_names_file_and_line(tmp_path):
    f = tmp_path / "x.jsonl"
    f.write_text('{"a": 1}\n{"a": \n{"a": 3}\n')
    with pytest.raises(UserError, match=r"x\.jsonl:2: malformed JSON line"):
        read_jsonl(f)
    f.write_text('{"a": 1}\n[1, 2]\n')
    with pytest.raises(UserError, match=r"x\.jsonl:2: expected a JSON object"):
        read_jsonl(f)


def test_torn_tail_is_tolerated_only_when_asked(tmp_path):
    f = tmp_path / "store.jsonl"
    f.write_text('{"id": 1}\n{"id": 2')
    assert read_jsonl(f, tolerate_torn_tail=True) == [{"id": 1}]
    with pytest.raises(UserError):
        read_jsonl(f)


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.jsonl"
    write_jsonl(target, [{"v": 1}])

    def rows():
        yield {"v": 2}
        raise RuntimeError("crash mid-write")

    with pytest.raises(RuntimeError):
        write_jsonl(target, rows())
    assert [json.loads(line) for line in target.read_text().splitlines()] == [{"v": 1}]
    assert list(tmp_path.iterdir()) == [target]  # no temp file left behind
    with pytest.raises(ValueError):
        with atomic_write(tmp_path / "new.txt") as fh:
            fh.write("partial")
            raise ValueError
    assert not (tmp_path / "new.txt").exists()


def test_override_text_that_yaml_reads_as_a_block_list_stays_text():
    cfg = load_config(RunConfig, None, ["world.operations=-", "world.min_steps=1", "world.max_steps=1"])
    assert cfg.world.operations == "-"
    assert load_config(RunConfig, None, ["seeds=[1, 2]"]).seeds == [1, 2]


def test_how_work_runs_is_in_no_result_key():
    """Executors, parallelism, launchers and price notes never change a stage's key (a run resumes
    across them); a field added later enters the key only when it is changed from its default."""
    from dataclasses import replace

    from critiquelab.config import CritiqueConfig, EvalConfig, SampleConfig, TrainConfig, key_of

    for section, changes in [(SampleConfig(), {"data_parallel": 4, "tensor_parallel": 2}),
                             (EvalConfig(), {"data_parallel": 8, "tensor_parallel": 1}),
                             (CritiqueConfig(), {"price_source": "a page", "data_parallel": 2}),
                             (TrainConfig(), {"launcher": "accelerate", "accelerate_config": "x.yaml",
                                              "num_processes": 8})]:
        assert key_of(replace(section, **changes)) == key_of(section)
    assert "select_max_new_tokens" not in key_of(TrainConfig()) and "backend" not in key_of(SampleConfig())
    assert key_of(TrainConfig(select_max_new_tokens=2048)) != key_of(TrainConfig())
    assert key_of(SampleConfig(backend="vllm")) != key_of(SampleConfig())
