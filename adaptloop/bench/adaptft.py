"""AdaptFT-Bench: noisy production logs that punish naive retraining.

A scenario is (task dataset, base encoder). Each deploys a base model cold-started on a
small seed set, then plays three stages of synthetic logs (``bench.generate``) drawn from
training data the model never saw, with poison rates 15% → 25% → 40%. Three methods see
the same logs:

- **agent**: ``traces import`` + one ``improve`` cycle per stage (triage, curriculum,
  retrain, regression gate; it promotes or refuses);
- **naive**: the base pipeline retrained on the seed set + all feedback so far, always
  promoted;
- **naive-latest**: the base pipeline retrained on the seed set + the latest stage's feedback
  only (the nightly retrain on the newest labelled traffic), always promoted — it meets each
  stage's poison rate undiluted by earlier, cleaner stages;
- **oracle**: the same pipeline on the seed set + only the truly fixable logs (true
  labels) — the ceiling.

Every stage scores each method's model on a fixed sample of the official test split (never
in the logs): the primary metric, previously-correct examples broken (against the method's
model of the stage before), and for the agent the triage's precision / recall for poison
against the answer file, its decision and wall time. ``run`` writes results.json,
table.md and plot.html.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from adaptloop.bench.generate import Stage, generate_stages
from adaptloop.errors import DataError

RATES = (0.15, 0.25, 0.40)
METHODS = ("agent", "naive", "naive-latest", "oracle")
MINILM = "sentence-transformers/all-MiniLM-L6-v2"
MPNET = "sentence-transformers/all-mpnet-base-v2"
SEED_PER_TYPE = 5  # extraction seed sets hold at least this many mentions of every entity type


@dataclass(frozen=True)
class Scenario:
    """(dataset, base encoder) and the sizes that keep a stage affordable on a CPU."""

    name: str
    dataset: str
    prompt: str
    encoder: str = MINILM
    per_class: int = 8  # seed examples per class
    family: str = "classification"
    seed_n: int = 0  # extraction: seed sentences
    budget_scale: float = 1.0  # a tagger needs more time than a frozen encoder: both budgets × this
    max_per_stage: int | None = None  # a small dataset: fewer logs per stage than the size asks


SCENARIOS: dict[str, Scenario] = {s.name: s for s in (
    Scenario("banking77", "banking77", "classify online banking customer queries by intent"),
    Scenario("clinc150", "clinc150", "classify requests to a virtual assistant by intent", per_class=5),
    Scenario("snips", "snips", "classify voice assistant commands by intent", per_class=10),
    Scenario("wnut17", "wnut17", "extract emerging entities from social media text", family="extraction",
             seed_n=400, budget_scale=1.5),
    Scenario("presidio_pii", "presidio_pii", "build me a PII detection model", family="extraction", seed_n=200,
             max_per_stage=350, budget_scale=1.5),
    Scenario("banking77-mpnet", "banking77", "classify online banking customer queries by intent", encoder=MPNET),
    Scenario("snips-mpnet", "snips", "classify voice assistant commands by intent", encoder=MPNET, per_class=10),
)}


@dataclass(frozen=True)
class Sizes:
    per_stage: int  # logs per stage
    test_n: int  # test examples scored per model and stage
    base_budget_s: float
    improve_budget_s: float
    min_failures: int
    scale_budgets: bool = True  # extraction scenarios get ``budget_scale`` × both budgets
    tagger_min_steps: int | None = None  # the baselines' tagger refits: fewer updates than the trainer's floor


FULL = Sizes(per_stage=500, test_n=1000, base_budget_s=120, improve_budget_s=180, min_failures=20)
QUICK = Sizes(per_stage=100, test_n=300, base_budget_s=40, improve_budget_s=45, min_failures=10,
              scale_budgets=False, tagger_min_steps=30)


def default_datasets() -> Path:
    """``ADAPTLOOP_DATASETS``, else ``../shared/datasets`` beside the checkout."""
    env = os.environ.get("ADAPTLOOP_DATASETS")
    return Path(env) if env else Path(__file__).resolve().parents[2].parent / "shared" / "datasets"


def _read(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


@dataclass
class Generated:
    scenario: Scenario
    seed_rows: list[dict[str, Any]]
    stages: list[Stage]
    test_rows: list[dict[str, Any]]


TRAFFIC = ("a", "b")  # bench.generate, and bench.generate_b: written apart from the triage, as a held-out check


def generate(scenario: Scenario, *, datasets: Path, sizes: Sizes, seed: int, traffic: str = "a",
             detail: bool = False) -> Generated:
    """The seed set, the stages' logs (with answers) and the test sample of one scenario; ``traffic``
    picks the log generator of a classification scenario (``TRAFFIC``).

    Raises:
        DataError: the dataset is missing.
    """
    folder = datasets / scenario.dataset
    if not (folder / "train.jsonl").exists():
        raise DataError(f"{folder / 'train.jsonl'} not found; pass --datasets DIR (the folder holding "
                        f"{scenario.dataset}/)")
    if scenario.family == "extraction":
        return _generate_spans(scenario, folder, sizes, seed)
    rng = random.Random(seed)
    train = _read(folder / "train.jsonl")
    rng.shuffle(train)
    per_label: dict[str, int] = defaultdict(int)
    seed_rows, pool = [], []
    for r in train:
        if per_label[r["label"]] < scenario.per_class:
            per_label[r["label"]] += 1
            seed_rows.append({"text": r["text"], "label": r["label"]})
        else:
            pool.append((r["text"], r["label"]))
    labels = sorted(per_label)
    if traffic not in TRAFFIC:
        raise ValueError(f"unknown traffic generator '{traffic}'; choose one of {', '.join(TRAFFIC)}")
    if traffic == "b":
        from adaptloop.bench.generate_b import generate_stages as generate_b

        stages = generate_b(pool, labels, rates=RATES, per_stage=sizes.per_stage, prefix=scenario.name, seed=seed,
                            detail=detail)
    else:
        stages = generate_stages(pool, labels, rates=RATES, per_stage=sizes.per_stage, prefix=scenario.name,
                                 seed=seed)
    test = _read(folder / "test.jsonl")
    test_rows = rng.sample(test, sizes.test_n) if sizes.test_n < len(test) else test
    return Generated(scenario, seed_rows, stages, [{"text": r["text"], "label": r["label"]} for r in test_rows])


def _generate_spans(scenario: Scenario, folder: Path, sizes: Sizes, seed: int) -> Generated:
    """Extraction: a random seed set of sentences; the logs from train + validation's rest."""
    from adaptloop.bench.generate_spans import generate_span_stages
    from adaptloop.data.sources import load_extraction

    rng = random.Random(seed)
    train = [e for name in ("train", "validation") if (folder / f"{name}.jsonl").exists()
             for e in load_extraction(folder / f"{name}.jsonl").examples]
    rng.shuffle(train)
    chosen = _covering(train, scenario.seed_n)
    seed_rows = [_span_row(e.text, e.spans) for e in chosen]
    taken = {id(e) for e in chosen}
    pool = [(e.text, e.spans) for e in train if id(e) not in taken]
    types = sorted({t for e in chosen for *_, t in e.spans})
    pool = [(t, sp) for t, sp in pool if all(x[2] in types for x in sp)]  # a type the seed lacks: not the task's
    per_stage = min(sizes.per_stage, scenario.max_per_stage or sizes.per_stage)
    stages = generate_span_stages(pool, types, rates=RATES, per_stage=per_stage, prefix=scenario.name, seed=seed)
    test = list(load_extraction(folder / "test.jsonl").examples)
    test = rng.sample(test, sizes.test_n) if sizes.test_n < len(test) else test
    return Generated(scenario, seed_rows, stages, [_span_row(e.text, e.spans) for e in test])


