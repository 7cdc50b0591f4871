"""Diagnosis as pure functions over per-example dev predictions.

``rows`` are what :func:`adaptloop.evaluate.rows.score_rows` returns: dicts with ``id``, ``text``,
``label`` (gold), ``pred`` and ``confidence``. Each detector returns :class:`Finding` objects
sorted by severity, highest first; :func:`diagnose` runs them all. Nothing here does I/O or
imports torch, numpy or cleanlab: label issues arrive already computed.

Severity lies in [0, 1] and ranks findings of different kinds against each other:

- confusable pairs, over/under-prediction, slices: the share of dev errors the finding explains;
- overfit/underfit: the size of the gap (train minus dev accuracy, the fall after the peak, the
  last rise, or how far train accuracy is from 1);
- label noise: the share of the pair's training examples that were flagged.

Dev sets are small, so every detector demands a few errors behind a claim (``min_errors``)
before it speaks: one or two misrouted examples are noise, not a finding.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from adaptloop.types import Diagnosis, Finding, finding_rank

MAX_EXAMPLES = 10  # example ids kept as evidence; most confident mistakes first

# class_errors: predicted >= 1.5x as often as it occurs (or the reverse). This alone bounds
# precision (recall) by 1/1.5 = 0.67, so no separate precision or recall threshold is needed.
SKEW_RATIO = 1.5

# fit_gap
OVERFIT_GAP = 0.15  # train minus dev accuracy; healthy MiniLM heads on intents sit near 0.05-0.10
LOW_TRAIN_ACCURACY = 0.9  # a model that cannot fit 90% of its own training data is underfit (or its labels are noisy)
MIN_CHANGE = 0.02  # dev-accuracy change that counts as a rise or a fall: one example in fifty
MIN_POINTS = 3  # evaluations needed before the shape of a step curve means anything

# slices
SHORT_WORDS = 3  # at most this many whitespace words: "card not working"
LONG_WORDS = 40  # at least this many: about the encoder's 64-token window, beyond which it truncates
SLICE_RATIO = 1.5  # slice error rate must reach this multiple of the overall error rate
TYPO_SHARE = 0.5  # share of unknown words one edit from a known word at which they count as typos

_WORD = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)*")

Row = Mapping[str, Any]


def _wrong(rows: Iterable[Row]) -> list[Row]:
    return [r for r in rows if r["pred"] != r["label"]]


def _example_ids(rows: Iterable[Row]) -> list[str]:
    """Ids of the most confident rows first: confident mistakes are the most telling ones."""
    ordered = sorted(rows, key=lambda r: -float(r.get("confidence", 0.0)))
    return [r["id"] for r in ordered[:MAX_EXAMPLES]]


def _severity(x: float) -> float:
    return round(min(1.0, max(0.0, x)), 4)


def _pair(a: Any, b: Any) -> tuple[Any, Any]:
    lo, hi = sorted((a, b), key=str)
    return lo, hi


def per_class(rows: Sequence[Row], labels: Sequence[str]) -> dict[str, dict[str, float]]:
    """Precision, recall, F1, support (gold count) and predicted count of each label.

    Args:
        rows: per-example predictions.
        labels: the label set; labels seen in ``rows`` but missing here are appended, sorted.

    Returns:
        label -> {"precision", "recall", "f1", "support", "predicted"}; a ratio with a zero
        denominator is 0.0.
    """
    support = Counter(r["label"] for r in rows)
    predicted = Counter(r["pred"] for r in rows)
    hits = Counter(r["label"] for r in rows if r["label"] == r["pred"])
    extra = sorted((set(support) | set(predicted)) - set(labels), key=str)
    out: dict[str, dict[str, float]] = {}
    for label in [*labels, *extra]:
        tp, n_pred, n_true = hits[label], predicted[label], support[label]
        precision = tp / n_pred if n_pred else 0.0
        recall = tp / n_true if n_true else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        out[label] = {"precision": precision, "recall": recall, "f1": f1, "support": n_true, "predicted": n_pred}
    return out


def confusable_pairs(rows: Sequence[Row], *, top: int = 5, min_errors: int = 2) -> list[Finding]:
    """Unordered label pairs ranked by confusion mass (errors a->b plus b->a).

    Args:
        rows: per-example predictions.
        top: keep at most this many pairs.
        min_errors: a pair needs at least this much mass.

    Returns:
        ``confusable_pair`` findings; severity = mass / all dev errors.
    """
    wrong = _wrong(rows)
    support = Counter(r["label"] for r in rows)
    by_pair: dict[tuple[Any, Any], list[Row]] = defaultdict(list)
    for r in wrong:
        by_pair[_pair(r["label"], r["pred"])].append(r)
    findings = []
    for (a, b), errs in by_pair.items():
        if len(errs) < min_errors:
            continue
        a_as_b = sum(r["label"] == a for r in errs)
        b_as_a = len(errs) - a_as_b
        share = len(errs) / len(wrong)
        findings.append(Finding(
            kind="confusable_pair",
            summary=(f"'{a}' and '{b}' are confused {len(errs)} times ({a_as_b} {a}->{b}, {b_as_a} {b}->{a}): "
                     f"{share:.0%} of {len(wrong)} dev errors"),
            severity=_severity(share),
            target={"labels": [a, b]},
            evidence={"a_as_b": a_as_b, "b_as_a": b_as_a, "support": {a: support[a], b: support[b]},
                      "errors": len(wrong), "example_ids": _example_ids(errs)},
            suggests=("contrastive", "larger-encoder"),
        ))
    return sorted(findings, key=finding_rank)[:top]


def class_errors(rows: Sequence[Row], labels: Sequence[str], *, min_support: int = 3, min_errors: int = 3,
                 ratio: float = SKEW_RATIO) -> list[Finding]:
    """Classes the model predicts clearly too often or too rarely.

    ``over_prediction``: predicted >= ``ratio`` x its support and at least ``min_errors`` more
    often than it occurs, at least ``min_support`` predictions; its precision is then at most
    1 / ``ratio``. ``under_prediction``: the mirror image (support >= ``ratio`` x predicted, at
    least ``min_errors`` fewer predictions, support >= ``min_support``; recall <= 1 / ``ratio``).
    The absolute excess keeps one or two stray predictions from counting as a skew.

    Returns:
        Findings; severity = the class's false positives (over) or misses (under) / all dev errors.
    """
    wrong = _wrong(rows)
    if not wrong:
        return []
    findings = []
    for label, s in per_class(rows, labels).items():
        n_pred, n_true = int(s["predicted"]), int(s["support"])
        counts = {"predicted": n_pred, "support": n_true, "precision": round(s["precision"], 4),
                  "recall": round(s["recall"], 4), "errors": len(wrong)}
        if n_pred >= min_support and n_pred - n_true >= min_errors and n_pred >= ratio * n_true:
            fp = [r for r in wrong if r["pred"] == label]
            share = len(fp) / len(wrong)
            findings.append(Finding(
                kind="over_prediction",
                summary=(f"'{label}' is predicted {n_pred} times but occurs {n_true} (precision "
                         f"{s['precision']:.2f}): its {len(fp)} false positives are {share:.0%} of dev errors"),
                severity=_severity(share),
                target={"label": label},
                evidence={**counts, "false_positives": len(fp),
                          "taken_from": dict(Counter(r["label"] for r in fp).most_common(3)),
                          "example_ids": _example_ids(fp)},
                suggests=("threshold", "contrastive"),
            ))
        if n_true >= min_support and n_true - n_pred >= min_errors and n_true >= ratio * n_pred:
            fn = [r for r in wrong if r["label"] == label]
            share = len(fn) / len(wrong)
            findings.append(Finding(
                kind="under_prediction",
                summary=(f"'{label}' occurs {n_true} times but is predicted {n_pred} (recall "
                         f"{s['recall']:.2f}): its {len(fn)} misses are {share:.0%} of dev errors"),
                severity=_severity(share),
                target={"label": label},
                evidence={**counts, "false_negatives": len(fn),
                          "lost_to": dict(Counter(r["pred"] for r in fn).most_common(3)),
                          "example_ids": _example_ids(fn)},
                suggests=("reweight", "augment"),
            ))
    return sorted(findings, key=finding_rank)


def _train_accuracy(points: Sequence[Mapping[str, Any]]) -> float | None:
    """Train accuracy of the point the fit kept: the best on dev (last on ties), else the last one."""
    with_train = [p for p in points if p.get("train_accuracy") is not None]
    if not with_train:
        return None
    scored = [p for p in with_train if p.get("dev_accuracy") is not None]
    if scored:
        best = max(range(len(scored)), key=lambda i: (scored[i]["dev_accuracy"], i))
        return float(scored[best]["train_accuracy"])
    return float(with_train[-1]["train_accuracy"])


def _step_curve(curve: Sequence[Mapping[str, Any]]) -> tuple[str, list[Mapping[str, Any]]]:
    """Points of a training-time curve (``step``, else ``epoch``, with ``dev_accuracy``), in order.

    A C grid is not a time axis and yields no points.
    """
    for key in ("step", "epoch"):
        points = [p for p in curve if p.get(key) is not None and p.get("dev_accuracy") is not None]
        if points:
            return key, sorted(points, key=lambda p: p[key])
    return "", []


def fit_gap(curve: Sequence[Mapping[str, Any]], *, dev_accuracy: float | None,
            train_accuracy: float | None = None, gap: float = OVERFIT_GAP,
            low_train: float = LOW_TRAIN_ACCURACY, min_change: float = MIN_CHANGE,
            min_points: int = MIN_POINTS) -> list[Finding]:
    """Over- and underfitting from a learning curve and the final accuracies.

    ``overfit`` when train accuracy exceeds dev by >= ``gap``, or when a step curve's dev accuracy
    peaked before its last point and then fell by >= ``min_change``. ``underfit`` when a step
    curve's dev accuracy was still rising at its last point (a new best, up >= ``min_change`` on
    the point before), or when train accuracy itself is below ``low_train``.

    Args:
        curve: dicts from training, any key may be missing: ``{"step", "epoch", "dev_accuracy",
            "train_loss", "train_accuracy"}`` (fine-tune) or ``{"C", "dev_accuracy",
            "train_accuracy"}`` (logistic-regression grid; only the gap is read from it).
        dev_accuracy: the kept model's dev accuracy; None: the curve's best.
        train_accuracy: the kept model's train accuracy; None: the curve's, at its best dev point.

    Returns:
        At most one ``overfit`` and one ``underfit`` finding (all reasons joined). Shape findings
        need ``min_points`` step points; gap findings need a train accuracy, so an empty curve
        without ``train_accuracy`` gives none.
    """
    key, points = _step_curve(curve)
    if dev_accuracy is None:
        devs = [float(p["dev_accuracy"]) for p in curve if p.get("dev_accuracy") is not None]
        dev_accuracy = max(devs) if devs else None
    if train_accuracy is None:
        train_accuracy = _train_accuracy(curve)
    over: list[tuple[float, str]] = []
    under: list[tuple[float, str]] = []
    evidence: dict[str, Any] = {"dev_accuracy": dev_accuracy, "train_accuracy": train_accuracy,
                                "points": len(points), "example_ids": []}
    if train_accuracy is not None and dev_accuracy is not None:
        evidence["gap"] = round(train_accuracy - dev_accuracy, 4)
    if train_accuracy is not None and dev_accuracy is not None and train_accuracy - dev_accuracy >= gap:
        over.append((train_accuracy - dev_accuracy, f"train accuracy {train_accuracy:.3f} vs dev "
                     f"{dev_accuracy:.3f} (gap {train_accuracy - dev_accuracy:.2f})"))
    if train_accuracy is not None and train_accuracy < low_train:
        under.append((1.0 - train_accuracy, f"train accuracy only {train_accuracy:.3f}: the model does "
                      "not fit its own training data"))
    if len(points) >= min_points:
        devs = [float(p["dev_accuracy"]) for p in points]
        peak = devs.index(max(devs))
        last = devs[-1]
        if peak < len(devs) - 1 and devs[peak] - last >= min_change:
            evidence["peak"] = {key: points[peak][key], "dev_accuracy": devs[peak]}
            over.append((devs[peak] - last, f"dev accuracy peaked at {devs[peak]:.3f} ({key} "
                         f"{points[peak][key]} of {points[-1][key]}) and fell to {last:.3f}"))
        if last >= max(devs[:-1]) and last - devs[-2] >= min_change:
            evidence["last_rise"] = round(last - devs[-2], 4)
            under.append((last - devs[-2], f"dev accuracy still rising at the last evaluation "
                          f"({devs[-2]:.3f} -> {last:.3f} at {key} {points[-1][key]})"))
    findings = []
    for kind, reasons, suggests in (("overfit", over, ("fewer-epochs", "lower-lr")),
                                    ("underfit", under, ("more-epochs", "finetune", "larger-encoder"))):
        if reasons:
            findings.append(Finding(kind=kind, summary=f"{kind}: " + "; ".join(r for _, r in reasons),
                                    severity=_severity(max(size for size, _ in reasons)),
                                    target={}, evidence=dict(evidence), suggests=suggests))
    return sorted(findings, key=finding_rank)


def label_noise(issues: Sequence[Mapping[str, Any]], *, n_train: int, n_classes: int | None = None,
                min_count: int = 2, unit: str = "training examples") -> list[Finding]:
    """Training-label issues grouped by the unordered pair (given label, suggested label).

    Args:
        issues: ``{"id", "label", "suggested"}`` per training example flagged (e.g. by cleanlab
            on out-of-fold probabilities), worst first; the order is kept for ``example_ids``.
        n_train: training examples checked (at least ``len(issues)`` is assumed).
        n_classes: labels in the task; the pair's expected size is ``2 * n_train / n_classes``.
            None: severity is the plain share of all training examples.
        min_count: a pair needs at least this many issues.
        unit: what an issue is, for the summary (extraction flags words).

    Returns:
        ``label_noise`` findings; severity = issues / expected training examples of the pair,
        so a pair holding many flags ranks high even in a large training set.
    """
    pairs: dict[tuple[Any, Any], list[Mapping[str, Any]]] = defaultdict(list)
    for it in issues:
        if it["label"] != it["suggested"]:
            pairs[_pair(it["label"], it["suggested"])].append(it)
    n = max(n_train, len(issues), 1)
    pool = max(1.0, 2 * n / n_classes) if n_classes else float(n)
    findings = []
    for (a, b), its in pairs.items():
        if len(its) < min_count:
            continue
        a_as_b = sum(it["label"] == a for it in its)
        findings.append(Finding(
            kind="label_noise",
            summary=(f"{len(its)} {unit} look mislabelled between '{a}' and '{b}' ({a_as_b} "
                     f"labelled '{a}' look like '{b}', {len(its) - a_as_b} the reverse): "
                     + (f"{len(its) / n:.1%} of {n} train" if unit == "training examples"
                        else f"in {n} training sentences")),
            severity=_severity(len(its) / pool),
            target={"labels": [a, b]},
            evidence={"count": len(its), "a_as_b": a_as_b, "b_as_a": len(its) - a_as_b, "n_train": n,
                      "example_ids": [it["id"] for it in its[:MAX_EXAMPLES]]},
            suggests=("clean",),
        ))
    return sorted(findings, key=finding_rank)


def word_tokens(text: str) -> list[str]:
    """Lowercase word tokens (letters, inner apostrophes); digits and punctuation are dropped."""
    return _WORD.findall(text.lower())


def training_vocabulary(texts: Iterable[str]) -> frozenset[str]:
    """The word tokens of ``texts``: what :func:`slices` takes as ``vocabulary``."""
    return frozenset(w for t in texts for w in word_tokens(t))


def _one_edit_from(word: str, vocabulary: frozenset[str] | set[str]) -> bool:
    """Whether a known word is one deletion, transposition, replacement or insertion away."""
    if len(word) < 4:  # short words sit one edit from some known word by accident ("had" -> "has")
        return False
    letters = "abcdefghijklmnopqrstuvwxyz"
    splits = [(word[:i], word[i:]) for i in range(len(word) + 1)]
    candidates = (
        [a + b[1:] for a, b in splits if b]
        + [a + b[1] + b[0] + b[2:] for a, b in splits if len(b) > 1]
        + [a + c + b[1:] for a, b in splits if b for c in letters]
        + [a + c + b for a, b in splits for c in letters]
    )
    return any(c in vocabulary for c in candidates)


def slices(rows: Sequence[Row], *, vocabulary: Iterable[str] | None = None, min_size: int = 10,
           min_errors: int = 3, ratio: float = SLICE_RATIO) -> list[Finding]:
    """Input slices where the model errs far more often than overall.

    Slices: ``short`` (<= ``SHORT_WORDS`` words), ``long`` (>= ``LONG_WORDS``), ``lowercase``
    (letters, no capitals), ``digits`` (contains a digit), ``typos_or_oov`` (a word token not in
    ``vocabulary``; skipped when it is None). A slice is reported when it has >= ``min_size`` rows
    (and is not every row), >= ``min_errors`` errors, and an error rate >= ``ratio`` x overall.

    Args:
        vocabulary: lowercase word tokens of the training set (see :func:`training_vocabulary`).

    Returns:
        ``slice`` findings; severity = slice errors / all dev errors. ``typos_or_oov`` suggests
        augmentation alone when most unknown words in its wrong rows (per occurrence) are one edit
        from a known word (typos), else a larger encoder first (words it never saw).
    """
    wrong = _wrong(rows)
    if not wrong:
        return []
    overall = len(wrong) / len(rows)
    members: dict[str, list[Row]] = {
        "short": [r for r in rows if len(r["text"].split()) <= SHORT_WORDS],
        "long": [r for r in rows if len(r["text"].split()) >= LONG_WORDS],
        "lowercase": [r for r in rows if any(c.isalpha() for c in r["text"])
                      and not any(c.isupper() for c in r["text"])],
        "digits": [r for r in rows if any(c.isdigit() for c in r["text"])],
    }
    describe = {"short": f"<= {SHORT_WORDS} words", "long": f">= {LONG_WORDS} words",
                "lowercase": "no capitals", "digits": "with digits", "typos_or_oov": "with unknown words"}
    suggests: dict[str, tuple[str, ...]] = {"short": ("augment",), "lowercase": ("augment",),
                                            "long": ("larger-encoder", "augment"),
                                            "digits": ("larger-encoder", "augment")}
    extra: dict[str, dict[str, Any]] = {}
    if vocabulary is not None:
        vocab = vocabulary if isinstance(vocabulary, (set, frozenset)) else frozenset(vocabulary)
        unknown_of = [[w for w in word_tokens(r["text"]) if w not in vocab] for r in rows]
        members["typos_or_oov"] = [r for r, u in zip(rows, unknown_of) if u]
        # what the unknown words of the rows the model gets wrong look like, counted per occurrence
        unknown = Counter(w for r, u in zip(rows, unknown_of) if r["pred"] != r["label"] for w in u)
        typo_like = sum(n for w, n in unknown.items() if _one_edit_from(w, vocab))
        extra["typos_or_oov"] = {"unknown_in_errors": sum(unknown.values()), "typo_like": typo_like,
                                 "most_common": [w for w, _ in unknown.most_common(MAX_EXAMPLES)]}
        typos = bool(unknown) and typo_like / sum(unknown.values()) >= TYPO_SHARE
        suggests["typos_or_oov"] = ("augment",) if typos else ("larger-encoder", "augment")
    findings = []
    for name, rows_in in members.items():
        if len(rows_in) < min_size or len(rows_in) == len(rows):
            continue
        errs = _wrong(rows_in)
        rate = len(errs) / len(rows_in)
        if len(errs) < min_errors or rate < ratio * overall:
            continue
        share = len(errs) / len(wrong)
        findings.append(Finding(
            kind="slice",
            summary=(f"'{name}' inputs ({describe[name]}): error rate {rate:.0%} vs {overall:.0%} overall on "
                     f"{len(rows_in)} rows; {len(errs)} of {len(wrong)} dev errors"),
            severity=_severity(share),
            target={"slice": name},
            evidence={"size": len(rows_in), "errors": len(errs), "error_rate": round(rate, 4),
                      "overall_error_rate": round(overall, 4), **extra.get(name, {}),
                      "example_ids": _example_ids(errs)},
            suggests=suggests[name],
        ))
    return sorted(findings, key=finding_rank)


def diagnose(rows: Sequence[Row], labels: Sequence[str], *, curve: Sequence[Mapping[str, Any]] | None = None,
             dev_accuracy: float | None = None, train_accuracy: float | None = None,
             label_issues: Sequence[Mapping[str, Any]] | None = None, n_train: int = 0,
             vocabulary: Iterable[str] | None = None) -> Diagnosis:
    """Every detector over one model's dev rows (and, when given, its curve and label issues).

    Args:
        rows: per-example dev predictions.
        labels: the task's label set.
        curve: the training curve; with ``train_accuracy`` it feeds :func:`fit_gap` (skipped when
            both are None).
        dev_accuracy: defaults to the accuracy of ``rows``.
        label_issues: flagged training examples for :func:`label_noise` (``n_classes`` is ``len(labels)``).
        n_train: training examples the issues were searched in.
        vocabulary: training word tokens for the ``typos_or_oov`` slice.

    Returns:
        A :class:`Diagnosis`, findings sorted by severity.
    """
    rows = list(rows)
    wrong = _wrong(rows)
    findings = [*confusable_pairs(rows), *class_errors(rows, labels), *slices(rows, vocabulary=vocabulary)]
    if curve is not None or train_accuracy is not None:
        if dev_accuracy is None and rows:
            dev_accuracy = 1.0 - len(wrong) / len(rows)
        findings += fit_gap(curve or [], dev_accuracy=dev_accuracy, train_accuracy=train_accuracy)
    if label_issues:
        findings += label_noise(label_issues, n_train=n_train, n_classes=len(labels) or None)
    return Diagnosis(findings=tuple(findings), n=len(rows), errors=len(wrong))
