"""Triage poison precision / recall on AdaptFT-Bench logs, without the improve cycle around it.

Extraction scenarios (wnut17, presidio_pii: ``--scenarios wnut17 presidio_pii --traffic a``) stand in
for production with a MiniLM tagger fitted on the seed set (cached under --cache) and run the span
triage (``diagnose.span_triage``); their logs come from ``bench.generate_spans`` only.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/triage_recall.py [--scenarios banking77 clinc150 snips]

For each scenario (MiniLM) generates the benchmark's logs (seed 0, FULL sizes: 3 stages of
500), embeds them with the scenario's encoder (cached as .npy under --cache), and stands in
for the production model with a logistic regression on the seed set's embeddings (the
benchmark's base pipeline is a frozen encoder + logreg). Each stage is triaged as the
improve cycle does (``adaptloop/agent/improve.py``): the model's argmax and probability as
``pred`` / ``confidence``, the feedback label, source and time of each log; the parent's
training data is the seed set at stage 1 and the seed set + the earlier stages' logs triage
judged ok / fixable (with their feedback labels) later; the frozen eval set is 15% of the
seed set. Reports poison precision / recall against the answers (poison ⇔ verdict
"poison"), misses by poison kind and false alarms by verdict kind; writes
benchmarks/results/triage-recall.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import random
import time
from collections import Counter
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATASETS = Path(os.environ.get("ADAPTLOOP_DATASETS", REPO.parent / "shared" / "datasets"))
EVAL_SHARE = 0.15  # share of the seed set passed as the frozen eval set


def embedder(encoder: str, cache: Path):
    """Texts → embeddings of ``encoder``, cached per list of texts as .npy under ``cache``."""
    import torch

    from adaptloop.train.encoder import embed, load_base

    torch.set_num_threads(int(os.environ.get("TORCH_NUM_THREADS", "1")))
    cache.mkdir(parents=True, exist_ok=True)

    def run(texts: list[str]) -> np.ndarray:
        key = hashlib.sha1((encoder + "\0" + "\0".join(texts)).encode()).hexdigest()[:20]
        path = cache / f"{key}.npy"
        if path.exists():
            return np.load(path)
        tok, model = load_base(encoder)
        x = embed(tok, model, texts, device=torch.device("cpu"))
        np.save(path, x)
        return x

    return run


def score(verdicts, answers) -> dict:
    truth = {a["id"]: a for a in answers}
    tp = fp = fn = 0
    misses, alarms, kinds, styles, style_misses = Counter(), Counter(), Counter(), Counter(), Counter()
    for v in verdicts:
        a = truth[v.id]
        kinds[a["kind"]] += a["poison"]
        if a["poison"] and a.get("style"):
            styles[f"{a['kind']}/{a['style']}"] += 1
            style_misses[f"{a['kind']}/{a['style']}"] += v.triage != "poison"
        flagged = v.triage == "poison"
        if flagged and a["poison"]:
            tp += 1
        elif flagged:
            fp += 1
            alarms[v.kind] += 1
        elif a["poison"]:
            fn += 1
            misses[a["kind"]] += 1
    return {"precision": round(tp / max(tp + fp, 1), 3), "recall": round(tp / max(tp + fn, 1), 3),
            "poison": tp + fn, "flagged": tp + fp, "misses_by_kind": dict(misses.most_common()),
            "poison_by_kind": {k: n for k, n in kinds.items() if n},
            "false_alarms_by_verdict_kind": dict(alarms.most_common()),
            **({"poison_by_style": dict(sorted(styles.items())), "misses_by_style": dict(sorted(
                (k, n) for k, n in style_misses.items() if n))} if styles else {})}


def dump_misses(path: Path | None, scenario: str, stage: int, views, verdicts, answers) -> None:
    """Append the stage's missed poison and false alarms to ``path`` (JSON lines), to read."""
    if path is None:
        return
    truth, text = {a["id"]: a for a in answers}, {v.id: v for v in views}
    with path.open("a", encoding="utf-8") as f:
        for v in verdicts:
            a, flagged = truth[v.id], v.triage == "poison"
            if flagged != bool(a["poison"]):
                t = text[v.id]
                f.write(json.dumps({"scenario": scenario, "stage": stage, "miss": bool(a["poison"]),
                                    "kind": a["kind"], "style": a.get("style"), "text": t.text,
                                    "pred": t.pred, "feedback": t.feedback_label, "verdict": v.triage,
                                    "verdict_kind": v.kind, "reason": v.reason}) + "\n")