def _covering(examples: list[Any], n: int, per_type: int = SEED_PER_TYPE) -> list[Any]:
    """``n`` examples: first enough to give every entity type ``per_type`` mentions (where the data
    has them), then the rest in order."""
    have: Counter = Counter()
    first = []
    for e in examples:
        if any(have[t] < per_type for *_, t in e.spans):
            first.append(e)
            have.update(t for *_, t in e.spans)
    chosen = {id(e) for e in first[:n]}
    return first[:n] + [e for e in examples if id(e) not in chosen][:max(0, n - len(first))]


def _span_row(text: str, spans: Sequence[tuple[int, int, str]]) -> dict[str, Any]:
    return {"text": text, "spans": [{"start": s, "end": e, "label": t} for s, e, t in spans]}


def _example(scenario: Scenario, text: str, label: Any, source: str = "") -> Any:
    """A seed, test or feedback row as an Example (extraction: ``label`` holds the entities)."""
    from adaptloop.data.spans import strat_key
    from adaptloop.types import Example

    if scenario.family != "extraction":
        return Example(text=text, label=label, source=source)
    spans = tuple(sorted((sp["start"], sp["end"], sp["label"]) if isinstance(sp, dict) else tuple(sp)
                         for sp in label))
    return Example(text=text, label=strat_key(spans), spans=spans, source=source)


