"""The rules that read an input's parts with the reference model: steering and injected text,
two requests in one input, and a request the input takes back. Judged by what the parts do
(which class each reads as, with and without the others), not by how they are worded."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np

from adaptloop.diagnose.parts import (
    ADDITIVE,
    CANCEL_CUE,
    MIN_REST_WORDS,
    added_request,
    names_label,
    parts,
    segments,
    taken_back,
    words,
)
from adaptloop.diagnose.reference import PAIR_ODDS, REFERENCE_ODDS, nearest

if TYPE_CHECKING:
    from adaptloop.diagnose.triage import TraceView

# What poison does, whatever its wording (measured on both AdaptFT traffic generators with
# benchmarks/triage_recall.py): an injected or steering part names the label it wants, or is unlike
# any training text (another language, markup, a payload); the rest of the input then reads as
# another class. Parts of one input that each read confidently as different classes are
# contradictory premises.
STEER_ODDS = PAIR_ODDS  # without its steering part, the input must contradict the label this strongly
STEER_GAIN = 1.0  # ... and this much more strongly than the whole input does
# a steered input's rest keeps this many words: a request of its own, not a greeting or sign-off left over
# when the part naming the label is the request itself ("... routing number. Kind regards, Emma").
# Measured with benchmarks/triage_recall.py: at 3, 26 such false alarms over both generators' 18 stages;
# at 5, precision 0.927 -> 0.946 (a) and 0.930 -> 0.950 (b), recall unchanged on a, 0.870 -> 0.865 on b
STEER_REST_WORDS = 5
SEGMENT_CONF = 0.7  # a part "reads as" a class at this probability, and the other class 12x less likely
# ... or, relative evidence (with 77 or 150 classes a clear part seldom reaches 0.7): the part that reads as
# the feedback label finds the other part's class LABEL_PART_ODDS nats less likely, the other part finds
# the label OTHER_PART_ODDS nats less likely than its own class, and the whole input reads as the label
# DILUTION nats less than the label's part does (the other part pulls the input away from the label
# instead of adding to it, as the sentences of one request do). Measured with benchmarks/triage_recall.py
# (both generators, 9 stages each): of the label-anchored pairs, 4.0 / 3.0 / 0.1 caught 35 two-request
# inputs for 19 false alarms on clean traffic, 5.0 / 4.0 / 0.2 32 for 14, 2.5 / 2.5 / no dilution 63 for 195
# (banking77 messages often tell two things that each read as another class)
LABEL_PART_ODDS = 5.0
REQUEST_MIN_WORDS = 5  # ... each part a request of its own: a greeting or sign-off ("cheers in advance") is not
OTHER_PART_ODDS = 4.0
DILUTION = 0.1
SEGMENT_MIN_WORDS = 3
# what precedes an additive discourse marker ("... Also, ...", ``parts.ADDITIVE``) and what follows it
# read as two classes, each finding the other's class this many nats less likely: two requests. The
# marker is the writer's own word that a second thing follows, so the sides need less evidence than
# LABEL_PART_ODDS / OTHER_PART_ODDS ask of two parts with nothing joining them. Measured with
# benchmarks/triage_recall.py (both generators, seed 0): generator b's two-request recall 0.67 -> 0.78 /
# 0.81 / 0.81 at 2.5 / 2.0 / 1.5, precision 0.937 -> 0.936 at each; generator a unchanged; on seed 1,
# which the value was not chosen on, b recall 0.874 -> 0.905 with the cue changes of ``parts``
ADDED_ODDS = 2.0


def steering(views: Sequence[TraceView], labels: Sequence[str], ref: Callable[[np.ndarray], np.ndarray],
             embed: Callable[[list[str]], np.ndarray], train_x: np.ndarray, drift_at: float,
             full_odds: np.ndarray, x: np.ndarray | None = None) -> dict[str, tuple[str, str]]:
    """Trace id → (kind, reason) for inputs whose parts steer, contradict or take the request back,
    judged by what the parts do, not how they are worded:

    - **injection** (a part names the feedback label) or **steering** (a part is unlike any
      training text: another language, markup, an encoded payload; ``SEGMENT_MIN_WORDS`` words or
      more), when the input without such parts reads as another class: log(p(top) / p(label))
      >= ``STEER_ODDS`` for the reference model of the training data, ``STEER_GAIN`` more than for
      the whole input (the part carried the label: a greeting whose removal tips a borderline
      input is not steering);
    - **contradiction**: two parts of one input (sentences, or the sides of an "and") each read as
      a different class: each finds the other's class ``exp(SEGMENT_ODDS)`` times less likely than
      its own (relative evidence: with 77 or 150 classes a clear part seldom reaches an absolute
      probability);
    - **contradiction** too: what precedes and what follows an additive marker ("... Also, ...")
      read as two classes, one of them the label, at ``ADDED_ODDS`` each way;
    - **negation**: a part retracts the request or says it no longer stands (``CANCEL_CUE``, from
      the cue to the end of its segment) and is not what carries the label: the rest of the input
      reads as the label more than it does.
    """
    index = {lab: i for i, lab in enumerate(labels)}
    row = {v.id: i for i, v in enumerate(views)}
    todo = [(v, parts(v.text)) for v in views if v.feedback_label in index]
    todo = [(v, segs) for v, segs in todo if len(segs) >= 2 or CANCEL_CUE.search(v.text) or ADDITIVE.search(v.text)]
    if not todo:
        return {}
    flat = sorted({sg for _, segs in todo for sg in segs})
    at = {sg: i for i, sg in enumerate(flat)}
    sx = embed(flat)
    sp = ref(sx)
    _, s_near = nearest(sx, train_x) if len(train_x) else (None, np.ones(len(flat)))
    full_p = ref(x if x is not None else embed([v.text for v in views]))  # x: the views' own embeddings
    rests: dict[str, tuple[str, str]] = {}  # id → (the input without its odd parts, the first odd part)
    took_back: dict[str, tuple[str, str, str]] = {}  # id → (the input without its cue parts, the part, the cue)
    second: dict[str, tuple[str, str]] = {}  # id → (the input before an additive marker, from it on)
    out: dict[str, tuple[str, str]] = {}
    for v, segs in todo:
        whole = segments(v.text)
        odd = [sg for sg in whole if names_label(sg, v.feedback_label)
               or (s_near[at[sg]] < drift_at and len(words(sg)) >= SEGMENT_MIN_WORDS)]
        rest = " ".join(sg for sg in whole if sg not in odd)
        if odd and len(words(rest)) >= STEER_REST_WORDS:
            rests[v.id] = (rest, odd[0])
        kept, cued = taken_back(whole)
        if cued and len(words(kept)) >= MIN_REST_WORDS:
            took_back[v.id] = (kept, *cued[0])
        added = added_request(v.text)
        if added:
            second[v.id] = added
        read = [(sg, int(sp[at[sg]].argmax())) for sg in whole
                if sg not in odd and len(words(sg)) >= SEGMENT_MIN_WORDS and sp[at[sg]].max() >= SEGMENT_CONF]
        for i, (a, ka) in enumerate(read):
            hit = next(((b, kb) for b, kb in read[i + 1:] if kb != ka
                        and np.log(sp[at[a]][ka] / sp[at[a]][kb]) >= REFERENCE_ODDS
                        and np.log(sp[at[b]][kb] / sp[at[b]][ka]) >= REFERENCE_ODDS), None)
            if hit:
                out[v.id] = ("contradiction", f"parts of the input read as different classes: '{a[:60]}' as "
                             f"'{labels[ka]}' (p={sp[at[a]][ka]:.2f}), '{hit[0][:60]}' as '{labels[hit[1]]}' "
                             f"(p={sp[at[hit[0]]][hit[1]]:.2f})")
                break
        if v.id not in out:
            pair = _pulls_away(v, segs, odd, sp, at, index, full_p[row[v.id]])
            if pair:
                a, b, kb = pair
                out[v.id] = ("contradiction", f"parts of the input read as different classes: '{a[:60]}' as "
                             f"'{v.feedback_label}' (p={sp[at[a]][index[v.feedback_label]]:.2f}), '{b[:60]}' as "
                             f"'{labels[kb]}' (p={sp[at[b]][kb]:.2f}), and the whole input less as "
                             f"'{v.feedback_label}' than the first part alone")
    by_id = {v.id: v for v, _ in todo}
    for i, (pa, pb) in _read_pairs(ref, embed, {i: ab for i, ab in second.items() if i not in out}).items():
        lab = index[by_id[i].feedback_label]
        ka, kb = int(pa.argmax()), int(pb.argmax())
        if (ka != kb and lab in (ka, kb) and np.log(pa[ka] / pa[kb]) >= ADDED_ODDS
                and np.log(pb[kb] / pb[ka]) >= ADDED_ODDS):
            a, b = second[i]
            out[i] = ("contradiction", f"two requests: '{a[:60]}' reads as '{labels[ka]}' (p={pa[ka]:.2f}), "
                      f"'{b[:60]}', which adds one, as '{labels[kb]}' (p={pb[kb]:.2f})")
    for i, (p, q) in _read_pairs(ref, embed, {i: t[:2] for i, t in took_back.items() if i not in out}).items():
        lab = index[by_id[i].feedback_label]
        part, cue = took_back[i][1], took_back[i][2]
        if q[lab] < p[lab]:
            out[i] = ("negation", f"the part '{part[:60]}' takes the request back ('{cue}') and is not what "
                      f"carries the label: the rest reads as '{by_id[i].feedback_label}' (p={p[lab]:.2f}, "
                      f"the part p={q[lab]:.2f}); the label no longer describes the input")
    if rests:
        ids = list(rests)
        rp = ref(embed([rests[i][0] for i in ids]))
        for i, p in zip(ids, rp):
            v = by_id[i]
            lab = index[v.feedback_label]
            odds = float(np.log(p.max() / max(p[lab], 1e-12)))
            gain = odds - (float(full_odds[row[i]]) if not np.isnan(full_odds[row[i]]) else 0.0)
            if int(p.argmax()) != lab and odds >= STEER_ODDS and gain >= STEER_GAIN and i not in out:
                part = rests[i][1]
                named = names_label(part, v.feedback_label)
                why = "names the feedback label" if named else "is unlike any training text"
                out[i] = ("injection" if named else "steering", f"the part '{part[:60]}' {why}; without it the "
                          "input reads as "
                          f"'{labels[int(p.argmax())]}' ('{v.feedback_label}' {np.exp(odds):.0f}x less likely)")
    return out


def _read_pairs(ref: Callable[[np.ndarray], np.ndarray], embed: Callable[[list[str]], np.ndarray],
                pairs: dict[str, tuple[str, str]]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Trace id → the reference model's reading of its two texts, embedded in one pass."""
    if not pairs:
        return {}
    p = ref(embed([t for ab in pairs.values() for t in ab]))
    return {i: (p[2 * n], p[2 * n + 1]) for n, i in enumerate(pairs)}


def _pulls_away(v: TraceView, segs: Sequence[str], odd: Sequence[str], sp: np.ndarray, at: dict[str, int],
                index: dict[str, int], whole: np.ndarray) -> tuple[str, str, int] | None:
    """(the part that reads as the label, the part that reads as another class, that class) when two
    parts of the input make two requests (``LABEL_PART_ODDS``, ``OTHER_PART_ODDS``, ``DILUTION``)."""
    lab = index[v.feedback_label]
    ok = [sg for sg in segs if sg not in odd and len(words(sg)) >= REQUEST_MIN_WORDS]
    for a in ok:
        pa = sp[at[a]]
        if int(pa.argmax()) != lab or np.log(whole[lab] / pa[lab]) > -DILUTION:
            continue
        for b in ok:
            pb, kb = sp[at[b]], int(sp[at[b]].argmax())
            if (kb != lab and a not in b and b not in a and np.log(pa[lab] / pa[kb]) >= LABEL_PART_ODDS
                    and np.log(pb[kb] / pb[lab]) >= OTHER_PART_ODDS):
                return a, b, kb
    return None
