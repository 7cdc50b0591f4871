"""Ensemble of trained nodes: a weighted average of their class probabilities.

Members are earlier nodes' saved models (their folders are given in the pipeline's
``hparams["members"]``); weights are picked on dev from a coarse simplex grid: of the weights
whose dev accuracy is within ``TOLERANCE`` of the best, the ones closest to equal. The best
weights on a dev split of a thousand rows fit its noise: measured on banking77 and snips
(`benchmarks/lexical_members.py`), the dev-best weights of a three-member ensemble scored test
0.9429 / 0.9843 where this rule's scored 0.9448 / 0.9857 (equal weights 0.9451 / 0.9857); on
clinc150 the two were within 0.2 points of each other either way.

Taggers (extraction) ensemble one level down: ``TaggerEnsemble`` averages its members' per-subword
tag probabilities when they share a tokenizer, else puts each member's on the text's words first (a
word takes its first subword's, as taggers are trained to tag a word's first piece), and decodes the
average once, so the spans come from one agreed tagging (span voting would have to reconcile
overlapping, differently cut spans). Words are what taggers on different encoders share: an uncased
and a cased tokenizer cut text differently, and they err differently. Members get equal weights: an
extraction dev split is a few hundred sentences, too few to fit weights on; of more than two candidate
taggers, which ones to average is chosen on dev by forward selection (``select_taggers``). Measured on presidio_pii
(`benchmarks/tagger_ensemble.py`): a MiniLM tagger (test F1 0.686) and a multilingual-e5-small one
(0.696) average to 0.763.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from adaptloop.train.base import FitContext, TrainedModel, label_ids
from adaptloop.types import Example, NodeResult, Pipeline, TaskSpec

GRID_STEP = 0.1  # weight resolution; finer grids overfit a dev split of a few hundred rows
TOLERANCE = 0.005  # dev accuracy a weighting may give up to be closer to equal weights (at least 2 rows)


class EnsembleModel:
    """Weighted mean of member probabilities (members share one label order)."""

    def __init__(self, members: Sequence[TrainedModel], weights: Sequence[float]) -> None:
        if len(members) != len(weights) or not members:
            raise ValueError("an ensemble needs one weight per member and at least one member")
        self.members = list(members)
        self.weights = np.asarray(weights, dtype=np.float64)
        self.labels = tuple(members[0].labels)
        if any(tuple(m.labels) != self.labels for m in members):
            raise ValueError("ensemble members disagree on the label set")
        # mixed probabilities already computed for these texts (its fit's dev split: the node's dev score reads
        # them instead of running every member again); never saved, and emptied before a speed is measured
        self.known_probs: dict[str, np.ndarray] = {}

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, len(self.labels)))
        todo = list(dict.fromkeys(t for t in texts if t not in self.known_probs))
        fresh = dict(zip(todo, _mix([m.predict_proba(todo) for m in self.members], self.weights))) if todo else {}
        return np.stack([self.known_probs[t] if t in self.known_probs else fresh[t] for t in texts])

    def save(self, folder: Path) -> None:
        _save(folder, self.members, {"kind": "ensemble", "labels": list(self.labels),
                                     "weights": self.weights.tolist()})


class TaggerEnsemble:
    """Equal-weight mean of member taggers' tag probabilities on each word, decoded to spans once."""

    kind = "tagger"  # what it is to a predictor (``agent.predict.predictor``): spans from text

    def __init__(self, members: Sequence[Any], thresholds: dict[str, float] | None = None,
                 decoder: str | None = None) -> None:
        from adaptloop.train.tagger import DECODER

        if len(members) < 2:
            raise ValueError("a tagger ensemble needs at least two member taggers")
        self.members = list(members)
        self.labels = tuple(members[0].labels)
        if any(tuple(m.labels) != self.labels for m in members):
            raise ValueError("tagger ensemble members disagree on the entity types")
        self.encoder_name = members[0].encoder_name
        self.thresholds = dict(thresholds or {})  # per type, on the averaged spans' scores (span-threshold)
        self.decoder = decoder or DECODER  # how the average is read (``train.tagger.DECODER``)
        # mean probabilities already computed for these texts (its fit's dev split: the node's dev score reads
        # them instead of running every member again); never saved, and emptied before a speed is measured
        self.known_probs: dict[str, tuple[list[tuple[int, int]], np.ndarray]] = {}

    def token_probs(self, texts: Sequence[str], batch_size: int = 32) -> list[tuple[list[tuple[int, int]], np.ndarray]]:
        """Per text: the members' mean tag probabilities on its subwords when the members cut it alike (one
        tokenizer), else on its words; with the offsets of those units."""
        todo = list(dict.fromkeys(t for t in texts if t not in self.known_probs))
        fresh = dict(zip(todo, self._mean(todo, batch_size))) if todo else {}
        return [self.known_probs[t] if t in self.known_probs else fresh[t] for t in texts]

    def _mean(self, texts: Sequence[str], batch_size: int) -> list[tuple[list[tuple[int, int]], np.ndarray]]:
        from adaptloop.data.spans import word_units
        from adaptloop.train.tagger import on_words

        outs = [m.token_probs(texts, batch_size) for m in self.members]
        width = 1 + 2 * len(self.labels)
        mixed = []
        for text, rows in zip(texts, zip(*outs)):
            if all(k == rows[0][0] for k, _ in rows):  # one tokenizer: average subword by subword
                mixed.append((rows[0][0], sum(p for _, p in rows) / len(rows)))
                continue
            words = word_units(text)
            total = np.zeros((len(words), width))
            for keys, p in rows:
                total += on_words(words, keys, p, width)
            mixed.append((words, total / len(rows)))
        return mixed

    def predict_spans(self, texts: Sequence[str], *, thresholds: dict[str, float] | None = None,
                      ) -> list[list[dict[str, Any]]]:
        """Entities per text, as ``SpanTagger.predict_spans`` gives them."""
        from adaptloop.train.tagger import decode

        thr = self.thresholds if thresholds is None else thresholds
        return [decode(t, keys, p, self.labels, thr, decoder=self.decoder)
                for t, (keys, p) in zip(texts, self.token_probs(texts))]

    def save(self, folder: Path) -> None:
        _save(folder, self.members, {"kind": "tagger-ensemble", "labels": list(self.labels),
                                     "encoder": self.encoder_name, "thresholds": self.thresholds,
                                     "decoder": self.decoder})