def _known(scenario: Scenario, label: Any, labels: Sequence[str]) -> bool:
    """Whether a feedback label (extraction: every entity's type) belongs to the task."""
    if scenario.family != "extraction":
        return label in labels
    return all((sp["label"] if isinstance(sp, dict) else sp[2]) in labels for sp in label)


def write_generated(g: Generated, out: Path) -> dict[str, str]:
    """seed.jsonl, test.jsonl, stageN.jsonl (traces) and stageN.answers.jsonl into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    files = {"seed": out / "seed.jsonl", "test": out / "test.jsonl"}
    for s in g.stages:
        files[f"stage{s.number}"] = out / f"stage{s.number}.jsonl"
        files[f"stage{s.number}.answers"] = out / f"stage{s.number}.answers.jsonl"
    _write(files["seed"], g.seed_rows)
    _write(files["test"], g.test_rows)
    for s in g.stages:
        _write(files[f"stage{s.number}"], s.traces())
        _write(files[f"stage{s.number}.answers"], s.answers())
    return {k: str(v) for k, v in files.items()}


def _write(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    with path.open("w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


# ---------------------------------------------------------------------------- running one scenario
def run_scenario(scenario: Scenario, *, datasets: Path, sizes: Sizes, seed: int, out: Path,
                 progress: Any = None, log: Callable[[str], None] = print,
                 make_trainer: Callable[[str], Any] | None = None, embed_fn: Any = "encoder",
                 workers: int | None = None) -> dict[str, Any]:
    """Deploy, play the stages with every method, and score; returns the scenario's results.

    ``make_trainer`` / ``embed_fn`` are the seams tests fill with fakes (default: the real
    backends and the workspace encoder); ``workers`` overrides ``[search] workers``.
    """
    from adaptloop.agent.coldstart import cold_start
    from adaptloop.agent.improve import ImproveCycle
    from adaptloop.agent.predict import load_version
    from adaptloop.agent.traffic import import_traces
    from adaptloop.data.sources import load_for
    from adaptloop.store import registry
    from adaptloop.train import trainer_for
    from adaptloop.train.base import no_progress

    progress = progress or no_progress
    make_trainer = make_trainer or trainer_for
    t_start = time.monotonic()
    g = generate(scenario, datasets=datasets, sizes=sizes, seed=seed)
    folder = out / scenario.name
    # a rerun into the same --out starts from a fresh workspace: the old one holds every log already
    # (same ids), so the agent would import nothing and every stage would be a no-op
    shutil.rmtree(folder / "ws", ignore_errors=True)
    files = write_generated(g, folder / "logs")
    ws = _workspace(scenario, folder / "ws", sizes, seed, workers)
    scale = scenario.budget_scale if sizes.scale_budgets else 1.0
    base_s, improve_s = sizes.base_budget_s * scale, sizes.improve_budget_s * scale
    log(f"[{scenario.name}] cold start on {len(g.seed_rows)} seed examples ({base_s:.0f}s)")
    cold = cold_start(ws, load_for(files["seed"], scenario.prompt), scenario.prompt, base_s,
                      progress=progress, make_trainer=make_trainer, embed_fn=embed_fn)
    if cold.version is None:
        raise DataError(f"scenario {scenario.name}: the cold start trained nothing ({cold.stop_reason})")
    if registry.alias_target(ws.store, "production") is None:  # the winner was refused: no better than a constant
        log(f"[{scenario.name}] the cold start's winner v{cold.version} was not promoted ({cold.stop_reason}); "
            "the benchmark deploys it as the base all methods start from")
        registry.force_promote(ws.store, cold.version, who="adaptft-bench",
                               why="the benchmark's base: the cold start's winner, deployed whether or not it "
                                   "beats a constant answer")
    _, spec, base = load_version(ws, "production", cached=True)
    gold = "spans" if scenario.family == "extraction" else "label"
    test = [_example(scenario, r["text"], r[gold]) for r in g.test_rows]
    seed_ex = [_example(scenario, r["text"], r[gold], "seed") for r in g.seed_rows]
    score = _scorer(spec, test, progress)
    base_score = score(base)
    prev = {m: base_score for m in METHODS}
    fit = _refitter(ws, cold.run_id, spec, progress, make_trainer, sizes.tagger_min_steps)
    stages_out = []
    logged = {t["id"]: t["input"] for s in g.stages for t in s.traces()}  # what the methods train on
    answers_so_far: list[dict[str, Any]] = []
    for stage in g.stages:
        answers_so_far += [dict(a, text=logged[a["id"]]) for a in stage.answers()]
        row: dict[str, Any] = {"stage": stage.number, "poison_rate": stage.poison_rate, "logs": len(stage.logs),
                               "poison_logs": sum(a["poison"] for a in stage.answers())}
        # agent: import the logs, one improve cycle
        t0 = time.monotonic()
        imported = import_traces(ws, files[f"stage{stage.number}"])
        result = ImproveCycle(ws, improve_s, progress=progress, make_trainer=make_trainer,
                              embed_fn=None if embed_fn == "encoder" else embed_fn).run()
        _, _, model = load_version(ws, "production", cached=True)
        now = score(model)
        row["agent"] = {**_compare(prev["agent"], now), "decision": result.decision,
                        "rolled_back": result.rolled_back,
                        "triage": _triage_quality(ws, stage.answers()), "imported": imported["new"],
                        "wall_s": round(time.monotonic() - t0, 1), "reason": result.reason[:300]}
        prev["agent"] = now
        _baselines(scenario, row, prev, answers_so_far, len(stage.logs), seed_ex, spec, fit, score)
        stages_out.append(row)
        log(f"[{scenario.name}] stage {stage.number} ({stage.poison_rate:.0%} poison): " + ", ".join(
            f"{m} {row[m]['metric']:.4f}" for m in METHODS) + f"; agent {row['agent']['decision']}, "
            f"poison P/R {row['agent']['triage']['precision']:.2f}/{row['agent']['triage']['recall']:.2f}")
    return {"scenario": scenario.name, "dataset": scenario.dataset, "encoder": scenario.encoder,
            "family": scenario.family, "metric": spec.primary_metric, "seed_examples": len(seed_ex),
            "test_examples": len(test), "base": {"metric": base_score["metric"], "version": f"v{cold.version}",
                                                 "winner": (cold.winner or {}).get("node")},
            "stages": stages_out, "wall_s": round(time.monotonic() - t_start, 1), "files": files}


def _workspace(scenario: Scenario, root: Path, sizes: Sizes, seed: int, workers: int | None) -> Any:
    """A fresh workspace for one scenario: its encoder alone on the ladder, the sizes' failure minimum."""
    from adaptloop.config import Settings
    from adaptloop.workspace import Workspace, init_workspace

    settings = Settings()
    settings = settings.model_copy(update={
        "train": settings.train.model_copy(update={"encoder": scenario.encoder, "ladder": [scenario.encoder],
                                                   "seed": seed}),
        "improve": settings.improve.model_copy(update={"min_failures": sizes.min_failures}),
        "search": settings.search.model_copy(update={"workers": workers or settings.search.workers})})
    return Workspace.open(init_workspace(root, settings=settings))


