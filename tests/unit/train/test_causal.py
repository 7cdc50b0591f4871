"""The causal-LM backend: completion-only SFT (full and LoRA), batched generation, save/load.

``tiny_lm`` (conftest) is a tiny random Llama with SmolLM2's real tokenizer and chat template; it
trains in seconds. The real SmolLM2 is exercised in tests/integration/test_causal.py.
"""

from __future__ import annotations

import pytest
import torch

from adaptloop.data.generation import Sample
from adaptloop.train.base import FitContext
from adaptloop.train.causal import (
    CausalTrainer,
    dev_loss,
    encode,
    load_base,
    load_causal,
    render_completion,
    render_prompt,
)
from adaptloop.types import Pipeline

PAIRS = [("What colour is the sky?", "blue"), ("What colour is grass?", "green"),
         ("What colour is snow?", "white"), ("What colour is coal?", "black")]


def test_prompt_and_completion_follow_the_chat_template(tiny_lm):
    base = load_base(tiny_lm)
    s = Sample(prompt="What colour is the sky?", target="blue", context=(("system", "Answer in one word."),))
    prompt = render_prompt(base.tok, s)
    assert "Answer in one word." in prompt and prompt.rstrip().endswith("assistant")
    assert render_completion(base.tok, s).startswith("blue<|im_end|>")
    ids, labels = encode(base.tok, s, max_length=256)
    n_prompt = sum(1 for y in labels if y == -100)
    assert len(ids) == len(labels) and 0 < n_prompt < len(ids)
    assert base.tok.decode(ids[n_prompt:]).startswith("blue<|im_end|>")
    # a long prompt is cut, never the completion
    long = Sample(prompt="word " * 600, target="blue")
    ids, labels = encode(base.tok, long, max_length=64)
    assert len(ids) <= 64 and base.tok.decode([y for y in labels if y != -100]).startswith("blue")


@pytest.mark.parametrize("lora", [False, True])
def test_sft_learns_the_completions_and_changes_the_weights(tiny_lm, tmp_path, lora):
    train = [Sample(prompt=p, target=t) for p, t in PAIRS]
    base = load_base(tiny_lm)
    before = {k: v.clone() for k, v in base.model.state_dict().items()}
    rows = [encode(base.tok, s, 128) for s in train]
    loss0 = dev_loss(base.model, base.tok, rows, torch.device("cpu"))
    pipe = Pipeline(recipe="raw", strategy="sft-lora" if lora else "sft", encoder=tiny_lm,
                    hparams={"epochs": 40.0 if lora else 60.0, "lr": 2e-2 if lora else 1e-2, "batch_size": 4,
                             "max_new_tokens": 4, "lora_r": 8})
    model, result = CausalTrainer(lora=lora).fit(None, pipe, train, [], FitContext())  # no dev: no checks
    after = model.model.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before if k in after)
    loss1 = dev_loss(model.model, model.tok, rows, torch.device("cpu"))
    assert loss1 < 0.3 * loss0, (loss0, loss1)
    out = model.generate(train, batch_size=3)
    assert len(out) == len(train) and all(isinstance(o, str) for o in out)
    assert sum(o == t for o, (_p, t) in zip(out, PAIRS)) >= 3, out
    model.save(tmp_path / "m")
    again = load_causal(tmp_path / "m")
    assert again.generate(train[:2], batch_size=2) == model.generate(train[:2], batch_size=2)


def test_decode_time_settings_are_a_new_model_and_survive_save(tiny_lm, tmp_path):
    base = load_base(tiny_lm, max_new_tokens=4)
    tuned = base.with_decoding(normalise="label", labels=("blue", "green"), max_new_tokens=6,
                               decoding={"repetition_penalty": 1.3})
    assert (base.normalise, base.decoding, base.max_new_tokens) == ("", {}, 4)  # the original is unchanged
    assert tuned.model is base.model and tuned.finish("Green.") == "green" and base.finish("Green.") == "Green."
    samples = [Sample(prompt=p, target=t) for p, t in PAIRS[:3]]
    raw = tuned.with_decoding(normalise="").generate(samples, batch_size=3)
    assert tuned.generate(samples, batch_size=3) == [tuned.finish(o) for o in raw]
    tuned.save(tmp_path / "m")
    again = load_causal(tmp_path / "m")
    assert (again.normalise, again.decoding, again.max_new_tokens) == ("label", {"repetition_penalty": 1.3}, 6)


def test_decoding_shows_a_long_instruction_whole(tiny_lm):
    """Decoding may use more prompt than training's cut (the model's context less the completion)."""
    base = load_base(tiny_lm, max_new_tokens=8)
    assert base.prompt_room(8) == max(base.max_length, 512 - 8)  # tiny_lm: 512 positions


def test_llama_cpp_decodes_an_untrained_packaged_model(tiny_lm, tmp_path, monkeypatch):
    """The optional llama.cpp path (llama-cpp-python is never installed here: a fake behind its import)."""
    import sys
    import types

    from adaptloop.train import causal, llamacpp

    calls = []

    class FakeLlama:
        def __init__(self, model_path, n_ctx, n_threads, verbose):
            calls.append(("init", model_path, n_ctx))

        def create_completion(self, prompt, max_tokens, temperature, top_k, repeat_penalty, stop):
            calls.append((prompt, max_tokens, temperature, repeat_penalty))
            return {"choices": [{"text": " Blue \n"}]}

    monkeypatch.setitem(sys.modules, "llama_cpp", types.SimpleNamespace(Llama=FakeLlama))
    monkeypatch.setattr(llamacpp, "available", lambda: True)
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"")
    monkeypatch.setitem(causal._GGUF, tiny_lm, lambda: gguf)
    lm = causal.load_base(tiny_lm, llama_cpp=True, max_new_tokens=4)
    tuned = lm.with_decoding(normalise="label", labels=("blue", "red"), decoding={"repetition_penalty": 1.3})
    assert tuned.generate([Sample(prompt="What colour is the sky?", target="")]) == ["blue"]
    assert calls[0] == ("init", str(gguf), causal.DECODE_CONTEXT)
    prompt, max_tokens, temperature, penalty = calls[1]
    assert "<|im_start|>user" in prompt and "What colour is the sky?" in prompt
    assert (max_tokens, temperature, penalty) == (4, 0.0, 1.3)
    assert causal.load_base(tiny_lm, llama_cpp=False).fast is None  # off: transformers decodes


def test_dev_checks_keep_the_best_state(tiny_lm):
    train = [Sample(prompt=p, target=t) for p, t in PAIRS]
    pipe = Pipeline(recipe="raw", strategy="sft", encoder=tiny_lm,
                    hparams={"epochs": 8.0, "lr": 1e-2, "batch_size": 2, "evals_per_epoch": 1})
    _model, result = CausalTrainer().fit(None, pipe, train, train[:2], FitContext())
    scores = [c["dev_score"] for c in result.curve]
    assert len(scores) >= 5 and result.dev_metrics["score"] == pytest.approx(max(scores))
    assert result.chosen["steps_run"] >= 1


def test_fit_refuses_empty_training_data(tiny_lm):
    with pytest.raises(ValueError, match="no training samples"):
        CausalTrainer().fit(None, Pipeline(recipe="raw", strategy="sft", encoder=tiny_lm), [], [], FitContext())
