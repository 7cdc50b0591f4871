"""The generation cold start through the CLI with a tiny real causal LM: the family from the prompt
and the data, the eval set frozen before any training, base → fine-tune nodes with findings,
promotion, `eval` (exact match + diagnosis) and `predict`; plus the pure pieces (targets,
presentation, family choice, diagnosis)."""

from __future__ import annotations

import json

import pytest
import tomli_w
from sqlalchemy import select

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

from adaptloop.agent.generation import decode_moves, unusable_targets
from adaptloop.data.generation import Sample
from adaptloop.data.prompts import answer_target, cot_target, instruction, present
from adaptloop.data.sources import data_families
from adaptloop.data.spec import choose_family, family_from_prompt
from adaptloop.diagnose.generation import diagnose, repetitive, score_outputs
from tests.conftest import DATASETS, read_rows, subset, write_jsonl
from tests.test_cli import one_json, run

GSM = "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\nNatalia sold 48+24 = <<48+24=72>>72 clips.\n#### 72"


def test_cot_and_answer_targets():
    assert cot_target(GSM) == "Natalia sold 48/2 = 24 clips in May.\nNatalia sold 48+24 = 72 clips.\n#### 72"
    assert answer_target(GSM) == "#### 72"
    assert cot_target("just text") == "just text"


def test_present_puts_the_instruction_first_and_fences_code():
    s = Sample(prompt="Add two numbers.", target="def add(a, b):\n    return a + b",
               extra={"test_list": ["assert add(1, 2) == 3"]})
    shown = present(s, "code", instruction("code", (), "full"))
    assert shown.prompt.startswith("Write a Python function") and "assert add(1, 2) == 3" in shown.prompt
    assert shown.target.startswith("```python\ndef add")
    labels = ("card_arrival", "lost_or_stolen_card")
    assert "card_arrival, lost_or_stolen_card" in instruction("label", labels, "full")
    assert instruction("label", labels, "short") == "Reply with the label only."
    m = present(Sample(prompt="q", target=GSM), "math", "", "cot")
    assert "<<" not in m.target and m.target.endswith("#### 72")


def test_family_choice_for_generation():
    assert family_from_prompt("solve grade-school math word problems") == "generation"
    assert family_from_prompt("summarize papers into a one-line tldr") == "generation"
    assert data_families(DATASETS / "gsm8k" / "test.jsonl") == {"generation"}
    assert data_families(DATASETS / "mbpp" / "test.jsonl") == {"generation"}
    # text + label data is classification unless the prompt asks for generated replies
    assert choose_family("classify banking intents", {"classification"}) == "classification"
    assert choose_family("reply with the intent name of each banking message", {"classification"}) == "generation"


def test_score_and_diagnose_math_outputs():
    samples = [Sample(prompt=f"q{i}", target=f"...\n#### {i}") for i in range(4)]
    outputs = ["so #### 0", "The result is 5", "I am not sure", "word " * 40]
    scored = score_outputs("math", samples, outputs, n_tokens=[3, 4, 4, 64], max_new_tokens=64)
    assert scored["exact_match"] == 0.25 and scored["format_ok"] == 0.5
    kinds = {f["kind"]: f for f in diagnose("math", scored)}
    assert kinds["format_errors"]["evidence"]["count"] == 2
    assert kinds["wrong_content"]["evidence"]["count"] == 1
    assert kinds["truncation"]["evidence"]["count"] == 1 and kinds["repetition"]["evidence"]["count"] == 1
    assert kinds["extraction_failure"]["evidence"]["count"] == 2
    assert "length_drift" in kinds
    assert repetitive("a b c d " * 5) and not repetitive("one two three four five six seven eight nine ten")
    with pytest.raises(ValueError, match="unknown generation kind"):
        score_outputs("poetry", samples, outputs)


def test_decode_moves_follow_the_findings():
    samples = [Sample(prompt=f"q{i}", target=f"...\n#### {i}") for i in range(4)]
    outputs = ["so #### 0", "The result is 5", "word " * 40, "word " * 40]
    findings = diagnose("math", score_outputs("math", samples, outputs, n_tokens=[3, 4, 64, 64], max_new_tokens=64))
    moves = {name: (changes, cost) for name, changes, cost, _why in decode_moves("math", findings, 64)}
    assert moves["format-normalise"] == ({"normalise": "math"}, 0.0)  # a rescoring: no decode
    assert moves["decoding"][0] == {"decoding": {"repetition_penalty": 1.15}}
    assert moves["more-tokens"] == ({"max_new_tokens": 128}, 2.0)
    assert "more-tokens" not in {m[0] for m in decode_moves("label", findings, 64)}  # labels are short
    assert "decoding" not in {m[0] for m in decode_moves("code", findings, 64)}  # code repeats its names
    assert decode_moves("math", [], 64) == []


def test_targets_that_cannot_be_right_leave_the_training_pool():
    math = [Sample(prompt="a", target="2 + 2 = 4\n#### 4"), Sample(prompt="b", target="I forgot")]
    assert list(unusable_targets("math", math).values()) == ["no final answer in the target"]
    ok = Sample(prompt="add", target="def add(a, b):\n    return a + b",
                extra={"test_list": ["assert add(1, 2) == 3"]})
    wrong = Sample(prompt="sub", target="def sub(a, b):\n    return a + b",
                   extra={"test_list": ["assert sub(3, 1) == 2"]})
    assert unusable_targets("code", [ok, wrong]) == {wrong.id: "the reference fails its own tests"}
    summaries = [Sample(prompt=f"p{i}", target="a short one line summary") for i in range(5)]
    long = Sample(prompt="x", target="word " * 200)
    assert set(unusable_targets("summary", [*summaries, long])) == {long.id}
    assert unusable_targets("label", summaries) == {}


