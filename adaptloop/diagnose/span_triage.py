"""Triage of extraction traces: feedback that corrects entities, judged before it is learned.

The text rules are the classification triage's own (``diagnose.triage``): instruction text
in the input, a request the input takes back, contradictory premises, and bursts of
identical feedback from one source are poison whatever the task. What is particular to
spans is the check on the corrected entities themselves:

- **type conflict** (``label_noise``): a corrected entity the model did not find as given,
  whose type a classifier of the training mentions (its words, and its words in a few words
  of context, on sentence-encoder embeddings) finds improbable for that type: under
  ``TYPE_ALPHA`` of the type's training mentions look less like it, out of fold. The classifier never sees
  the traces, so a reviewer who tags every person as a location cannot vouch for itself.
- **eval conflict**: a near-duplicate of a frozen eval example whose entity types disagree
  (the types, not the words: templated data repeats a sentence with other names in it).

A trace whose corrected entities differ from the model's is a ``fixable`` failure, named by
its main error (missed, spurious, wrong type or boundary); one that agrees is ``ok``.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from adaptloop.diagnose.reference import nearest, unit_rows
from adaptloop.diagnose.triage import (
    EVAL_DUP_SIM,
    TraceView,
    bursts,
    contradiction,
    injection,
    retraction,
)
from adaptloop.types import Verdict

Span = tuple[int, int, str]
CONTEXT_CHARS = 30  # characters of context either side of a mention, for its embedding
# A corrected entity's type is improbable when fewer than TYPE_ALPHA of the training mentions of that
# type look less like it (its class-conditional conformal p-value: the given type's probability ranked
# among the out-of-fold probabilities the training mentions of that type get) and another type is
# TYPE_ODDS nats likelier. Ranking within the type makes one bar fit a type the classifier knows well
# (a "person" at p=0.1 is odd) and one it barely knows (a "creative-work" at p=0.1 is common).
# Set with benchmarks/triage_recall.py on the AdaptFT logs of seed 0 (wnut17 / presidio_pii, 3 stages):
# poison precision / recall pooled 0.945 / 0.915, against 0.852 / 0.913 for the earlier absolute bar
# (p < 0.1); checked on seed 1 (another seed set and other logs): 0.915 / 0.962 against 0.866 / 0.953.
TYPE_ALPHA = 0.05
TYPE_ODDS = 1.0
TYPE_FEW_ODDS = 4.0  # a type with too few training mentions for that (under 1 / TYPE_ALPHA): below every one
TYPE_C = 10.0


@dataclass(frozen=True)
class SpanView:
    """What span triage needs of a trace."""

    id: str
    text: str
    pred: tuple[Span, ...] | None  # the model's entities
    feedback: tuple[Span, ...] | None  # the corrected entities; None without
    verdict: str | None = None
    source: str | None = None
    ts: dt.datetime | None = None


def mention(text: str, span: Span) -> str:
    """A mention in its context, as the encoder sees it: ``left [mention] right``."""
    s, e, _ = span
    left, right = text[max(0, s - CONTEXT_CHARS):s], text[e:e + CONTEXT_CHARS]
    if s > CONTEXT_CHARS:  # drop the word the window cuts
        left = left.split(None, 1)[1] if len(left.split(None, 1)) == 2 else ""
    if len(text) - e > CONTEXT_CHARS:
        right = right.rsplit(None, 1)[0] if len(right.rsplit(None, 1)) == 2 else ""
    return " ".join(f"{left} [{text[s:e]}] {right}".split())


def _key(spans: Sequence[Span]) -> str:
    return json.dumps([list(s) for s in sorted(spans)])


def _types(spans: Sequence[Span]) -> Counter:
    return Counter(lab for *_, lab in spans)


def main_error(pred: Sequence[Span], gold: Sequence[Span]) -> str:
    """The fix pattern of a failure: ``missed``, ``spurious``, ``wrong_type`` or ``boundary``."""
    p, g = set(pred), set(gold)
    kinds: Counter = Counter()
    for s, e, _lab in g - p:
        overlap = [q for q in pred if q[0] < e and s < q[1]]
        if not overlap:
            kinds["missed"] += 1
        elif any(q[0] == s and q[1] == e for q in overlap):
            kinds["wrong_type"] += 1
        else:
            kinds["boundary"] += 1
    kinds["spurious"] += sum(1 for s, e, _ in p - g if not any(q[0] < e and s < q[1] for q in gold))
    return kinds.most_common(1)[0][0] if kinds else "boundary"


def _mention_features(items: Sequence[tuple[str, Span]], embed: Callable[[list[str]], np.ndarray]) -> np.ndarray:
    """A mention's words and its words in context, each embedded and unit-normalised, side by side."""
    return np.concatenate([unit_rows(embed([mention(t, sp) for t, sp in items])),
                           unit_rows(embed([t[sp[0]:sp[1]] for t, sp in items]))], axis=1)


