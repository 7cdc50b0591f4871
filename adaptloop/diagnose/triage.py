"""Judging and triage of production traces: what may be learned from, and what must not.

Every trace gets one verdict with a recorded reason and a trust score in [0, 1]:

- ``ok``: the feedback confirms the model (trustworthy: training data).
- ``fixable``: a failure with a valid input and a trustworthy corrected label.
- ``poison``: kept and shown, never trained on — prompt injection or instruction text in the
  input, a request the input itself takes back ("never mind, ...", or a part of it that withdraws
  the message and does not itself carry the label), contradictory premises (a clause and its own
  negation, or two parts that make two requests of different classes),
  a burst of identical feedback from one source, a label that conflicts with a near-duplicate
  in a frozen eval set, or a label the training data contradicts: a logistic regression on the
  training data alone (never on the traces, whose systematic flips would vouch for each other)
  finds it far less likely than its top class, or less likely and one of many traces of the
  batch relabelled from the same class to the same label (a systematic relabelling).
- ``out_of_scope``: far from every known example (drift); reported, never trained on.
- ``unlabelled``: a failure signal (a "wrong" verdict, low confidence, or disagreement with
  the nearest training examples) without a correction to learn from.
- ``unjudged``: no feedback and no failure signal.

Pure functions over texts, labels and embeddings; the improve cycle supplies them.
"""

from __future__ import annotations

import datetime as dt
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from adaptloop.data.curate import normalize_text
from adaptloop.diagnose.findings import _one_edit_from, training_vocabulary
from adaptloop.diagnose.parts import STOP, label_parts, words
from adaptloop.diagnose.reference import (
    DRIFT_QUANTILE,
    PAIR_MIN,
    PAIR_ODDS,
    REFERENCE_ODDS,
    drift_threshold,
    knn_conflict,
    knn_labels,
    knn_size,
    nearest,
    reference_model,
    reference_odds,
    unit_rows,
)
from adaptloop.diagnose.steering import steering
from adaptloop.types import Verdict

# instruction text aimed at a model or a labeller, not a user's request
INJECTION = re.compile(
    r"\b(ignore|disregard|forget|override)\b[^.!?]{0,40}\b(instructions?|prompts?|rules|guidelines|above|"
    r"previous|prior|system)\b"
    r"|\bsystem prompt\b|\bjailbreak|\bdeveloper mode\b|\bDAN\b|\bdo anything now\b"
    r"|\byou are now\b|\bact as (an?|the)\b|\bpretend (to be|you are)\b"
    r"|\b(classify|label|categori[sz]e|mark|tag) (this|it|the following|me)\b[^.!?]{0,30}\bas\b"
    r"|\b(respond|reply|answer|output) (only )?with\b"
    r"|\b(the )?(correct|right|true|real) (label|class|category|intent|answer) (is|=)\b|(^|\s)system\s*:"
    r"|<\|?(im_start|system|endoftext)\|?>|\[/?(INST|SYS)\]|###\s*(instruction|system)",
    re.IGNORECASE)
# the user takes the request back ("never mind, ...", "this is not my question: ..."): whatever
# label comes with it no longer describes the text
RETRACTION = re.compile(
    r"^\W*(never ?mind\b|this is not my question|that is not my question|i never asked\b|not asking about\b"
    r"|disregard my (request|question)\b|i (do not|don't) need help with (this|that)\b)", re.IGNORECASE)
NEGATION = re.compile(r"\b(not|no|never|nothing|none|n't|cannot|didnt|dont|doesnt|havent|hasnt|wasnt|isnt)\b|n't\b",
                      re.IGNORECASE)
CLAUSE_SPLIT = re.compile(r"\b(?:but|although|though|yet|however|whereas)\b|[;,.!?]", re.IGNORECASE)
OPPOSITES = (("always", "never"), ("already", "yet"), ("everything", "nothing"), ("all", "none"))
BURST_MIN = 3  # identical (input, label) from one source this many times ...
BURST_WINDOW = dt.timedelta(hours=1)  # ... within this window is a coordinated burst
EVAL_DUP_SIM = 0.95  # cosine at or above: a near-duplicate of a frozen eval example
CONCENTRATION = 0.8  # a source whose feedbacks in a window are this much one label concentrates on it
SWARM_SIM = 0.9  # cosine at or above: near-identical texts (one message with small edits)
# a feedback label none of its nearest neighbours carries, while KNN_AGREE of them agree on another,
# PEER_MIN or more of them other sources' traces of this batch, and the training data's top class is not
# the label either: mislabelled. Measured with benchmarks/triage_recall.py (both generators): mislabel
# recall 0.951 -> 0.954 (a), 0.872 -> 0.900 (b), precision 0.946 -> 0.937 (a), 0.950 -> 0.937 (b); with
# PEER_MIN 2 / 4: b mislabel recall 0.903 / 0.889, precision 0.931 / 0.939
PEER_MIN = 3
LOW_CONFIDENCE = 0.3  # no feedback and the model's top score below this: a failure signal


