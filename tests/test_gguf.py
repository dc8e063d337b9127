"""GGUF checkpoints as models: converted once into a plain HF directory, keyed by the file's sha256,
and taken by every stage as `--model file.gguf`. The file is a tiny Llama written with the `gguf`
package (tests/gguf_files.py), loaded by the real transformers GGUF reader."""

from __future__ import annotations

import json

import pytest
import torch

from critiquelab.cli import main
from critiquelab.gguf import RECORD, find_gguf, record, resolve
from critiquelab.io import UserError, read_jsonl
from tests.gguf_files import write_tiny_gguf

IDS = torch.tensor([[5, 17, 40, 99, 120, 7, 250, 3]])


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CRITIQUELAB_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory):
    path = tmp_path_factory.mktemp("gguf") / "tiny-llama.Q8_0.gguf"
    write_tiny_gguf(path)
    return path


def _logits(model):
    with torch.no_grad():
        return model(IDS).logits


def test_a_gguf_file_becomes_the_same_model_in_a_plain_directory(tmp_path, cache):
    from critiquelab.llm import load_causal_lm, load_tokenizer

    original = write_tiny_gguf(tmp_path / "f32.gguf", quantize=False)
    d = resolve(tmp_path / "f32.gguf")
    assert d.startswith(str(cache / "models" / "gguf-"))
    names = {p.name for p in (cache / "models").iterdir()}
    assert names == {d.rsplit("/", 1)[1]}, "no temporary directory is left beside the result"
    model, tok = load_causal_lm(d), load_tokenizer(d)
    assert torch.allclose(_logits(model), _logits(original), atol=1e-5)  # q/k order, norms, tied head: all right
    assert model.config.tie_word_embeddings and model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    assert tok.eos_token == tok.pad_token == "<|im_end|>" and model.generation_config.eos_token_id == tok.eos_token_id
    prompt = tok.apply_chat_template([{"role": "user", "content": "2+2?"}], tokenize=False, add_generation_prompt=True)
    assert prompt == "<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n"
    meta = record(d)
    assert meta["architecture"] == "llama" and meta["quantization"] == "F32" and len(meta["sha256"]) == 64


def test_a_quantized_file_is_dequantized_once_then_reused(tiny_gguf, tmp_path, monkeypatch):
    from critiquelab import gguf
    from critiquelab.llm import check_model, load_causal_lm

    original = write_tiny_gguf(tmp_path / "again.gguf")  # the same weights as tiny_gguf, before Q8_0
    d = check_model(tiny_gguf, "--model")
    assert record(d)["quantization"] == "Q8_0"
    diff = (_logits(load_causal_lm(d)) - _logits(original)).abs().max().item()
    assert 0 < diff < 0.05  # dequantized: close to the fp32 weights, not equal
    monkeypatch.setattr(gguf, "convert", lambda *a, **k: pytest.fail("converted twice"))
    assert check_model(tiny_gguf) == d == resolve(tmp_path / "again.gguf")  # same bytes, same directory


def test_a_directory_holding_one_gguf_is_that_model(tiny_gguf, tmp_path):
    assert find_gguf(tiny_gguf.parent) == tiny_gguf
    assert find_gguf(tmp_path) is None  # nothing there: not a GGUF model (check_model says what is wrong)
    (tmp_path / "a.gguf").write_bytes(tiny_gguf.read_bytes())
    (tmp_path / "b.gguf").write_bytes(tiny_gguf.read_bytes())
    with pytest.raises(UserError, match="holds 2 GGUF files"):
        find_gguf(tmp_path, "--model")


def test_files_transformers_cannot_read_are_one_line_naming_the_cause(tmp_path, capsys, tiny_world):
    import gguf

    (tmp_path / "junk.gguf").write_bytes(b"not a gguf file at all" * 10)
    w = gguf.GGUFWriter(str(tmp_path / "odd.gguf"), "no-such-arch")
    w.add_file_type(gguf.LlamaFileType.ALL_F32)
    w.add_tensor("token_embd.weight", torch.zeros(4, 4).numpy())
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    for name, says in [("junk.gguf", "not a readable GGUF file"), ("odd.gguf", "architecture no-such-arch"),
                       ("missing.gguf", "no such GGUF file")]:
        rc = main(["eval", "--model", str(tmp_path / name), "--benchmarks", "world", "--world", str(tiny_world),
                   "--out", str(tmp_path / f"eval-{name}")])
        err = capsys.readouterr().err.strip()
        assert rc == 2 and len(err.splitlines()) == 1 and says in err and name in err, err
        assert "Traceback" not in err and not (tmp_path / f"eval-{name}").exists()


def test_sample_train_and_eval_take_a_gguf_file(tiny_gguf, tiny_world, tmp_path, capsys):
    w = str(tiny_world)
    argv = ["sample", "--problems", f"{w}/train.jsonl", "--model", str(tiny_gguf), "--out", str(tmp_path / "s.jsonl"),
            "sample.n_problems=6", "sample.max_new_tokens=16"]
    assert main(argv) == 0
    line = capsys.readouterr().out
    converted = resolve(tiny_gguf)
    assert "converted from GGUF" in line and converted.rsplit("/", 1)[1] in line
    sols = read_jsonl(tmp_path / "s.jsonl")
    assert len(sols) == 6 and all("solution" in r for r in sols)

    data = tmp_path / "cft.jsonl"
    data.write_text("".join(json.dumps({"prompt": [{"role": "user", "content": f"Question: what is {i} + 3?"}],
                                        "completion": [{"role": "assistant", "content": f"{i + 3}. Conclusion: "
                                                        "right [END]"}]}) + "\n" for i in range(8)))
    for method, extra in [("full", []), ("lora", ["train.lora=true", "train.merge_lora=true"])]:
        argv = ["train", "--model", str(tiny_gguf), "--data", str(data), "--out", str(tmp_path / method),
                "train.max_steps=2", "train.token_budget=0", "train.batch_size=4", "train.save_steps=0", *extra]
        assert main(argv) == 0, capsys.readouterr().err
        assert "converted from GGUF" in capsys.readouterr().out
        assert (tmp_path / method / "config.json").is_file() and (tmp_path / method / "tokenizer.json").is_file()

    assert main(["eval", "--model", str(tiny_gguf), "--benchmarks", "world", "--world", w, "--out",
                 str(tmp_path / "eval"), "eval.limit=5", "eval.max_new_tokens=16"]) == 0
    assert "converted from GGUF" in capsys.readouterr().out
    assert len(read_jsonl(tmp_path / "eval" / "world.jsonl")) == 5
    assert (tmp_path / "cache" / "models" / converted.rsplit("/", 1)[1] / RECORD).is_file()