def _save(folder: Path, members: Sequence[Any], meta: dict[str, Any]) -> None:
    """Each member in ``member-<i>``, then the ensemble's metadata naming them."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for i, m in enumerate(members):
        m.save(folder / f"member-{i}")
    (folder / "adaptloop_model.json").write_text(json.dumps(
        {**meta, "members": [f"member-{i}" for i in range(len(members))]}, indent=1))


def combine(models: Sequence[Any], weights: Sequence[float]) -> Any:
    """One model of ``models``: itself when alone, a ``TaggerEnsemble`` of taggers (equal weights), else an
    ``EnsembleModel`` with ``weights``."""
    if len(models) == 1:
        return models[0]
    if all(hasattr(m, "predict_spans") for m in models):
        return TaggerEnsemble(models)
    return EnsembleModel(models, weights)


def _mix(probs: Sequence[np.ndarray], weights: np.ndarray) -> np.ndarray:
    out = sum(w * p for w, p in zip(weights, probs))
    return out / weights.sum()


def simplex_grid(n: int, step: float = GRID_STEP) -> list[tuple[float, ...]]:
    """All weight vectors of ``n`` non-negative multiples of ``step`` summing to 1."""
    k = round(1 / step)
    return [tuple(c / k for c in combo) for combo in itertools.product(range(k + 1), repeat=n)
            if sum(combo) == k]


def pick_weights(probs: Sequence[np.ndarray], y: np.ndarray) -> tuple[tuple[float, ...], float]:
    """Weights for ``probs`` (one array per member) on dev labels ``y``, and their dev accuracy: of the
    grid's weightings within ``TOLERANCE`` of the best dev accuracy, the closest to equal weights."""
    grid = simplex_grid(len(probs))
    accs = np.array([float((_mix(probs, np.asarray(w)).argmax(1) == y).mean()) if len(y) else 0.0 for w in grid])
    slack = max(TOLERANCE, 2 / len(y)) if len(y) else 0.0
    equal = np.full(len(probs), 1 / len(probs))
    near = [i for i in range(len(grid)) if accs[i] >= accs.max() - slack - 1e-12]
    i = min(near, key=lambda i: (float(np.abs(np.asarray(grid[i]) - equal).sum()), -accs[i]))
    return grid[i], float(accs[i])