@dataclass(frozen=True)
class TraceView:
    """What triage needs of a trace."""

    id: str
    text: str
    pred: str | None
    confidence: float | None
    feedback_label: str | None = None
    verdict: str | None = None
    source: str | None = None
    ts: dt.datetime | None = None


def content(clause: str) -> set[str]:
    return {w for w in words(NEGATION.sub(" ", clause)) if w not in STOP and len(w) > 2}


def contradiction(text: str) -> str | None:
    """A clause and its own negation in one input ("my card arrived but it has not arrived"),
    or opposite quantifiers on the same content; None when there is none."""
    clauses = [c.strip() for c in CLAUSE_SPLIT.split(text) if c and c.strip()]
    for i, a in enumerate(clauses):
        for b in clauses[i + 1:]:
            ca, cb = content(a), content(b)
            if not ca or not cb:
                continue
            shared = ca & cb
            jacc = len(shared) / len(ca | cb)
            if jacc >= 0.5 and bool(NEGATION.search(a)) != bool(NEGATION.search(b)):
                return f"'{a}' vs '{b}'"
            wa, wb = set(words(a)), set(words(b))
            for x, y in OPPOSITES:
                if shared and ((x in wa and y in wb) or (y in wa and x in wb)):
                    return f"'{a}' vs '{b}'"
    return None


def retraction(text: str) -> str | None:
    m = RETRACTION.search(text)
    return m.group(0).strip() if m else None


def injection(text: str) -> str | None:
    m = INJECTION.search(text)
    return m.group(0) if m else None


def label_identifier(text: str, label: str, vocabulary: frozenset[str] = frozenset()) -> str | None:
    """The feedback label written as the system's identifier inside the input (``AddToPlaylist``,
    ``ADDTOPLAYLIST``, ``card_arrival``): the words of a label of two or more words run together
    or joined by ``_``, as no user writes them but as someone who knows the task's label names and
    wants one does. A match that is an ordinary word of the training texts (a label ``e_mail`` in
    "email") does not count; hyphens ("carry-on") and spaces ("add to playlist") are how people
    write words, and are left to the steering rule, which asks what the rest of the input says."""
    parts = label_parts(label)
    if len(parts) < 2:
        return None
    m = re.search(r"(?<![^\W_])" + "_?".join(map(re.escape, parts)) + r"(?![^\W_])", text, re.IGNORECASE)
    if m is None or m.group(0).replace("_", "").lower() in vocabulary:
        return None
    return m.group(0)


def bursts(views: Sequence[TraceView], *, min_count: int = BURST_MIN,
           window: dt.timedelta = BURST_WINDOW) -> dict[str, str]:
    """Trace id → reason, for identical (input, feedback label) sent by one source at least
    ``min_count`` times within ``window``."""
    groups: dict[tuple[str, str, str], list[TraceView]] = defaultdict(list)
    for v in views:
        if v.feedback_label is not None and v.source:
            groups[(v.source, normalize_text(v.text), v.feedback_label)].append(v)
    out: dict[str, str] = {}
    for (source, _t, label), vs in groups.items():
        for run in _windows(vs, min_count, window):
            for v in run:
                out[v.id] = f"{len(run)} identical '{label}' feedbacks from source '{source}' within {window}"
    return out