def _baselines(scenario: Scenario, row: dict[str, Any], prev: dict[str, Any], answers_so_far: list[dict[str, Any]],
               n_latest: int, seed_ex: list[Any], spec: Any, fit: Callable[[list[Any]], Any],
               score: Callable[[Any], dict[str, Any]]) -> None:
    """The methods beside the agent, into ``row``: naive (every feedback label so far), naive-latest
    (this stage's), oracle (only the truly fixable logs so far, with their true labels)."""
    latest = answers_so_far[-n_latest:]
    for method, rows in (("naive", [(a["text"], a["feedback"]) for a in answers_so_far]),
                         ("naive-latest", [(a["text"], a["feedback"]) for a in latest]),
                         ("oracle", [(a["text"], a["label"]) for a in answers_so_far if not a["poison"]])):
        if method == "naive-latest" and len(latest) == len(answers_so_far):  # stage 1: naive's very data
            row[method], prev[method] = dict(row["naive"], wall_s=0.0), prev["naive"]
            continue
        t0 = time.monotonic()
        model = fit(seed_ex + [_example(scenario, t, lab, method) for t, lab in rows
                               if _known(scenario, lab, spec.labels)])
        now = score(model)
        row[method] = {**_compare(prev[method], now), "decision": "promoted", "train": len(rows) + len(seed_ex),
                       "wall_s": round(time.monotonic() - t0, 1)}
        prev[method] = now


