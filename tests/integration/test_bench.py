"""AdaptFT-Bench on the public data sets: the log generator (pure, on real snips text), the triage of what
it plants, the report, and a whole tiny bench behind the fake trainer seam. (Span edits and the merge of an
earlier run's results: tests/unit/bench/test_bench.py.)"""

import json
from collections import Counter

import pytest
from typer.testing import CliRunner

from adaptloop.bench import generate as gen
from adaptloop.bench.adaptft import SCENARIOS, Sizes, generate, run
from adaptloop.bench.report import summary, table_md
from adaptloop.cli import app
from adaptloop.data.traces import parse_trace
from adaptloop.diagnose import triage as tri
from adaptloop.train.fake import _features, fake_trainer
from tests.conftest import DATASETS, read_rows

pytestmark = pytest.mark.integration

TINY = Sizes(per_stage=40, test_n=60, base_budget_s=30, improve_budget_s=30, min_failures=3)


@pytest.fixture(scope="module")
def snips_pool():
    rows = read_rows("snips", "train")[::4]
    return [(r["text"], r["label"]) for r in rows], sorted({r["label"] for r in rows})


def test_stages_are_deterministic_disjoint_and_poisoned_at_the_rates_asked(snips_pool):
    pool, labels = snips_pool
    stages = gen.generate_stages(pool, labels, rates=(0.15, 0.25, 0.4), per_stage=400, prefix="x", seed=3)
    again = gen.generate_stages(pool, labels, rates=(0.15, 0.25, 0.4), per_stage=400, prefix="x", seed=3)
    other = gen.generate_stages(pool, labels, rates=(0.15, 0.25, 0.4), per_stage=400, prefix="x", seed=4)
    assert [s.traces() for s in stages] == [s.traces() for s in again]
    assert [s.traces() for s in stages] != [s.traces() for s in other]
    ids = [t["id"] for s in stages for t in s.traces()]
    assert len(ids) == len(set(ids)) == 1200
    for s, rate in zip(stages, (0.15, 0.25, 0.4)):
        answers = s.answers()
        assert abs(sum(a["poison"] for a in answers) / len(answers) - rate) < 0.01
        for t, a in zip(s.traces(), answers):
            parse_trace(t)  # every log is a valid trace
            assert a["id"] == t["id"] and t["feedback"]["label"] == a["feedback"]
            if not a["poison"]:
                assert a["feedback"] == a["label"]  # fixable noise never changes the label
    kinds = Counter(a["kind"] for s in stages for a in s.answers())
    assert set(kinds) == set(gen.FIXABLE_KINDS) | set(gen.POISON_KINDS)
    # a burst: one source, one input, one attacker label, at least BURST_SIZE[0] times
    burst = [t for s in stages for t, a in zip(s.traces(), s.answers()) if a["kind"] == "burst"]
    groups = Counter((t["feedback"]["source"], t["input"], t["feedback"]["label"]) for t in burst)
    assert min(groups.values()) >= gen.BURST_SIZE[0]
    # mislabeled feedback is mostly systematic: one class consistently relabelled as another
    flips = Counter((a["label"], a["feedback"]) for s in stages for a in s.answers() if a["kind"] == "mislabel")
    assert flips.most_common(1)[0][1] >= 0.4 * sum(flips.values())
    # the logs come from the pool, and the seed sets / eval data never enter it (the caller's job)
    assert all(a["label"] in labels for s in stages for a in s.answers())


def test_too_small_a_pool_is_a_clear_error(snips_pool):
    pool, labels = snips_pool
    with pytest.raises(ValueError, match="cannot fill 3 stages"):
        gen.generate_stages(pool[:100], labels, rates=(0.1, 0.2, 0.3), per_stage=50, prefix="x", seed=0)


def test_the_triage_rules_catch_the_planted_text_poison_and_spare_the_fixable_noise(snips_pool):
    pool, labels = snips_pool
    stages = gen.generate_stages(pool, labels, rates=(0.4,), per_stage=600, prefix="x", seed=0)
    caught, spared = Counter(), Counter()
    for t, a in zip(stages[0].traces(), stages[0].answers()):
        hit = tri.injection(t["input"]) or tri.retraction(t["input"]) or tri.contradiction(t["input"])
        if a["poison"]:
            caught[a["kind"], bool(hit)] += 1
        else:
            spared[bool(hit)] += 1
    for kind in ("injection", "negation", "contradiction"):
        assert caught[kind, False] == 0, kind
    assert spared[True] <= 0.01 * sum(spared.values())


def test_generate_holds_the_test_split_out():
    g = generate(SCENARIOS["snips"], datasets=DATASETS, sizes=TINY, seed=0)
    logged = {t["input"] for s in g.stages for t in s.traces()}
    assert len(g.seed_rows) == 10 * 7 and len(g.test_rows) == 60
    assert {r["text"] for r in g.test_rows} <= {r["text"] for r in read_rows("snips", "test")}
    assert not {r["text"] for r in g.seed_rows} & logged


