"""AdaptFT-Bench without the data sets: span edits keep entities on their words, and a run keeps the
other scenarios of an earlier run with the same seed and sizes."""

import json

from adaptloop.bench.adaptft import Sizes

TINY = Sizes(per_stage=40, test_n=60, base_budget_s=30, improve_budget_s=30, min_failures=3)


def test_span_edits_move_entities_and_refuse_to_cut_one():
    from adaptloop.bench.generate_spans import edit, truncate

    text, spans = "Call Anna Berg at 555-0101 now", [(5, 14, "PERSON"), (18, 26, "PHONE")]
    new, moved = edit(text, spans, 0, 0, "Hi! ")
    assert [new[s:e] for s, e, _ in moved] == ["Anna Berg", "555-0101"]
    assert edit(text, spans, 7, 9, "xx") is None  # inside an entity
    cut, kept = truncate(text, spans, __import__("random").Random(0))
    assert all(cut[s:e] == text[s:e] for s, e, _ in kept) and all(e <= len(cut) for _, e, _ in kept)


def test_a_run_keeps_the_other_scenarios_of_an_earlier_run_with_the_same_seed_and_sizes(tmp_path):
    from adaptloop.bench.adaptft import _kept, _ordered

    old = {"seed": 0, "sizes": {k: v for k, v in TINY.__dict__.items() if k != "tagger_min_steps"},
           "scenarios": [{"scenario": "snips", "stages": []}, {"scenario": "banking77", "stages": []},
                         {"scenario": "wnut17", "skipped": "older bench"}]}
    (tmp_path / "results.json").write_text(json.dumps(old))
    kept = _kept(tmp_path, TINY, 0, skip=["banking77"])
    assert list(kept) == ["snips"]  # rerun scenarios are replaced, skipped ones are not results
    assert _kept(tmp_path, TINY, 1, skip=[]) == {}
    assert _kept(tmp_path, Sizes(41, 60, 30, 30, 3), 0, skip=[]) == {}
    merged = _ordered({**kept, "clinc150": {"scenario": "clinc150"}, "banking77": {"scenario": "banking77"}})
    assert [s["scenario"] for s in merged] == ["banking77", "clinc150", "snips"]