@pytest.fixture(scope="module")
def gen_ws(tmp_path_factory, tiny_lm):
    root = tmp_path_factory.mktemp("gen")
    ws = root / "ws"
    assert run("init", ws).exit_code == 0
    cfg = ws / "adaptloop.toml"
    settings = tomllib.loads(cfg.read_text())
    settings["generation"].update({"model": tiny_lm, "eval_max": 10, "dev_max": 6, "batch_size": 8})
    cfg.write_text(tomli_w.dumps(settings))
    rows = subset(read_rows("banking77", "train"), 3, 14)
    data = write_jsonl(root / "train.jsonl", rows + [{"text": "broken"}])
    test = write_jsonl(root / "test.jsonl", subset(read_rows("banking77", "test"), 3, 3))
    r = one_json(run("new", "reply with the intent name of each banking message", "--data", data,
                     "--budget", "100s", "--json", "-w", ws))
    return {"ws": ws, "new": r, "test": test}


@pytest.mark.integration
def test_generation_cold_start_freezes_eval_first_and_promotes(gen_ws):
    from adaptloop.store.db import Decision, FindingRow, Quarantine
    from adaptloop.workspace import Workspace

    r = gen_ws["new"]
    assert r["spec"]["family"] == "generation" and r["spec"]["output"]["kind"] == "label"
    assert r["spec"]["primary_metric"] == "exact_match" and len(r["spec"]["labels"]) == 3
    assert r["curation"]["eval"] == 4 and r["curation"]["dev"] >= 1  # 10% of 42, capped by the settings
    names = [n["name"] for n in r["nodes"]]
    assert names[:2] == ["base", "sft"]
    assert r["nodes"][0]["pipeline"]["hparams"]["instruction"] == "full"
    assert r["nodes"][1]["pipeline"]["hparams"]["instruction"] == "short"
    assert all("exact_match" in n["dev"] for n in r["nodes"] if n["status"] == "done")
    assert r["winner"] and r["version"] == 1
    store = Workspace.open(gen_ws["ws"]).store
    kinds = [d.kind for d in store.all(select(Decision).order_by(Decision.id))]
    assert kinds.index("eval_set_frozen") < kinds.index("expand")
    assert "select" in kinds and "diagnosis" in kinds
    assert store.all(select(FindingRow))  # the base model's failures are diagnosed
    assert [q.reason for q in store.all(select(Quarantine))][0].startswith("missing or empty target")


@pytest.mark.integration
def test_generation_eval_and_predict(gen_ws):
    r = one_json(run("eval", "--data", gen_ws["test"], "--json", "-w", gen_ws["ws"]))
    assert r["kind"] == "label" and r["n"] == 9 and 0.0 <= r["exact_match"] <= 1.0
    assert {"format_ok", "findings", "examples_wrong"} <= set(r)
    limited = one_json(run("eval", "--data", gen_ws["test"], "--limit", "2", "--json", "-w", gen_ws["ws"]))
    assert limited["n"] == 2
    p = one_json(run("predict", "my card has not arrived yet", "--json", "-w", gen_ws["ws"]))
    assert isinstance(p["predictions"][0]["output"], str)


@pytest.mark.integration
def test_chat_completions_are_openai_shaped_streamed_and_traced(gen_ws):
    from fastapi.testclient import TestClient

    from adaptloop.serve.app import create_app
    from adaptloop.store.db import TraceRow
    from adaptloop.workspace import Workspace

    ws = Workspace.open(gen_ws["ws"])
    msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "my card has not arrived"}]
    with TestClient(create_app(ws)) as client:
        r = client.post("/v1/chat/completions", json={"messages": msgs, "max_tokens": 5})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["object"] == "chat.completion" and body["model"] == "v1"
        assert isinstance(body["choices"][0]["message"]["content"], str)
        assert body["choices"][0]["finish_reason"] in ("stop", "length")
        with client.stream("POST", "/v1/chat/completions", json={"messages": msgs, "stream": True,
                                                                 "max_tokens": 5}) as s:
            assert s.status_code == 200 and s.headers["content-type"].startswith("text/event-stream")
            events = [line for line in s.iter_lines() if line.startswith("data: ")]
        assert events[-1] == "data: [DONE]"
        chunks = [json.loads(e[6:]) for e in events[:-1]]
        assert chunks[0]["choices"][0]["delta"] == {"role": "assistant"}
        assert chunks[-1]["choices"][0]["finish_reason"] in ("stop", "length")
        p = client.post("/v1/predict", json={"inputs": ["lost my card", "exchange rate?"]})
        assert p.status_code == 200 and all(isinstance(o["output"], str) for o in p.json()["outputs"])
        assert client.post("/v1/chat/completions", json={"messages": [{"role": "assistant", "content": "hi"}]}
                           ).status_code == 422
        assert client.post("/v1/chat/completions", json={"messages": []}).status_code == 422
    traces = ws.store.all(select(TraceRow))
    assert len(traces) == 4 and sum(t.meta.get("endpoint") == "chat" for t in traces) == 2