def test_span_logs_keep_every_entity_on_its_words_and_plant_span_poison():
    g = generate(SCENARIOS["presidio_pii"], datasets=DATASETS, sizes=Sizes(120, 40, 30, 30, 3), seed=0)
    seed_types = Counter(s["label"] for r in g.seed_rows for s in r["spans"])
    assert min(seed_types.values()) >= 1 and len(g.seed_rows) == 200
    originals = {r["text"] for r in read_rows("presidio_pii", "train") + read_rows("presidio_pii", "validation")}
    kinds = Counter()
    for stage in g.stages:
        for t, a in zip(stage.traces(), stage.answers()):
            text, fb = t["input"], t["feedback"]["entities"]
            assert fb == a["feedback"] and parse_trace(t).feedback_spans is not None
            kinds[a["kind"]] += 1
            for s, e, typ in a["label"]:
                assert typ in seed_types and text[s:e] == text[s:e].strip() and e <= len(text)
            if not a["poison"]:
                assert a["feedback"] == a["label"]  # fixable: the true entities, moved with the edit
                if a["kind"] == "preamble":
                    assert not text.startswith(tuple(originals)) or not a["label"]
            elif a["kind"] == "mislabel":
                assert [sp[:2] for sp in fb] == [sp[:2] for sp in a["label"]] and fb != a["label"]
            elif a["kind"] in ("injection", "burst"):
                assert len({sp[2] for sp in fb}) == 1 and fb != a["label"]
    assert set(kinds) >= set(gen.POISON_KINDS) | {"clean", "typo", "truncation"}
    again = generate(SCENARIOS["presidio_pii"], datasets=DATASETS, sizes=Sizes(120, 40, 30, 30, 3), seed=0)
    assert [s.traces() for s in again.stages] == [s.traces() for s in g.stages]


def test_a_tiny_bench_end_to_end_behind_the_fake_trainer(tmp_path):
    doc = run(["snips", "wnut17"], quick=True, seed=0, out=tmp_path, datasets=DATASETS, sizes=TINY,
              log=lambda m: None, make_trainer=fake_trainer, embed_fn=lambda t: _features(t), workers=1)
    snips, wnut = doc["scenarios"]
    assert len(snips["stages"]) == 3 and len(wnut["stages"]) == 3 and wnut["metric"] != "accuracy"
    for sc in (snips, wnut):
        for st in sc["stages"]:  # the agent keeps production unless a candidate passed: never below the base
            assert st["agent"]["metric"] >= sc["base"]["metric"] - 1e-9 or st["agent"]["decision"] == "promoted"
    for st in snips["stages"] + wnut["stages"]:
        assert {"agent", "naive", "naive-latest", "oracle"} <= set(st)
        assert 0 <= st["agent"]["triage"]["precision"] <= 1 and st["agent"]["triage"]["tp"] > 0
        assert st["naive"]["train"] > st["oracle"]["train"]  # naive also learns the poison
        # naive-latest: the seed + this stage's logs only (every earlier stage's are dropped)
        assert st["naive-latest"]["train"] == snips["seed_examples"] + TINY.per_stage if st in snips["stages"] \
            else st["naive-latest"]["train"] <= st["naive"]["train"]
    assert snips["stages"][-1]["naive-latest"]["train"] < snips["stages"][-1]["naive"]["train"]
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["summary"]["scenarios_run"] == 2 and saved["summary"] == summary(saved["scenarios"])
    table = (tmp_path / "table.md").read_text()
    assert "| snips |" in table and "| wnut17 |" in table
    assert "<svg" in (tmp_path / "plot.html").read_text()
    assert table == table_md(saved)
    assert (tmp_path / "snips" / "logs" / "stage3.answers.jsonl").exists()
    # a rerun into the same folder starts from a fresh workspace, so the agent sees every log again
    again = run(["snips"], quick=True, seed=0, out=tmp_path, datasets=DATASETS, sizes=TINY, log=lambda m: None,
                make_trainer=fake_trainer, embed_fn=lambda t: _features(t), workers=1)
    rerun = next(s for s in again["scenarios"] if s["scenario"] == "snips")
    assert [st["agent"]["imported"] for st in rerun["stages"]] == [TINY.per_stage] * 3


def test_cli_generate_writes_logs_and_rejects_unknown_scenarios(tmp_path):
    r = CliRunner().invoke(app, ["bench", "adaptft", "generate", "--scenarios", "snips", "--quick", "--out",
                                 str(tmp_path), "--datasets", str(DATASETS), "--json"])
    assert r.exit_code == 0, r.output
    files = json.loads(r.stdout)["written"]["snips"]
    assert sum(1 for _ in open(files["stage1"])) == 100
    r = CliRunner().invoke(app, ["bench", "adaptft", "generate", "--scenarios", "nope", "--out", str(tmp_path)])
    assert r.exit_code == 2 and "unknown scenario" in r.output


def test_the_shipped_portfolio_is_what_the_kept_benchmark_results_give():
    """adaptloop/search/portfolio.json is generated from benchmarks/results, never edited by hand."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[2] / "benchmarks" / "portfolio.py"
    done = subprocess.run([sys.executable, str(script), "--check"], capture_output=True, text=True,
                          env={**os.environ, "ADAPTLOOP_DATASETS": str(DATASETS)})
    assert done.returncode == 0, done.stdout + done.stderr
