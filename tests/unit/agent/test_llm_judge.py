"""The LLM judge in production, behind a scripted OpenAI-compatible server on loopback: traces without
feedback get a verdict and a corrected label; the judge is one more feedback source (triage sees it), it
never overwrites a person's feedback, and what only it labelled trains but never enters an eval set."""

from __future__ import annotations

import json

from sqlalchemy import select

from adaptloop.agent.coldstart import cold_start
from adaptloop.agent.improve import ImproveCycle
from adaptloop.agent.traffic import import_traces
from adaptloop.data.llm import LLMClient
from adaptloop.data.sources import load_classification
from adaptloop.store.db import Decision, LLMCall, TraceRow, TraceUse
from adaptloop.train.fake import FakeTrainer, _features
from adaptloop.workspace import Workspace, init_workspace
from tests.conftest import subset, write_jsonl
from tests.llm_server import ScriptedLLM


def test_the_judge_labels_unlabelled_traces_as_a_source_that_never_reaches_an_eval_set(tmp_path, banking_sample):
    ws = Workspace.open(init_workspace(tmp_path / "ws"))
    ws.settings.search.workers, ws.settings.agent.plateau_rounds = 1, 1
    ws.settings.llm.judge_max = 12
    cold_start(ws, load_classification(write_jsonl(tmp_path / "seed.jsonl", subset(banking_sample, 5, 12))),
               "route banking messages", 60, make_trainer=lambda s: FakeTrainer(), embed_fn=_features)
    rows = subset(banking_sample, 5, 60, offset=12)
    labels = sorted({r["label"] for r in rows})
    gold, rest = rows[:150], rows[150:]
    traces = [{"id": f"g{i}", "ts": f"2026-11-01T10:{i // 60:02d}:{i % 60:02d}", "input": r["text"],
               "output": {"label": labels[(labels.index(r["label"]) + 1) % len(labels)] if i % 3 == 0
                          else r["label"]},
               "feedback": {"label": r["label"], "source": f"user{i % 5}"}} for i, r in enumerate(gold)]
    unlabelled = rest[:16]
    traces += [{"id": f"u{i}", "ts": f"2026-11-01T12:00:{i:02d}", "input": r["text"],
                "output": {"label": labels[(labels.index(r["label"]) + 1) % len(labels)]}}
               for i, r in enumerate(unlabelled)]
    import_traces(ws, str(write_jsonl(tmp_path / "traces.jsonl", traces)))

    def wrong(i):
        return json.dumps({"verdict": "wrong", "label": unlabelled[i]["label"], "rationale": "the text asks that"})

    script = [wrong(0), json.dumps({"verdict": "unsure", "rationale": "ambiguous"}), "no json", "still none",
              json.dumps({"verdict": "wrong", "label": "not-a-label", "rationale": "?"})] + \
             [wrong(i) for i in range(4, 12)]
    with ScriptedLLM(script) as server:
        result = ImproveCycle(ws, 60, make_trainer=lambda s: FakeTrainer(), embed_fn=_features,
                              llm=LLMClient(server.url, "judge-m", timeout=5)).run()
        asked = [r["messages"][-1]["content"] for r in server.requests]
    assert len(asked) == 13  # 12 traces, one of them asked twice (the repair request)
    assert not any(t["input"] in a for t in traces[:150] for a in asked), "a person's feedback is never re-judged"
    calls = ws.store.all(select(LLMCall).where(LLMCall.role == "judge"))
    assert len(calls) == 12 and all(c.run_id == result.run_id for c in calls)
    assert sum(c.outcome.startswith("rejected") for c in calls) == 1
    by_judge = ws.store.all(select(TraceRow).where(TraceRow.feedback_source == "llm-judge:judge-m"))
    corrected = {t.id: t.feedback_label for t in by_judge if t.feedback_label}
    assert corrected == {f"u{i}": unlabelled[i]["label"] for i in [0, *range(4, 12)]}
    assert {t.id for t in by_judge} - set(corrected) == {"u3"}  # wrong, with no usable label: a signal only
    uses = ws.store.all(select(TraceUse).where(TraceUse.trace_id.in_([t.id for t in by_judge])))
    assert uses and {u.role for u in uses} <= {"train", "dropped"}, "judge labels train, never eval or dev"
    assert result.curriculum["judge_labelled"] > 0 and result.curriculum["checkpoint_eval"] > 0
    kinds = [d.kind for d in ws.store.all(select(Decision).where(Decision.run_id == result.run_id))]
    assert kinds.index("llm_judge") < kinds.index("triage")
