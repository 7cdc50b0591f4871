"""A task from a prompt alone: offline PII from Faker templates, an LLM drafter behind a scripted server."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from adaptloop.agent.synthesize import draft_task
from adaptloop.data import synth_pii
from adaptloop.data.llm import LLMClient
from adaptloop.data.sources import load_extraction
from adaptloop.errors import AdaptloopError
from adaptloop.store.db import LLMCall
from adaptloop.workspace import Workspace, init_workspace
from tests.llm_server import ScriptedLLM


@pytest.fixture
def ws(tmp_path):
    return Workspace.open(init_workspace(tmp_path / "ws"))


def test_every_faker_span_covers_exactly_its_value_and_templates_split_cleanly():
    eval_pool, train_pool = synth_pii.pools()
    assert eval_pool and train_pool and not set(eval_pool) & set(train_pool)
    records = synth_pii.generate(300, part="train", prompt="find PII")
    assert any(not r["spans"] for r in records), "hard negatives: sentences with no PII"
    for r in records:
        for s in r["spans"]:
            value = r["text"][s["start"]:s["end"]]
            assert value and value == value.strip() and s["label"] in synth_pii.DEFINITIONS
        assert r["provenance"]["teacher"].startswith("faker") and len(r["provenance"]["prompt_hash"]) == 16
    again = synth_pii.generate(300, part="train", prompt="find PII")
    assert again == records, "same prompt and seed, same data"
    ids = {synth_pii.template_id(t) for t in eval_pool}
    assert all(r["group"] in ids for r in synth_pii.generate(100, part="eval", prompt="find PII"))


def test_the_pii_prompt_is_drafted_offline_eval_first_and_decontaminated(ws):
    seen = []
    d = draft_task(ws, "build me a PII detection model", confirm=lambda spec: seen.append(spec) or True)
    assert seen and seen[0]["family"] == "extraction" and "PERSON" in seen[0]["definitions"]
    train, held = load_extraction(d.train), load_extraction(d.eval)
    assert not train.quarantined and not held.quarantined
    assert len(held.examples) == d.counts["eval"] and len(train.examples) == d.counts["train"]
    assert not {e.group for e in train.examples} & {e.group for e in held.examples}, "eval templates unseen"
    assert all("provenance" in json.loads(line) for line in d.train.read_text().splitlines())


def test_a_declined_draft_writes_nothing(ws):
    with pytest.raises(AdaptloopError, match="not accepted"):
        draft_task(ws, "redact personal data from tickets", confirm=lambda _: False)
    assert not list((ws.root / "synthetic").rglob("*.jsonl"))


def test_offline_and_no_library_for_the_task_is_one_line_saying_what_to_give(ws):
    with pytest.raises(AdaptloopError, match=r"--data FILE.*\[llm\] url") as err:
        draft_task(ws, "build me a sentiment classifier")
    assert "\n" not in str(err.value)


def _spec(family="extraction", labels=("DRUG", "DOSE")):
    return json.dumps({"family": family, "labels": list(labels),
                       "definitions": {k: f"a {k.lower()}" for k in labels}, "edge_cases": ["brand names count"]})


def _batch(*examples):
    return json.dumps({"examples": list(examples)})


def test_the_llm_drafts_the_spec_then_the_eval_set_then_training_data(ws, monkeypatch):
    import adaptloop.agent.synthesize as synth

    monkeypatch.setattr(synth, "LLM_EVAL_PER_LABEL", 2)
    monkeypatch.setattr(synth, "LLM_TRAIN_PER_LABEL", 2)
    monkeypatch.setattr(synth, "LLM_BATCH", 2)
    good = {"text": "Take 200 mg of ibuprofen daily.", "entities": [{"text": "ibuprofen", "label": "DRUG"},
                                                                    {"text": "200 mg", "label": "DOSE"}]}
    invented = {"text": "Take aspirin.", "entities": [{"text": "paracetamol", "label": "DRUG"}]}
    script = [_spec(),
              _batch(good, invented),  # eval DRUG: the invented entity is dropped
              _batch({"text": "5 ml twice a day of amoxicillin", "entities": [
                  {"text": "5 ml", "label": "DOSE"}, {"text": "amoxicillin", "label": "DRUG"}]}),  # eval DOSE
              _batch(good, {"text": "Metformin with food, 500 mg.", "entities": [
                  {"text": "Metformin", "label": "DRUG"}, {"text": "500 mg", "label": "DOSE"}]}),  # train DRUG
              "not json at all", "still not json",  # train DOSE: malformed twice (one repair) → nothing
              _batch({"text": "The dose was discussed at length.", "entities": []}),  # boundary DRUG
              _batch({"text": "Doctor Doseman called.", "entities": []})]  # boundary DOSE
    with ScriptedLLM(script) as server:
        d = draft_task(ws, "find drugs and doses in notes", llm=LLMClient(server.url, "teacher-x", timeout=5))
    assert d.family == "extraction" and d.labels == ("DRUG", "DOSE") and d.teacher == "teacher-x"
    held = [json.loads(line) for line in d.eval.read_text().splitlines()]
    assert [r["text"] for r in held] == [good["text"], "5 ml twice a day of amoxicillin"]
    train = [json.loads(line) for line in d.train.read_text().splitlines()]
    assert good["text"] not in {r["text"] for r in train}, "a copy of an eval example is removed from training"
    assert d.counts["near_duplicates_removed"] == 1
    assert {r["text"] for r in train} == {"Metformin with food, 500 mg.", "The dose was discussed at length.",
                                          "Doctor Doseman called."}
    assert all(r["provenance"]["teacher"] == "teacher-x" for r in train + held)
    calls = ws.store.all(select(LLMCall).where(LLMCall.role == "synth"))
    assert len(calls) == 7 and calls[0].fed == "spec"
    assert sum(c.outcome.startswith("rejected") for c in calls) == 1


def test_an_llm_that_drafts_no_usable_task_is_one_clear_line(ws):
    with ScriptedLLM(["no", "still no"]) as server, pytest.raises(AdaptloopError, match="--data FILE"):
        draft_task(ws, "build me anything", llm=LLMClient(server.url, "m", timeout=5))