class EnsembleTrainer:
    """Fits only the weights; members come trained."""

    def __init__(self, load: object | None = None) -> None:
        from adaptloop.train import load_trained

        self.load = load or load_trained

    def fit(self, spec: TaskSpec, pipeline: Pipeline, train: Sequence[Example],
            dev: Sequence[Example], ctx: FitContext) -> tuple[EnsembleModel, NodeResult]:
        t0 = time.monotonic()
        if spec.family == "extraction":
            taggers = [self.load(Path(p)) for p in pipeline.hparams["members"]]
            keep, known = list(range(len(taggers))), {}
            if len(taggers) > 2 and dev:  # each candidate reads dev once, for the selection and the node's score
                texts = [e.text for e in dev]
                fixed = [FixedProbs(t, texts) for t in taggers]
                keep = select_taggers(fixed, dev)
                known = dict(zip(texts, TaggerEnsemble([fixed[i] for i in keep]).token_probs(texts)))
            model = TaggerEnsemble([taggers[i] for i in keep])
            model.known_probs = known
            return model, NodeResult(dev_metrics={}, train_seconds=time.monotonic() - t0,
                                     notes=f"equal weights over {len(keep)} of {len(taggers)} taggers"
                                           + (" (forward selection on dev)" if len(taggers) > 2 else ""),
                                     chosen={"weights": [1 / len(keep) if i in keep else 0.0
                                                         for i in range(len(taggers))]})
        from adaptloop.train.classifier import share_embeddings

        # a frozen member reads the dev vectors its own fit embedded (the run's cache): mpnet's dev pass is free
        members = [share_embeddings(self.load(Path(p)), ctx.embeddings) for p in pipeline.hparams["members"]]
        texts, y = [e.text for e in dev], label_ids(dev, spec.labels)
        bar = ctx.progress("ensemble: score members", len(members))
        probs = []
        for m in members:
            probs.append(m.predict_proba(texts))
            bar(1)
        best_w, best_acc = pick_weights(probs, y)
        kept = [(m, w, p) for m, w, p in zip(members, best_w, probs) if w > 0]
        model = EnsembleModel([m for m, _, _ in kept], [w for _, w, _ in kept])
        # the node's dev score reads the kept members' mix from here instead of running them over dev again
        model.known_probs = dict(zip(texts, _mix([p for _, _, p in kept], model.weights)))
        return model, NodeResult(dev_metrics={"accuracy": best_acc},
                                 train_seconds=time.monotonic() - t0,
                                 notes=f"weights {best_w}", chosen={"weights": list(best_w)})


class FixedProbs:
    """A tagger whose tag probabilities on some texts are computed once (forward selection scores many
    averages of the same members)."""

    def __init__(self, model: Any, texts: Sequence[str]) -> None:
        self.labels, self.encoder_name = model.labels, model.encoder_name
        self.probs = dict(zip(texts, model.token_probs(list(texts))))

    def token_probs(self, texts: Sequence[str], batch_size: int = 32) -> list[tuple[list[tuple[int, int]], np.ndarray]]:
        return [self.probs[t] for t in texts]


def select_taggers(taggers: Sequence[Any], dev: Sequence[Example]) -> list[int]:
    """Which of ``taggers`` to average, by greedy forward selection on dev entity F1 (Caruana et al. 2004,
    as AutoGluon and auto-sklearn build their ensembles): the best tagger alone, then its best partner (an
    ensemble has two members at least), then each tagger whose addition raises dev F1, best first; indices
    in ``taggers``' order. A tagger dev ranks lower alone may still be the one that errs differently:
    measured on wnut17 (eval set and dev from its official validation split, `benchmarks/tagger_ensemble.py
    --subsets`), dev F1 of the 31 subsets of five taggers ranked them as test did (Spearman 0.92); the
    e5 tagger, 0.480 alone against the best tagger's 0.625, was in the dev-best subset (dev 0.648, test
    0.468), and the ensemble a fixed share of the best one's score let in scored 0.441."""
    from adaptloop.train.tagger import dev_f1

    fixed = [FixedProbs(t, [e.text for e in dev]) for t in taggers]

    def f1(chosen: Sequence[int]) -> float:  # a tagger alone: averaged with itself, it tags as it does
        return dev_f1(TaggerEnsemble([fixed[i] for i in (chosen * 2 if len(chosen) == 1 else chosen)]), dev)

    scores = [f1([i]) for i in range(len(taggers))]
    chosen = [max(range(len(taggers)), key=lambda i: (scores[i], -i))]
    best = scores[chosen[0]]
    while len(chosen) < len(taggers):
        score, i = max((f1([*chosen, i]), -i) for i in range(len(taggers)) if i not in chosen)
        if len(chosen) > 1 and score <= best:
            break
        chosen, best = [*chosen, -i], score
    return sorted(chosen)


def load_ensemble(folder: Path, load_member: object) -> EnsembleModel | TaggerEnsemble:
    meta = json.loads((Path(folder) / "adaptloop_model.json").read_text(encoding="utf-8"))
    members = [load_member(Path(folder) / name) for name in meta["members"]]  # type: ignore[operator]
    if meta.get("kind") == "tagger-ensemble":
        from adaptloop.train.tagger import saved_decoder

        return TaggerEnsemble(members, meta.get("thresholds"), saved_decoder(meta))
    return EnsembleModel(members, meta["weights"])


__all__ = ["EnsembleModel", "EnsembleTrainer", "FixedProbs", "TaggerEnsemble", "combine", "load_ensemble",
           "select_taggers", "simplex_grid"]