def run_scenario(name: str, embed_cache: Path, traffic: str = "a", seed: int = 0,
                 misses: Path | None = None) -> dict:
    from adaptloop.bench.adaptft import FULL, SCENARIOS, generate
    from adaptloop.diagnose.triage import TraceView, triage
    from adaptloop.train.logreg import fit_logreg

    sc = SCENARIOS[name]
    g = generate(sc, datasets=DATASETS, sizes=FULL, seed=seed, traffic=traffic, detail=True)
    emb = embedder(sc.encoder, embed_cache)
    labels = sorted({r["label"] for r in g.seed_rows})
    index = {lab: i for i, lab in enumerate(labels)}
    seed_texts = [r["text"] for r in g.seed_rows]
    seed_labels = [r["label"] for r in g.seed_rows]
    seed_x = emb(seed_texts)
    model = fit_logreg(seed_x, np.array([index[lab] for lab in seed_labels]), c=10.0, seed=0)
    ev = random.Random(0).sample(range(len(seed_texts)), int(EVAL_SHARE * len(seed_texts)))
    eval_labels, eval_x = [seed_labels[i] for i in ev], seed_x[ev]
    train_texts, train_labels, train_x = list(seed_texts), list(seed_labels), seed_x
    stages = []
    for stage in g.stages:
        traces = stage.traces()
        texts = [t["input"] for t in traces]
        x = emb(texts)
        probs = np.zeros((len(x), len(labels)))
        probs[:, model.classes_] = model.predict_proba(x)
        views = [TraceView(id=t["id"], text=t["input"], pred=labels[int(p.argmax())], confidence=float(p.max()),
                           feedback_label=t["feedback"]["label"], source=t["feedback"]["source"],
                           ts=dt.datetime.fromisoformat(t["ts"])) for t, p in zip(traces, probs)]
        t0 = time.monotonic()
        verdicts = triage(views, x, labels=labels, train_texts=train_texts, train_labels=train_labels,
                          train_x=train_x, eval_labels=eval_labels, eval_x=eval_x, seed=0, embed=emb)
        r = {"stage": stage.number, "train": len(train_labels), "wall_s": round(time.monotonic() - t0, 1),
             **score(verdicts, stage.answers())}
        print(f"[{name}] stage {stage.number}: precision {r['precision']:.3f} recall {r['recall']:.3f} "
              f"(misses {r['misses_by_kind']}, false alarms {r['false_alarms_by_verdict_kind']}, "
              f"{r['wall_s']}s)", flush=True)
        dump_misses(misses, f"{name}/{traffic}", stage.number, views, verdicts, stage.answers())
        stages.append(r)
        keep = [i for i, v in enumerate(verdicts) if v.triage in ("ok", "fixable")]
        train_texts += [texts[i] for i in keep]
        train_labels += [verdicts[i].label for i in keep]
        train_x = np.concatenate([train_x, x[keep]])
    return {"encoder": sc.encoder, "seed_set": len(seed_texts), "stages": stages}


def span_model(sc, seed_rows: list[dict], cache: Path, seed: int):
    """The production stand-in of an extraction scenario: a MiniLM tagger fitted on the seed set
    (the benchmark's base pipeline), cached under ``cache``."""
    from adaptloop.bench.adaptft import _example
    from adaptloop.train import FitContext, load_trained, trainer_for
    from adaptloop.types import Pipeline, TaskSpec

    types = sorted({sp["label"] for r in seed_rows for sp in r["spans"]})
    folder = cache / f"tagger-{sc.name}-{len(seed_rows)}-seed{seed}"
    if (folder / "adaptloop_model.json").exists():
        return load_trained(folder), types
    spec = TaskSpec(name=sc.name, prompt=sc.prompt, family="extraction", labels=tuple(types), primary_metric="f1")
    examples = [_example(sc, r["text"], r["spans"]) for r in seed_rows]
    cut = int(0.85 * len(examples))
    model, _ = trainer_for("tagger").fit(spec, Pipeline("raw", "tagger", encoder=sc.encoder, seed=0),
                                         examples[:cut], examples[cut:], FitContext())
    model.save(folder)
    return model, types