def _scorer(spec: Any, test: list[Any], progress: Any) -> Callable[[Any], dict[str, Any]]:
    from adaptloop.agent.predict import score_rows
    from adaptloop.evaluate.metrics import primary
    from adaptloop.evaluate.rows import metrics_of, row_correct

    def score(model: Any) -> dict[str, Any]:
        rows = score_rows(model, test, progress=progress, what="score test sample")
        return {"metric": primary(metrics_of(spec, rows), spec.primary_metric),
                "correct": [row_correct(r) for r in rows]}

    return score


def _compare(before: dict[str, Any], now: dict[str, Any]) -> dict[str, Any]:
    broken = sum(b and not n for b, n in zip(before["correct"], now["correct"]))
    return {"metric": round(now["metric"], 4), "broken": broken}


def _triage_quality(ws: Any, answers: list[dict[str, Any]]) -> dict[str, Any]:
    """The agent's poison verdicts on this stage's logs against the answer file."""
    truth = {a["id"]: a for a in answers}
    got = ws.store.verdicts(list(truth))
    tp = sum(1 for i, a in truth.items() if a["poison"] and got.get(i) == "poison")
    fp = sum(1 for i, a in truth.items() if not a["poison"] and got.get(i) == "poison")
    missed = Counter(a["kind"] for i, a in truth.items() if a["poison"] and got.get(i) != "poison")
    fn = sum(missed.values())
    return {"tp": tp, "fp": fp, "fn": fn, "precision": round(tp / (tp + fp), 4) if tp + fp else 1.0,
            "recall": round(tp / (tp + fn), 4) if tp + fn else 1.0, "missed_by_kind": dict(missed)}


