"""What a task with an out-of-scope label serves abstains.

The search selects on dev accuracy, and dev holds out-of-scope inputs as rarely as the training
data it was split from (clinc150: 0.7%) while traffic holds them far more often (clinc150's test:
18%). So the model a cold start (or an improve cycle) registers answers the out-of-scope label
when its top probability is under a threshold set on in-scope dev examples alone: the highest
that sends at most ``[serve] abstain_share`` of them there (``train/threshold.py``). The
threshold is read off the model selected on dev (held out from it; a refit on train + dev has no
dev left) and wrapped around the model that serves, as a threshold model: export, serving, the
gate and distillation load it like any other.
"""

from __future__ import annotations

import json
import shutil

from adaptloop.agent.predict import embedding_cache
from adaptloop.agent.prepare import _examples
from adaptloop.store.db import Node, Run, utcnow
from adaptloop.train import load_trained
from adaptloop.train.base import Progress, label_ids, no_progress
from adaptloop.train.threshold import abstention
from adaptloop.types import TaskSpec
from adaptloop.workspace import Workspace

MIN_DEV = 20  # in-scope dev examples below which no threshold is read


def abstaining(ws: Workspace, run: Run, spec: TaskSpec, selected: Node, best: Node, *,
               progress: Progress = no_progress) -> Node:
    """``best`` wrapped to abstain (a new node of ``run``), or ``best`` itself when the task has no
    out-of-scope label, ``[serve] abstain_share`` is 0 or either node already abstains."""
    share, oos = ws.settings.serve.abstain_share, spec.out_of_scope_label
    if (spec.family != "classification" or not oos or share <= 0
            or "threshold" in (selected.pipeline["strategy"], best.pipeline["strategy"])):
        return best
    store = ws.store
    data = store.run_state(run).datasets
    judge = load_trained(ws.artifacts.path(selected.model_artifact), embeddings=embedding_cache(ws.root))
    labels = list(judge.labels)
    if oos not in labels:
        return best
    dev = [e for e in (_examples(ws, data["dev"]) if data.get("dev") else []) if e.label in labels]
    y = label_ids(dev, labels)
    a = labels.index(oos)
    if int((y != a).sum()) < MIN_DEV:
        return best
    bar = progress("abstention: score the selected model on dev", 1)
    probs = judge.predict_proba([e.text for e in dev])
    bar(1)
    st = abstention(probs, y, a, share)
    t = st["threshold"]
    folder = ws.artifacts.staging_dir()
    shutil.copytree(ws.artifacts.path(best.model_artifact), folder / "base")
    meta = {"kind": "threshold", "labels": labels, "offsets": [0.0] * len(labels), "abstain": oos, "threshold": t}
    (folder / "adaptloop_model.json").write_text(json.dumps(meta, indent=1), encoding="utf-8")
    address = ws.artifacts.put_dir(folder)
    reason = (f"'{best.name}' answers '{oos}' when its top probability is under {t:.3f}: on dev, "
              f"'{selected.name}' then {said(st, oos, share)}; dev holds '{oos}' as rarely as the training "
              "data, traffic more often, so the threshold is set on in-scope examples alone")
    node = store.add(Node(
        run_id=run.id, parent_id=best.id, name="abstain", intervention=f"abstention to '{oos}'", reason=reason,
        pipeline={**best.pipeline, "strategy": "threshold",
                  "hparams": {"of": str(ws.artifacts.path(best.model_artifact)), "of_name": best.name,
                              "abstain": oos, "share": share}},
        status="done", dev_metrics={**selected.dev_metrics, "accuracy": st["accuracy"]},
        chosen={"threshold": t, "abstain": oos, "share": share, "from": selected.name},
        model_artifact=address, texts_per_second=best.texts_per_second, move="abstain", proposer="doctrine",
        finished_at=utcnow()))
    store.decide(run.id, "abstain", reason, node_id=node.id)
    return node


def said(st: dict, oos: str, share: float) -> str:
    """What an abstention threshold does on dev, in words."""
    return (f"sends {st['sent']} of {st['in_scope']} in-scope examples to '{oos}' ([serve] abstain_share {share}) "
            f"and catches {st['caught']} of {st['out_of_scope']} '{oos}' examples ({st['caught_before']} without)")