def source_bursts(views: Sequence[TraceView], x: np.ndarray, odds: np.ndarray, *, min_count: int = BURST_MIN,
                  window: dt.timedelta = BURST_WINDOW) -> dict[str, str]:
    """Trace id → reason, for coordinated feedback that is not one input repeated by one source:

    - one source whose feedbacks within ``window`` concentrate on one label (``CONCENTRATION`` of
      them, ``min_count`` or more), most of whose inputs the training data says are something
      else (log-odds >= ``PAIR_ODDS``): a reviewer working through a queue labels many classes;
    - ``min_count`` or more feedbacks with one label on near-identical inputs (cosine >= ``SWARM_SIM``)
      within ``window``, from any sources, that the training data says are something else;
    - one input, word for word, labelled alike ``min_count`` or more times within ``window`` by two
      or more sources, when the training data's top class for it is another (a relay: real users
      seldom send the very same words within the hour, and a lesson repeated is one lesson, so
      little is lost when a genuine one is held back).

    Views without a time are left out: neither pattern can be told from a queue worked through later.
    """
    out: dict[str, str] = {}
    at = {v.id: i for i, v in enumerate(views)}
    against = {v.id: bool(odds[i] >= PAIR_ODDS) for i, v in enumerate(views)}
    views = [v for v in views if v.ts is not None]  # "within a window" needs a time
    by_source: dict[str, list[TraceView]] = defaultdict(list)
    for v in views:
        if v.feedback_label is not None and v.source:
            by_source[v.source].append(v)
    for source, vs in by_source.items():
        for run in _windows(vs, min_count, window):
            label, n = Counter(v.feedback_label for v in run).most_common(1)[0]
            mine = [v for v in run if v.feedback_label == label]
            if n < min_count or n < CONCENTRATION * len(run) or sum(against[v.id] for v in mine) * 3 < 2 * n:
                continue
            for v in mine:
                out.setdefault(v.id, f"source '{source}' put '{label}' on {n} of its {len(run)} feedbacks within "
                                     f"{window}; the training data says {sum(against[w.id] for w in mine)} of "
                                     "those inputs are something else")
    relayed: dict[tuple[str, str], list[TraceView]] = defaultdict(list)
    for v in views:  # one input, word for word, sent again and again from several sources
        if v.feedback_label is not None and odds[at[v.id]] > 0:
            relayed[(normalize_text(v.text), v.feedback_label)].append(v)
    for (_t, label), vs in relayed.items():
        for run in _windows(vs, min_count, window):
            if len({w.source for w in run}) >= 2:
                for v in run:
                    out.setdefault(v.id, f"the same input labelled '{label}' {len(run)} times within {window} from "
                                         f"{len({w.source for w in run})} sources; the training data reads it as "
                                         "another class")
    by_label: dict[str, list[TraceView]] = defaultdict(list)
    for v in views:
        if v.feedback_label is not None and against[v.id]:
            by_label[v.feedback_label].append(v)
    for label, vs in by_label.items():
        if len(vs) < min_count:
            continue
        ux = unit_rows(x[[at[v.id] for v in vs]])
        sim = ux @ ux.T
        for j, v in enumerate(vs):
            close = [vs[k] for k in np.flatnonzero(sim[j] >= SWARM_SIM)]
            for run in _windows(close, min_count, window):
                if v in run:
                    out.setdefault(v.id, f"{len(run)} near-identical inputs labelled '{label}' within {window} from "
                                         f"{len({w.source for w in run})} source(s); the training data says "
                                         "they are something else")
    return out


def peer_votes(views: Sequence[TraceView], x: np.ndarray, train_x: np.ndarray, train_labels: Sequence[str],
               k: int, *, chunk: int = 1024) -> list[tuple[Counter, int]]:
    """Per view: the labels of its ``k`` nearest neighbours among the training data and the other
    sources' labelled traces of this batch, and how many of those neighbours are such traces. A
    source's own traces are left out, so one reviewer's consistent flips cannot vouch for each
    other; people who labelled alike independently can. Computed ``chunk`` rows at a time."""
    out: list[tuple[Counter, int]] = [(Counter(), 0) for _ in views]
    have = [i for i, v in enumerate(views) if v.feedback_label is not None]
    if not have:
        return out
    ux, ut = unit_rows(x[have]), unit_rows(train_x) if len(train_x) else np.zeros((0, x.shape[1]))
    src = np.array([views[i].source or f"#{i}" for i in have], dtype=object)
    pool = list(train_labels) + [views[i].feedback_label for i in have]
    n_train = len(train_labels)
    for lo in range(0, len(have), chunk):
        block = ux[lo:lo + chunk]
        sim = np.concatenate([block @ ut.T, block @ ux.T], axis=1)
        sim[:, n_train:][src[lo:lo + chunk, None] == src[None, :]] = -np.inf  # a source's own traces
        kk = min(k, sim.shape[1])
        top = np.argpartition(-sim, kk - 1, axis=1)[:, :kk]
        for r, row in enumerate(top):
            row = [j for j in row if np.isfinite(sim[r, j])]
            out[have[lo + r]] = (Counter(pool[j] for j in row), sum(j >= n_train for j in row))
    return out