def _refitter(ws: Any, run_id: int, spec: Any, progress: Any, make_trainer: Callable[[str], Any],
              min_steps: int | None = None) -> Callable[[list[Any]], Any]:
    """Train the base's winning pipeline (every ensemble member) on new data: naive and oracle."""
    from adaptloop.agent.predict import embedding_cache
    from adaptloop.agent.refit import refit, refit_plan
    from adaptloop.train import FitContext
    from adaptloop.types import Pipeline

    plan = refit_plan(ws.store.nodes(run_id), spec, again=True)
    if plan is None:
        raise DataError("the base run has no finished pipeline to retrain")
    ctx = FitContext(progress=progress, embeddings=embedding_cache(ws.root))
    n_base = ws.store.run_state(run_id).curation["train"]

    def same_updates(pipe: Pipeline, n: int) -> dict[str, Any]:
        """A tagger refit keeps the base fit's number of updates: each grows by the data's size
        otherwise, and at stage 3 one refit would cost as much as a whole improve cycle many times
        over (the cycle is time-budgeted; this keeps the baselines' compute comparable)."""
        hp: dict[str, Any] = {"epochs": max(1.0, float(pipe.hparams["epochs"]) * n_base / max(1, n))}
        return hp | ({"min_steps": min_steps} if min_steps else {})

    def fit(train: list[Any]) -> Any:
        ds = defaultdict(lambda: train, dev=[])
        model, _ = refit(plan, spec, ds, ctx, make_trainer,
                         hparams_for=same_updates if spec.family == "extraction" else None)
        return model

    return fit


# ---------------------------------------------------------------------------- the whole bench
def run(scenarios: Sequence[str], *, quick: bool, seed: int, out: Path, datasets: Path | None = None,
        progress: Any = None, log: Callable[[str], None] = print, sizes: Sizes | None = None,
        **seams: Any) -> dict[str, Any]:
    """Every scenario in turn; writes results.json, table.md and plot.html into ``out``.

    Raises:
        DataError: an unknown scenario name.
    """
    unknown = [s for s in scenarios if s not in SCENARIOS]
    if unknown:
        raise DataError(f"unknown scenario(s) {', '.join(unknown)}; choose from {', '.join(SCENARIOS)}")
    sizes = sizes or (QUICK if quick else FULL)
    datasets = datasets or default_datasets()
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    kept = _kept(out, sizes, seed, skip=scenarios)
    if kept:
        log(f"keeping the earlier results of {', '.join(kept)} from {out / 'results.json'} (same seed and sizes)")
    results: dict[str, dict[str, Any]] = dict(kept)
    for name in scenarios:
        results[name] = run_scenario(SCENARIOS[name], datasets=datasets, sizes=sizes, seed=seed, out=out,
                                     progress=progress, log=log, **seams)
        _save(out, _ordered(results), sizes, seed, quick, time.monotonic() - t0)  # partial results survive a crash
    return _save(out, _ordered(results), sizes, seed, quick, time.monotonic() - t0)


def _kept(out: Path, sizes: Sizes, seed: int, skip: Sequence[str]) -> dict[str, dict[str, Any]]:
    """The scenarios an earlier run wrote into ``out`` with the same seed and sizes, except ``skip``:
    one bench can be run a few scenarios at a time into one table."""
    path = out / "results.json"
    if not path.exists():
        return {}
    try:
        old = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    before = old.get("sizes") or {}
    if old.get("seed") != seed or any(before[k] != v for k, v in sizes.__dict__.items() if k in before):
        return {}  # (a field an older bench did not have yet is not held against it)
    return {s["scenario"]: s for s in old.get("scenarios", []) if s["scenario"] not in skip and "stages" in s}


def _ordered(results: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    order = list(SCENARIOS)
    return sorted(results.values(), key=lambda s: order.index(s["scenario"]) if s["scenario"] in order else 99)


def _save(out: Path, results: list[dict[str, Any]], sizes: Sizes, seed: int, quick: bool,
          wall: float) -> dict[str, Any]:
    from adaptloop.bench.report import plot_html, summary, table_md

    doc = {"bench": "adaptft", "seed": seed, "quick": quick, "sizes": sizes.__dict__, "rates": list(RATES),
           "scenarios": results, "summary": summary(results), "wall_s": round(wall, 1)}
    (out / "results.json").write_text(json.dumps(doc, indent=2), encoding="utf-8")
    (out / "table.md").write_text(table_md(doc), encoding="utf-8")
    (out / "plot.html").write_text(plot_html(doc), encoding="utf-8")
    return doc
