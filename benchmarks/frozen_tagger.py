"""A frozen encoder's tagger (``train/frozen_tagger.py``) alone, and averaged with a search's taggers, on test.

    .venv/bin/python benchmarks/frozen_tagger.py --dataset wnut17 [--workspace WS]
        [--hparams JSON] [--seeds N] [--store DIR]

Fits the ``frozen-tagger`` (a BiLSTM head on the frozen encoder's last four hidden layers; default
all-mpnet-base-v2) on train.jsonl less a dev part held out by shared entity mention, as a cold start holds
out dev (``data.split.held_out_split``, a tenth), and scores entity F1 / precision / recall on test.jsonl.
With ``--workspace`` (a run of ``benchmarks/extraction.py`` keeps its workspace), it also scores its average
(``train.ensemble.TaggerEnsemble``) with each finished tagger of that workspace's latest cold start, and with
all of them. Those taggers were trained on another split of the same train.jsonl; test is untouched by
both. Nothing is tuned on test. Writes benchmarks/results/frozen-tagger-DATASET.json.
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
    ap.add_argument("--dataset", default="wnut17", choices=["wnut17", "presidio_pii"])
    ap.add_argument("--encoder", default="sentence-transformers/all-mpnet-base-v2")
    ap.add_argument("--no-case", action="store_true", help="without the case-type feature (the case_types hparam)")
    ap.add_argument("--hparams", default="{}",
                    help="JSON: head settings (FrozenTaggerConfig), e.g. '{\"lstm_layers\": 2}'")
    ap.add_argument("--seeds", type=int, default=1, help="fits, one a seed (each row its own; the mean last)")
    ap.add_argument("--store", type=Path, default=None,
                    help="a feature-store folder: the encoder's forward pass once across invocations")
    ap.add_argument("--workspace", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args()

    from adaptloop.data.sources import load_extraction
    from adaptloop.data.split import held_out_split
    from adaptloop.evaluate.entities import entity_metrics
    from adaptloop.train import load_trained
    from adaptloop.train.base import FitContext
    from adaptloop.train.encoder import EmbeddingCache, set_threads
    from adaptloop.train.ensemble import TaggerEnsemble
    from adaptloop.train.frozen_tagger import FrozenTaggerTrainer
    from adaptloop.types import Pipeline, TaskSpec

    set_threads(0)
    train, test = (load_extraction(DATASETS / a.dataset / f"{s}.jsonl").examples for s in ("train", "test"))
    dev, train, how = held_out_split(train, fraction=0.1, seed=1)
    types = sorted({sp[2] for e in train for sp in e.spans})
    spec = TaskSpec(name=a.dataset, prompt="extract entities", family="extraction", labels=tuple(types),
                    primary_metric="f1")
    texts, gold = [e.text for e in test], [list(e.spans) for e in test]

    def score(model) -> dict:
        t0 = time.monotonic()
        pred = [[(d["start"], d["end"], d["label"]) for d in row] for row in model.predict_spans(texts)]
        m = entity_metrics(texts, gold, pred)
        return {k: round(m[k], 4) for k in ("f1", "precision", "recall")} | {"seconds": round(time.monotonic() - t0, 1)}

    hp = {"case_types": not a.no_case, **json.loads(a.hparams)}
    ctx = FitContext(embeddings=EmbeddingCache(a.store / "embeddings") if a.store else None)
    rows, model = [], None
    for seed in range(a.seeds):
        t0 = time.monotonic()
        fitted, res = FrozenTaggerTrainer().fit(spec, Pipeline("raw", "frozen-tagger", a.encoder, hp, seed), train,
                                                dev, ctx)
        model = model or fitted
        rows.append({"model": "frozen-tagger", "encoder": a.encoder, "hparams": hp, "seed": seed,
                     "fit_seconds": round(time.monotonic() - t0, 1),
                     "dev_f1": round(res.dev_metrics["f1"], 4), "dev": f"{len(dev)} sentences ({how})",
                     "notes": res.notes, "test": score(fitted)})
        print(json.dumps(rows[-1]), flush=True)
    if a.seeds > 1:
        fits = rows[-a.seeds:]
        rows.append({"model": f"frozen-tagger, mean of {a.seeds} seeds", "hparams": hp,
                     "dev_f1": round(sum(r["dev_f1"] for r in fits) / a.seeds, 4),
                     "test": {"f1": round(sum(r["test"]["f1"] for r in fits) / a.seeds, 4)}})
        print(json.dumps(rows[-1]), flush=True)
    if a.workspace is not None:
        from adaptloop.search.interventions import TAGGERS
        from adaptloop.workspace import Workspace

        ws = Workspace.open(a.workspace)
        run = [r for r in ws.store.runs() if r.kind == "coldstart"][-1]
        nodes = [n for n in ws.store.nodes(run.id) if n.status == "done" and n.model_artifact
                 and n.pipeline["strategy"] in TAGGERS]
        taggers = {n.name: load_trained(ws.artifacts.path(n.model_artifact)) for n in nodes}
        for name, tagger in taggers.items():
            rows.append({"model": f"{name} alone", "test": score(tagger)})
            rows.append({"model": f"frozen-tagger + {name}", "test": score(TaggerEnsemble([model, tagger]))})
            print(json.dumps(rows[-2]), json.dumps(rows[-1]), flush=True)
        if len(taggers) > 1:
            rows.append({"model": f"frozen-tagger + {' + '.join(taggers)}",
                         "test": score(TaggerEnsemble([model, *taggers.values()]))})
            print(json.dumps(rows[-1]), flush=True)
    out = a.out or REPO / "benchmarks" / "results" / f"frozen-tagger-{a.dataset}.json"
    out.write_text(json.dumps({"dataset": a.dataset, "workspace": str(a.workspace) if a.workspace else None,
                               "rows": rows}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