def run_span_scenario(name: str, embed_cache: Path, seed: int = 0) -> dict:
    """An extraction scenario: span triage (``diagnose.span_triage``) of each stage's logs against the
    seed set (then the earlier stages' trusted corrections), with a seed-set tagger as production."""
    from adaptloop.bench.adaptft import FULL, SCENARIOS, generate
    from adaptloop.diagnose.span_triage import SpanView, span_triage

    sc = SCENARIOS[name]
    g = generate(sc, datasets=DATASETS, sizes=FULL, seed=seed, detail=True)
    emb = embedder(sc.encoder, embed_cache)
    model, types = span_model(sc, g.seed_rows, embed_cache, seed)
    seed_set = [(r["text"], tuple((sp["start"], sp["end"], sp["label"]) for sp in r["spans"])) for r in g.seed_rows]
    ev = random.Random(0).sample(range(len(seed_set)), int(EVAL_SHARE * len(seed_set)))
    evals = [seed_set[i] for i in ev]
    eval_x = emb([t for t, _ in evals])
    train = list(seed_set)
    stages = []
    for stage in g.stages:
        traces = stage.traces()
        texts = [t["input"] for t in traces]
        preds = model.predict_spans(texts)
        views = [SpanView(id=t["id"], text=t["input"], pred=tuple((e["start"], e["end"], e["label"]) for e in p),
                          feedback=tuple(tuple(sp) for sp in t["feedback"]["entities"]),
                          source=t["feedback"]["source"], ts=dt.datetime.fromisoformat(t["ts"]))
                 for t, p in zip(traces, preds)]
        t0 = time.monotonic()
        verdicts = span_triage(views, emb(texts), types=types, train=train, embed=emb, eval_examples=evals,
                               eval_x=eval_x)
        r = {"stage": stage.number, "train": len(train), "wall_s": round(time.monotonic() - t0, 1),
             **score(verdicts, stage.answers())}
        print(f"[{name}] stage {stage.number}: precision {r['precision']:.3f} recall {r['recall']:.3f} "
              f"(misses {r['misses_by_kind']}, false alarms {r['false_alarms_by_verdict_kind']}, "
              f"{r['wall_s']}s)", flush=True)
        stages.append(r)
        train += [(texts[i], v.spans) for i, v in enumerate(verdicts) if v.triage in ("ok", "fixable")]
    return {"encoder": sc.encoder, "seed_set": len(seed_set), "stages": stages}


SPAN_SCENARIOS = ("wnut17", "presidio_pii")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenarios", nargs="+", default=["banking77", "clinc150", "snips"])
    ap.add_argument("--traffic", nargs="+", default=["a", "b"], choices=["a", "b"],
                    help="log generators: a = bench.generate, b = bench.generate_b (held out from tuning)")
    ap.add_argument("--seed", type=int, default=0, help="the logs' seed (the rules were set on seed 0)")
    ap.add_argument("--cache", type=Path, default=Path("/tmp/adaptloop-triage-recall"))
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "triage-recall.json")
    ap.add_argument("--misses", type=Path, help="also write the missed poison and false alarms here (JSON lines)")
    args = ap.parse_args()
    if args.misses:
        args.misses.unlink(missing_ok=True)
    results = {f"{name}/{t}": run_scenario(name, args.cache, t, args.seed, args.misses) for t in args.traffic
               for name in args.scenarios if name not in SPAN_SCENARIOS}
    results.update({f"{name}/a": run_span_scenario(name, args.cache, args.seed) for name in args.scenarios
                    if name in SPAN_SCENARIOS and "a" in args.traffic})
    summary = {name: {"min_precision": min(s["precision"] for s in r["stages"]),
                      "min_recall": min(s["recall"] for s in r["stages"])} for name, r in results.items()}
    for t in args.traffic:  # pooled over scenarios and stages, per poison kind
        stages = [s for name, r in results.items() if name.endswith("/" + t) for s in r["stages"]]
        poison = sum(s["poison"] for s in stages)
        caught = poison - sum(sum(s["misses_by_kind"].values()) for s in stages)
        flagged = sum(s["flagged"] for s in stages)
        misses: Counter = sum((Counter(s["misses_by_kind"]) for s in stages), Counter())
        kinds: Counter = sum((Counter(s["poison_by_kind"]) for s in stages), Counter())
        styles: Counter = sum((Counter(s.get("poison_by_style", {})) for s in stages), Counter())
        missed: Counter = sum((Counter(s.get("misses_by_style", {})) for s in stages), Counter())
        summary[f"all/{t}"] = {"precision": round(caught / max(flagged, 1), 3),
                               "recall": round(caught / max(poison, 1), 3),
                               "recall_by_kind": {k: round(1 - misses[k] / n, 3) for k, n in sorted(kinds.items())},
                               **({"recall_by_style": {k: round(1 - missed[k] / n, 3) for k, n in sorted(
                                   styles.items())}} if styles else {})}
    out = {"what": f"triage poison precision / recall per AdaptFT stage (seed {args.seed}, FULL sizes, logreg "
                   "production model on seed embeddings), per traffic generator", "traffic": args.traffic,
           "scenarios": results, "summary": summary}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