def type_conflicts(views: Sequence[SpanView], train: Sequence[tuple[str, Sequence[Span]]],
                   embed: Callable[[list[str]], np.ndarray]) -> dict[int, str]:
    """View index → reason, for a corrected entity the model did not find as given and whose type a
    classifier of training mentions finds improbable for that type (``TYPE_ALPHA``, ``TYPE_ODDS``)."""
    from adaptloop.train.logreg import fit_logreg, out_of_fold_proba

    ref = [(text, sp) for text, spans in train for sp in spans]
    kinds = sorted({sp[2] for _, sp in ref})
    asked = [(i, sp) for i, v in enumerate(views) for sp in (v.feedback or ())
             if sp[2] in kinds and sp not in set(v.pred or ())]
    if len(kinds) < 2 or not asked:
        return {}
    index = {k: j for j, k in enumerate(kinds)}
    ref_x, ref_y = _mention_features(ref, embed), np.array([index[sp[2]] for _, sp in ref])
    clf = fit_logreg(ref_x, ref_y, c=TYPE_C, seed=0, max_iter=2000)
    oof = out_of_fold_proba(ref_x, ref_y, len(kinds), max_iter=2000)
    scores = {k: np.sort(oof[ref_y == j, j]) for k, j in index.items()}  # how much each type's mentions look it
    probs = clf.predict_proba(_mention_features([(views[i].text, sp) for i, sp in asked], embed))
    out: dict[int, str] = {}
    for (i, sp), p in zip(asked, probs):
        given, top, seen = float(p[index[sp[2]]]), float(p.max()), scores[sp[2]]
        odds = float(np.log(top / max(given, 1e-12)))
        rank = (np.searchsorted(seen, given) + 1) / (len(seen) + 1)  # conformal p-value within the type
        if len(seen) + 1 < 1 / TYPE_ALPHA:  # too few mentions to rank: below all of them, and far less likely
            doubted = given < seen[0] and odds >= TYPE_FEW_ODDS
        else:
            doubted = rank < TYPE_ALPHA and odds >= TYPE_ODDS
        if doubted and i not in out:
            text = views[i].text
            out[i] = (f"'{text[sp[0]:sp[1]]}' tagged {sp[2]}, but a classifier of {len(ref)} training mentions "
                      f"gives that type p={given:.2f} (lower than {1 - rank:.0%} of the training {sp[2]} "
                      f"mentions get, out of fold) and {kinds[int(p.argmax())]} p={top:.2f}")
    return out


def span_triage(views: Sequence[SpanView], x: np.ndarray, *, types: Sequence[str],
                train: Sequence[tuple[str, Sequence[Span]]], embed: Callable[[list[str]], np.ndarray],
                eval_examples: Sequence[tuple[str, Sequence[Span]]] = (),
                eval_x: np.ndarray | None = None) -> list[Verdict]:
    """One verdict per trace (same order as ``views``); ``x`` are the traces' text embeddings,
    ``eval_x`` the frozen eval examples', ``embed`` embeds mentions."""
    burst = bursts([TraceView(v.id, v.text, None, None, feedback_label=None if v.feedback is None
                              else _key(v.feedback), source=v.source, ts=v.ts) for v in views])
    conflicts = type_conflicts(views, train, embed)
    if eval_x is not None and len(eval_x) and len(x):
        e_idx, e_sim = nearest(x, eval_x)
    else:
        e_idx, e_sim = np.zeros(len(views), dtype=int), np.zeros(len(views))
    known = set(types)
    out: list[Verdict] = []
    for i, v in enumerate(views):
        spans = v.feedback if v.feedback is not None else (v.pred if v.verdict == "correct" else None)
        failure = (spans is not None and v.pred is not None and set(spans) != set(v.pred)) or v.verdict == "wrong"
        near = eval_examples[e_idx[i]] if e_sim[i] >= EVAL_DUP_SIM else None
        found = _poison(v, spans, known, burst.get(v.id), conflicts.get(i), near, e_sim[i])
        if found:
            out.append(Verdict(v.id, "poison", found[0], found[1], 0.0, failure=failure))
            continue
        if spans is None:
            if v.verdict == "wrong":
                out.append(Verdict(v.id, "unlabelled", "no_correction", "marked wrong without corrected "
                                       "entities", 0.0, failure=True))
            else:
                out.append(Verdict(v.id, "unjudged", "", "no feedback and no failure signal", 0.0))
            continue
        if not failure:
            out.append(Verdict(v.id, "ok", "confirmed", f"feedback confirms {len(spans)} entities", 1.0,
                                   label=_label(spans), spans=tuple(spans)))
            continue
        kind = main_error(v.pred or (), spans)
        out.append(Verdict(v.id, "fixable", kind, f"{kind}: the model found {len(v.pred or ())} entities, "
                               f"the trusted correction has {len(spans)}", 1.0, label=_label(spans),
                               spans=tuple(spans), failure=True))
    return out


def _poison(v: SpanView, spans: Sequence[Span] | None, known: set[str], burst: str | None, conflict: str | None,
            near: tuple[str, Sequence[Span]] | None, sim: float) -> tuple[str, str] | None:
    """(kind, reason) of the first poison rule a trace meets, or None."""
    unknown = sorted({lab for *_, lab in spans or () if lab not in known})
    if unknown:
        return "unknown_label", f"entity type(s) {', '.join(unknown)} are not types of this task"
    hit = injection(v.text)
    if hit:
        return "injection", f"instruction text in the input: '{hit}'"
    took_back = retraction(v.text)
    if took_back and spans is not None:
        return "negation", f"the input takes its request back ('{took_back}'); its entities no longer describe one"
    why = contradiction(v.text)
    if why and spans is not None:
        return "contradiction", f"contradictory premises: {why}"
    if burst:
        return "burst", burst
    if spans is not None and near is not None and _types(near[1]) != _types(spans):
        return "eval_conflict", (f"near-duplicate (cosine {sim:.2f}) of a frozen eval example whose entity types "
                                 "differ")
    if v.feedback is not None and conflict:
        return "label_noise", conflict
    return None


def _label(spans: Sequence[Span]) -> str:
    from adaptloop.data.spans import strat_key

    return strat_key(spans)
