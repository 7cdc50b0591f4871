"""Taggers of one extraction search, alone and averaged, scored on a dataset's official test split.

    .venv/bin/python benchmarks/tagger_ensemble.py --workspace WS --dataset presidio_pii [--subsets NODE ...]

Reads the finished tagger nodes of the workspace's latest cold start (a run of
`benchmarks/extraction.py` keeps its workspace), scores each on test.jsonl, then the equal-weight
averages of their tag probabilities (`train.ensemble.TaggerEnsemble`): the members the doctrine
picks (`agent.doctrine.tagger_members`: the best tagger of each encoder, at most 3, each at least
half the best one's dev F1; of three, those forward selection on the run's dev keeps), the top 2
and 3 on dev on the best one's encoder, and the best one with every tagger on the other encoders.
Dev F1 is the node's own;
nothing here is tuned on test. Writes benchmarks/results/tagger-ensemble-DATASET.json. With ``--subsets``:
every subset of the named nodes on the run's own dev split and on test, to see whether dev picks the
members test would (benchmarks/results/tagger-subsets-DATASET.json). ``--subsets … --decoders`` scores each
subset with both decoders of ``train.tagger.decode`` (the IOB2-constrained Viterbi over words, and each
subword's own argmax read leniently), on dev and on test; ``--o-bias 0 0.5 1 …`` at each bias taken from
the O tag's log-odds before decoding (more entities as it grows).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
REPO = Path(__file__).resolve().parents[1]
DATASETS = Path(os.environ.get("ADAPTLOOP_DATASETS", REPO.parent / "shared" / "datasets"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workspace", type=Path, required=True)
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--subsets", nargs="+", default=None, metavar="NODE",
                    help="instead: every subset of these tagger nodes, alone and averaged, on the run's own dev "
                         "and on test (can dev pick the members test would?)")
    ap.add_argument("--decoders", action="store_true",
                    help="with --subsets: score every subset with the constrained and the greedy decoder")
    ap.add_argument("--o-bias", nargs="+", type=float, default=None, metavar="B",
                    help="with --subsets: score every subset at each of these biases against O "
                         "(`train.tagger.lean_from_o`; 0 is how the models decode now)")
    a = ap.parse_args()
    if a.subsets:
        return subsets(a)

    from adaptloop.agent.doctrine import tagger_members
    from adaptloop.data.sources import load_extraction
    from adaptloop.evaluate.entities import entity_metrics
    from adaptloop.search import graph
    from adaptloop.search.interventions import TAGGERS
    from adaptloop.train import load_trained
    from adaptloop.train.ensemble import TaggerEnsemble
    from adaptloop.workspace import Workspace

    ws = Workspace.open(a.workspace)
    run = [r for r in ws.store.runs() if r.kind == "coldstart"][-1]
    nodes = [n for n in ws.store.nodes(run.id) if n.status == "done" and n.dev_metrics
             and n.pipeline["strategy"] in (*TAGGERS, "frozen-tagger") and n.model_artifact]
    test = load_extraction(DATASETS / a.dataset / "test.jsonl").examples
    texts, gold = [e.text for e in test], [list(e.spans) for e in test]

    def score(model) -> dict:
        t0 = time.monotonic()
        pred = [[(d["start"], d["end"], d["label"]) for d in row] for row in model.predict_spans(texts)]
        m = entity_metrics(texts, gold, pred)
        return {k: round(m[k], 4) for k in ("f1", "precision", "recall")} | {"seconds": round(time.monotonic() - t0, 1)}

    models = {n.name: load_trained(ws.artifacts.path(n.model_artifact)) for n in nodes}
    rows = []
    for n in sorted(nodes, key=lambda n: -n.dev_metrics["f1"]):
        rows.append({"model": n.name, "encoder": n.pipeline["encoder"], "recipe": n.pipeline["recipe"],
                     "dev_f1": round(n.dev_metrics["f1"], 4), "test": score(models[n.name])})
        print(json.dumps(rows[-1]), flush=True)
    gnodes = [graph.GraphNode(name=n.name, score=n.dev_metrics["f1"], parent=None,
                              pipeline=n.pipeline, model_path="x", order=n.id) for n in nodes]
    chosen = [g.name for g in tagger_members(gnodes)]
    if len(chosen) > 2:  # as the ensemble's fit chooses them: forward selection on the run's dev
        from adaptloop.agent.improve import _examples
        from adaptloop.train.ensemble import select_taggers

        dev = _examples(ws, ws.store.run_state(run.id).datasets["dev"])
        chosen = [chosen[i] for i in select_taggers([models[n] for n in chosen], dev)]
    picks = {"doctrine (the best of each encoder, chosen on dev)": chosen}
    best_enc = rows[0]["encoder"] if rows else None
    same = [r["model"] for r in rows if r["encoder"] == best_enc]
    other = [r["model"] for r in rows if r["encoder"] != best_enc]
    for k in (2, 3):
        if len(same) >= k:
            picks[f"the top {k} on {best_enc.split('/')[-1]}"] = same[:k]
    if same and other:
        picks["the best, and every tagger on the other encoders"] = [same[0], *other]
    for label, names in picks.items():
        if len(names) < 2:
            continue
        rows.append({"model": f"ensemble ({label})", "members": names,
                     "test": score(TaggerEnsemble([models[n] for n in names]))})
        print(json.dumps(rows[-1]), flush=True)
    out = a.out or REPO / "benchmarks" / "results" / f"tagger-ensemble-{a.dataset}.json"
    out.write_text(json.dumps({"dataset": a.dataset, "workspace": str(a.workspace), "run": run.id,
                               "rows": rows}, indent=1))
    print(f"wrote {out}")


def subsets(a: argparse.Namespace) -> None:
    """Each subset of ``a.subsets`` (tagger nodes of the latest cold start): entity F1 / P / R on the run's dev
    split and on test. Each member's tag probabilities are computed once per split."""
    import itertools

    from adaptloop.agent.improve import _examples
    from adaptloop.data.sources import load_extraction
    from adaptloop.evaluate.entities import entity_metrics
    from adaptloop.train import load_trained
    from adaptloop.train.ensemble import FixedProbs, TaggerEnsemble
    from adaptloop.train.tagger import DECODER, GREEDY, decode
    from adaptloop.workspace import Workspace

    ws = Workspace.open(a.workspace)
    run = [r for r in ws.store.runs() if r.kind == "coldstart"][-1]
    nodes = {n.name: n for n in ws.store.nodes(run.id) if n.model_artifact}
    models = {name: load_trained(ws.artifacts.path(nodes[name].model_artifact)) for name in a.subsets}
    splits = {"dev": _examples(ws, ws.store.run_state(run.id).datasets["dev"]),
              "test": load_extraction(DATASETS / a.dataset / "test.jsonl").examples}

    decoders = {"": (DECODER, 0.0)} if not a.decoders else {" constrained": (DECODER, 0.0), " greedy": (GREEDY, 0.0)}
    if a.o_bias:
        decoders = {f"{suffix} o-bias {b:g}": (decoder, b) for suffix, (decoder, _) in decoders.items()
                    for b in a.o_bias}
    rows: dict[str, dict] = {}
    for split, examples in splits.items():
        texts, gold = [e.text for e in examples], [list(e.spans) for e in examples]
        cached = {name: FixedProbs(m, texts) for name, m in models.items()}
        for k in range(1, len(models) + 1):
            for names in itertools.combinations(a.subsets, k):
                model = cached[names[0]] if k == 1 else TaggerEnsemble([cached[n] for n in names])
                probs = model.token_probs(texts)
                for suffix, (decoder, bias) in decoders.items():
                    pred = [[(d["start"], d["end"], d["label"]) for d in decode(t, keys, p, model.labels,
                                                                                decoder=decoder, o_bias=bias)]
                            for t, (keys, p) in zip(texts, probs)]
                    m = entity_metrics(texts, gold, pred)
                    scores = {x: round(m[x], 4) for x in ("f1", "precision", "recall")}
                    rows.setdefault(" + ".join(names), {})[split + suffix] = scores
    for name, r in rows.items():
        print(json.dumps({"members": name, **r}), flush=True)
    out = a.out or REPO / "benchmarks" / "results" / f"tagger-subsets-{a.dataset}.json"
    out.write_text(json.dumps({"dataset": a.dataset, "workspace": str(a.workspace), "run": run.id,
                               "rows": [{"members": k, **v} for k, v in rows.items()]}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