def _windows(vs: Sequence[TraceView], min_count: int, window: dt.timedelta) -> list[list[TraceView]]:
    """The runs of ``vs`` (by time; an undated view counts as inside every window) that end at each
    item: everything within ``window`` before it, when that is ``min_count`` or more."""
    if len(vs) < min_count:
        return []
    vs = sorted(vs, key=lambda v: v.ts or dt.datetime.min)
    runs, lo = [], 0
    for hi in range(len(vs)):
        while vs[hi].ts and vs[lo].ts and vs[hi].ts - vs[lo].ts > window:
            lo += 1
        if hi - lo + 1 >= min_count:
            runs.append(list(vs[lo:hi + 1]))
    return runs


def fix_pattern(text: str, pred: str | None, label: str, vocabulary: frozenset[str], median_words: float) -> str:
    """The surface pattern of a fixable failure: typo, truncated, casing, or confusable."""
    ws = words(text)
    if any(w not in vocabulary and _one_edit_from(w, vocabulary) for w in ws):
        return "typo"
    if len(ws) <= max(2, 0.5 * median_words) and not text.rstrip().endswith(("?", ".", "!")):
        return "truncated"
    letters = [c for c in text if c.isalpha()]
    if letters and sum(c.isupper() for c in letters) / len(letters) > 0.6:
        return "casing"
    return "confusable" if pred is not None else "paraphrase"


@dataclass
class _Evidence:
    """What the rules read about the traces of one triage, computed once for all of them."""

    labels: set[str]
    burst: dict[str, str]
    odds: np.ndarray
    conf: np.ndarray
    ref_top: list[str]
    pairs: Counter
    near_train: np.ndarray
    knn: list
    peers: list
    drift_at: float
    steered: dict[str, tuple[str, str]]
    eval_labels: Sequence[str]
    e_idx: np.ndarray
    e_sim: np.ndarray
    vocab: frozenset[str]
    median_words: float
    oos_label: str | None


def triage(views: Sequence[TraceView], x: np.ndarray, *, labels: Sequence[str], train_texts: Sequence[str],
           train_labels: Sequence[str], train_x: np.ndarray, eval_labels: Sequence[str] = (),
           eval_x: np.ndarray | None = None, oos_label: str | None = None, seed: int = 0,
           embed: Callable[[list[str]], np.ndarray] | None = None) -> list[Verdict]:
    """One verdict per trace (same order as ``views``); ``x`` are the traces' embeddings; ``embed``
    (texts → embeddings, same encoder) lets triage read the parts of an input on their own."""
    burst = bursts(views)
    ref = reference_model(train_labels, train_x, labels, seed=seed)
    odds, conf, ref_top = reference_odds(views, x, train_labels, train_x, labels, seed=seed, ref=ref)
    drift_at = drift_threshold(train_x) if len(train_x) > 1 else -1.0
    if eval_x is not None and len(eval_x):
        e_idx, e_sim = nearest(x, eval_x)
    else:
        e_idx, e_sim = np.zeros(len(views), dtype=int), np.zeros(len(views))
    ev = _Evidence(
        labels=set(labels), burst={**source_bursts(views, x, odds), **burst}, odds=odds, conf=conf, ref_top=ref_top,
        pairs=Counter((ref_top[i], v.feedback_label) for i, v in enumerate(views)
                      if odds[i] >= PAIR_ODDS and ref_top[i] != v.feedback_label),
        near_train=nearest(x, train_x)[1] if len(train_x) else np.ones(len(views)),
        knn=knn_labels(x, train_x, train_labels, k=knn_size(train_labels)), drift_at=drift_at,
        peers=peer_votes(views, x, train_x, train_labels, knn_size(train_labels)),
        steered=steering(views, labels, ref, embed, train_x, drift_at, odds, x) if ref is not None and embed else {},
        eval_labels=eval_labels, e_idx=e_idx, e_sim=e_sim, vocab=training_vocabulary(train_texts),
        median_words=float(np.median([len(words(t)) for t in train_texts])) if train_texts else 8.0,
        oos_label=oos_label)
    return [_verdict(i, v, ev) for i, v in enumerate(views)]


