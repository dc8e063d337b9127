"""Exports load unmodified in the tools people train with: the layout each tool reads, and TRL's
real SFTTrainer on the `hf` / `parquet` exports (chat template applied, prompt masked).
`make check-clients` trains with the real LLaMA-Factory and ms-swift; these are the fast checks."""

from __future__ import annotations

import json
import math

import pytest
from datasets import load_dataset, load_from_disk

from critiquelab.build import cft_example, sft_example
from critiquelab.export import ALPACA_COLUMNS, FORMATS, check_formats, export_all
from critiquelab.io import UserError, read_jsonl

SYSTEM = "Please reason step by step, and put your final answer within \\boxed{}."


@pytest.fixture(scope="module")
def data() -> dict[str, list[dict]]:
    cft = [cft_example("Please critique whether the following solution to the question is correct.",
                       f"Mia has {i} apples and buys 3 more. How many now?", f"Step 1: {i} + 3 = {i + 2}",
                       f"Step 1 is wrong: {i} + 3 = {i + 3}.\nConclusion: wrong [END]") for i in range(3)]
    cft[1]["flag"] = "verdict_disagrees_with_reference"  # build's consistency flag: not a training column
    sft = [sft_example(SYSTEM, f"Tom has {i} pens. He gets 2 more. How many?", f"{i} + 2 = {i + 2}. \\boxed{{{i + 2}}}")
           for i in range(3)]
    return {"cft": cft, "sft_reference": sft, "cft_sft_mix": [cft[0], sft[0], cft[2], sft[1]]}


@pytest.fixture(scope="module")
def exported(tmp_path_factory, data):
    out = tmp_path_factory.mktemp("dataset")
    written = export_all(out, data, list(FORMATS))
    return out, written


def _conversation(row: dict) -> list[dict]:
    return [{"role": m["role"], "content": m["content"]} for m in row["prompt"] + row["completion"]]


def test_every_format_is_written_atomically(exported, data):
    out, written = exported
    assert set(written) == set(FORMATS)
    assert [p for p in out.rglob("*") if p.name.endswith(".tmp") or ".tmp." in p.name or p.name.endswith(".old")] == []
    for m in data:
        for sub, ext in (("messages", "jsonl"), ("trl_text", "jsonl"), ("parquet", "parquet"), ("alpaca", "json")):
            assert (out / sub / f"{m}.{ext}").stat().st_size > 0


def test_alpaca_rows_carry_every_column_dataset_info_maps(exported, data):
    """LLaMA-Factory reads each mapped column from every row: a CFT row without `system` was a KeyError."""
    out, _ = exported
    info = json.loads((out / "alpaca" / "dataset_info.json").read_text())
    assert set(info) == {f"critiquelab_{m}" for m in data}
    for entry in info.values():
        assert entry["formatting"] == "alpaca" and entry["columns"] == ALPACA_COLUMNS
        rows = json.loads((out / "alpaca" / entry["file_name"]).read_text())
        m = entry["file_name"].removesuffix(".json")
        assert len(rows) == len(data[m])
        for row, src in zip(rows, data[m], strict=True):
            assert set(entry["columns"].values()) <= set(row)  # every mapped column on every row
            assert all(isinstance(row[c], str) for c in entry["columns"].values())
            system = next((x["content"] for x in src["prompt"] if x["role"] == "system"), "")
            assert row["system"] == system  # "" when the row has none: never a default prompt
            assert row["instruction"] == src["prompt"][-1]["content"] and row["input"] == ""
            assert row["output"] == src["completion"][0]["content"]
    mix = json.loads((out / "alpaca" / "cft_sft_mix.json").read_text())
    assert {r["system"] for r in mix} == {"", SYSTEM}  # both kinds of row, one set of keys
    assert len({tuple(sorted(r)) for r in mix}) == 1


