"""The generation cold start through the CLI with a tiny real causal LM on banking77 messages: the family
from the prompt and the data, the eval set frozen before any training, base → fine-tune nodes with
findings, the first model's gate (a useless model is refused), `eval` (exact match + diagnosis),
`predict` and the chat endpoint. (The pure pieces, targets, presentation, family choice, diagnosis and
decode moves, are in tests/unit.)"""

from __future__ import annotations

import json

import pytest
import tomli_w
from sqlalchemy import select

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

from tests.conftest import one_json, read_rows, run, subset, write_jsonl

pytestmark = pytest.mark.integration


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
    # the tiny random LM answers nothing right, so the cold start refuses it (asserted below); an admin's
    # forced promotion puts it in production for the eval, predict and serving tests
    from adaptloop.store import registry
    from adaptloop.workspace import Workspace

    registry.force_promote(Workspace.open(ws).store, r["version"], who="tests", why="serve the tiny model")
    return {"ws": ws, "new": r, "test": test}


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
    # no better than always answering the most frequent label on the frozen eval set: registered, refused
    assert r["winner"]["promoted"] is False and r["winner"]["constant_baseline"]["no_better"]
    store = Workspace.open(gen_ws["ws"]).store
    kinds = [d.kind for d in store.all(select(Decision).order_by(Decision.id))]
    assert kinds.index("eval_set_frozen") < kinds.index("expand")
    assert "select" in kinds and "diagnosis" in kinds and "refuse" in kinds
    assert store.all(select(FindingRow))  # the base model's failures are diagnosed
    assert [q.reason for q in store.all(select(Quarantine))][0].startswith("missing or empty target")


def test_generation_eval_and_predict(gen_ws):
    r = one_json(run("eval", "--data", gen_ws["test"], "--json", "-w", gen_ws["ws"]))
    assert r["kind"] == "label" and r["n"] == 9 and 0.0 <= r["exact_match"] <= 1.0
    assert {"format_ok", "findings", "examples_wrong"} <= set(r)
    limited = one_json(run("eval", "--data", gen_ws["test"], "--limit", "2", "--json", "-w", gen_ws["ws"]))
    assert limited["n"] == 2
    p = one_json(run("predict", "my card has not arrived yet", "--json", "-w", gen_ws["ws"]))
    assert isinstance(p["predictions"][0]["output"], str)


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