def _poison(i: int, v: TraceView, label: str | None, ev: _Evidence) -> tuple[str, str, float] | None:
    """The first poison rule a trace meets, in order: (kind, reason, trust); None when none does."""
    trust = float(ev.conf[i]) if not np.isnan(ev.conf[i]) else 0.5
    if label is not None and label not in ev.labels:
        return "unknown_label", f"feedback label '{label}' is not a class of this task", 0.0
    hit = injection(v.text)
    if hit:
        return "injection", f"instruction text in the input: '{hit}'", 0.0
    named = label_identifier(v.text, label, ev.vocab) if label is not None else None
    if named:
        return ("injection", f"the input writes the label's identifier '{named}': text addressed to the system "
                "that sorts it, not a user's request", 0.0)
    took_back = retraction(v.text)
    if took_back and label is not None:
        return ("negation", f"the input takes its request back ('{took_back}'); the label '{label}' no longer "
                "describes it", 0.0)
    why = contradiction(v.text)
    if why and label is not None:
        return "contradiction", f"contradictory premises: {why}", 0.0
    if v.id in ev.burst:
        return "burst", ev.burst[v.id], 0.0
    if label is None:
        return None
    if ev.e_sim[i] >= EVAL_DUP_SIM and ev.eval_labels[ev.e_idx[i]] != label:
        return ("eval_conflict", f"near-duplicate (cosine {ev.e_sim[i]:.2f}) of a frozen eval example labelled "
                f"'{ev.eval_labels[ev.e_idx[i]]}', feedback says '{label}'", 0.0)
    if ev.odds[i] >= REFERENCE_ODDS:
        return ("label_noise", f"feedback '{label}' contradicts the training data: a model of it alone finds "
                f"'{label}' {np.exp(ev.odds[i]):.0f}x less likely than its top class (p={ev.conf[i]:.2f})", trust)
    n_pair = ev.pairs.get((ev.ref_top[i], label), 0)
    if ev.odds[i] >= PAIR_ODDS and n_pair >= PAIR_MIN:
        return ("label_noise", f"systematic relabelling: {n_pair} traces the training data puts in "
                f"'{ev.ref_top[i]}' are labelled '{label}' (p={ev.conf[i]:.2f})", trust)
    votes, n_peer = ev.peers[i]
    other = knn_conflict(votes, label) if n_peer >= PEER_MIN and ev.odds[i] > 0 else None
    if other is not None:
        return ("label_noise", f"its nearest neighbours, {n_peer} of them other sources' traces, agree on "
                f"'{other}' ({votes[other]} of {sum(votes.values())}) and none says '{label}'", trust)
    # after the label-noise rules: an input whose whole text contradicts its label is mislabelled,
    # not steered; steering is a label only the odd part of the input supports
    if v.id in ev.steered:
        return ev.steered[v.id][0], ev.steered[v.id][1], 0.0
    return None


def _verdict(i: int, v: TraceView, ev: _Evidence) -> Verdict:
    label = v.feedback_label if v.feedback_label is not None else (v.pred if v.verdict == "correct" else None)
    failure = ((label is not None and v.pred is not None and label != v.pred) or v.verdict == "wrong")
    trust = float(ev.conf[i]) if not np.isnan(ev.conf[i]) else 0.5
    poison = _poison(i, v, label, ev)
    if poison is not None:
        return Verdict(v.id, "poison", poison[0], poison[1], poison[2], failure=failure)
    if ev.near_train[i] < ev.drift_at and label != ev.oos_label:
        return Verdict(v.id, "out_of_scope", "drift", f"nearest training example at cosine {ev.near_train[i]:.2f}, "
                       f"below the {DRIFT_QUANTILE:.0%} training quantile {ev.drift_at:.2f}", trust, failure=failure)
    if label is None:
        signal = _signal(v, ev.knn[i])
        if v.verdict == "wrong" or signal:
            return Verdict(v.id, "unlabelled", "no_correction", signal or "marked wrong without a corrected label",
                           0.0, failure=True)
        return Verdict(v.id, "unjudged", "", "no feedback and no failure signal", 0.0)
    if not failure:
        return Verdict(v.id, "ok", "confirmed", f"feedback confirms '{label}'", trust, label=label)
    pattern = fix_pattern(v.text, v.pred, label, ev.vocab, ev.median_words)
    return Verdict(v.id, "fixable", pattern,
                   f"{pattern}: model said '{v.pred}', trusted correction '{label}' (p={trust:.2f})",
                   trust, label=label, failure=True)


def _signal(v: TraceView, votes: Counter) -> str:
    if v.confidence is not None and v.confidence < LOW_CONFIDENCE:
        return f"low confidence {v.confidence:.2f} for '{v.pred}'"
    other = knn_conflict(votes, v.pred) if v.pred is not None else None
    if other is not None:
        return f"disagreement: the nearest training examples say '{other}', the model '{v.pred}'"
    return ""