def test_messages_rows_are_valid_conversations(exported, data):
    """ms-swift's `messages` layout: optional system first, then user/assistant turns ending with assistant."""
    out, _ = exported
    for m, src_rows in data.items():
        rows = read_jsonl(out / "messages" / f"{m}.jsonl")
        assert len(rows) == len(src_rows)
        for row, src in zip(rows, src_rows, strict=True):
            assert set(row) == {"messages"}
            msgs = row["messages"]
            assert all(set(x) == {"role", "content"} and isinstance(x["content"], str) for x in msgs)
            roles = [x["role"] for x in msgs]
            turns = roles[1:] if roles[0] == "system" else roles
            assert "system" not in turns and len(turns) >= 2 and len(turns) % 2 == 0
            assert turns == ["user", "assistant"] * (len(turns) // 2)
            assert msgs == _conversation(src)
            assert ("system" in roles) == any(x["role"] == "system" for x in src["prompt"])


def test_hf_and_parquet_keep_the_message_structure(exported, data):
    out, _ = exported
    hf = load_from_disk(str(out / "hf"))
    assert set(hf) == set(data)
    for m, src_rows in data.items():
        pq = load_dataset("parquet", data_files=str(out / "parquet" / f"{m}.parquet"))["train"]
        for ds in (hf[m], pq):
            assert ds.column_names == ["prompt", "completion"]
            for row, src in zip(ds, src_rows, strict=True):
                assert row["prompt"] == [{"role": x["role"], "content": x["content"]} for x in src["prompt"]]
                assert row["completion"] == [{"role": "assistant", "content": src["completion"][0]["content"]}]


def test_trl_text_stays_flat_strings(exported, data):
    out, _ = exported
    rows = read_jsonl(out / "trl_text" / "cft_sft_mix.jsonl")
    assert all(isinstance(r["prompt"], str) and isinstance(r["completion"], str) for r in rows)
    assert rows[1]["system"] == SYSTEM and "system" not in rows[0]


@pytest.fixture(scope="module")
def tiny_chat_model(tmp_path_factory, data):
    """An untrained tiny Qwen2 with critiquelab's own tokenizer and ChatML template (seconds)."""
    from critiquelab.config import ModelConfig
    from critiquelab.pretrain import build_model, build_tokenizer

    texts = [x["content"] for rows in data.values() for r in rows for x in r["prompt"] + r["completion"]]
    tok = build_tokenizer(texts * 4, 300)
    model = build_model(ModelConfig(hidden_size=16, num_layers=1, num_heads=2, num_kv_heads=1,
                                    intermediate_size=32, max_position_embeddings=512), tok)
    d = tmp_path_factory.mktemp("tiny_chat_model")
    model.save_pretrained(d)
    tok.save_pretrained(d)
    return d


def _trainer(model_dir, dataset, out):
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    cfg = SFTConfig(output_dir=str(out), max_steps=1, per_device_train_batch_size=2, logging_steps=1,
                    save_strategy="no", report_to=[], use_cpu=True, max_length=512, dataloader_num_workers=0)
    return SFTTrainer(model=AutoModelForCausalLM.from_pretrained(model_dir), args=cfg, train_dataset=dataset,
                      processing_class=AutoTokenizer.from_pretrained(model_dir))


@pytest.mark.parametrize("fmt", ["hf", "parquet"])
def test_trl_applies_the_chat_template_to_hf_and_parquet_and_masks_the_prompt(fmt, exported, data,
                                                                              tiny_chat_model, tmp_path):
    from transformers import AutoTokenizer

    out, _ = exported
    ds = (load_from_disk(str(out / "hf"))["cft_sft_mix"] if fmt == "hf" else
          load_dataset("parquet", data_files=str(out / "parquet" / "cft_sft_mix.parquet"))["train"])
    tok = AutoTokenizer.from_pretrained(tiny_chat_model)
    trainer = _trainer(tiny_chat_model, ds, tmp_path)
    assert len(trainer.train_dataset) == len(data["cft_sft_mix"])
    for ex, src in zip(trainer.train_dataset, data["cft_sft_mix"], strict=True):
        batch = trainer.data_collator([ex])
        ids, labels = batch["input_ids"][0].tolist(), batch["labels"][0].tolist()
        prompt_text = tok.apply_chat_template(src["prompt"], tokenize=False, add_generation_prompt=True)
        full_text = tok.apply_chat_template(_conversation(src), tokenize=False)
        assert tok.decode(ids) == full_text  # the chat template, and no default system prompt added
        assert prompt_text.endswith("<|im_end|>\n<|im_start|>assistant\n")  # template tokens between the two
        n_prompt = len(tok(prompt_text, add_special_tokens=False)["input_ids"])
        assert ids[:n_prompt] == tok(prompt_text, add_special_tokens=False)["input_ids"]
        assert set(labels[:n_prompt]) == {-100}  # the prompt is masked ...
        assert labels[n_prompt:] == ids[n_prompt:]  # ... and every completion token is trained
        assert tok.decode(ids[n_prompt:]) == src["completion"][0]["content"] + "<|im_end|>\n"
    trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert len(losses) == 1 and math.isfinite(losses[0])


def test_trl_text_gets_no_chat_template(exported, tiny_chat_model, tmp_path):
    """Why `hf` / `parquet` keep messages: plain strings are concatenated without template tokens."""
    out, _ = exported
    ds = load_dataset("json", data_files=str(out / "trl_text" / "cft.jsonl"))["train"]
    trainer = _trainer(tiny_chat_model, ds, tmp_path)
    text = trainer.processing_class.decode(trainer.train_dataset[0]["input_ids"])
    assert "<|im_start|>" not in text and "Question:" in text


@pytest.mark.parametrize("bad", [["alpaca", "sharegpt"], ["trl"], "alpaca", ["HF"]])
def test_check_formats_rejects_unknown_exports_in_one_line(bad, tmp_path, data):
    with pytest.raises(UserError) as e:
        check_formats(bad)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("build.exports")
    assert all(f in msg for f in FORMATS)
    assert (repr(bad) if isinstance(bad, str) else repr(next(b for b in bad if b not in FORMATS))) in msg
    with pytest.raises(UserError):
        export_all(tmp_path / "ds", data, bad)
    assert not (tmp_path / "ds").exists()  # nothing written


def test_check_formats_accepts_every_valid_list():
    check_formats([])
    check_formats(list(FORMATS))
    check_formats(["messages", "alpaca"])
