"""A second, independent generator of synthetic classification traffic (generator "B").

The main generator (``bench.generate``) plants poison with a small set of fixed surface forms,
and the triage was tuned on it. This module was written separately, from that module's public
interface only, without reading the triage (``adaptloop/diagnose``), so that it works as a
held-out check: other wordings, other attack shapes, other source names and other timing. It is
a drop-in replacement: :func:`generate_stages` has the same signature and returns the same
``Stage`` / ``Log`` objects, with the same trace format and the same poison kind names, so a
report can group by kind and compare the two generators.

What a stage holds (``rates[i]`` of it poisonous, the rest fixable):

- **fixable** (feedback = true label): the pool text untouched, or with emoji, chatty filler,
  chat abbreviations (pls, u, acct), a doubled word, an e-mail style sign-off, messy
  whitespace or a trailing question tag. The intent of the text is never changed.
- **mislabel**: the clean text with a wrong label. Most of it is systematic: a few source
  classes are each consistently relabelled to one fixed target, either the most similar class
  by name ("card_arrival" -> "card_delivery_estimate") or several sources into one shared
  sink class; a confused reviewer sends most of each flip. The rest is a random other label.
- **injection**: the text plus steering text asking for an attacker-chosen label, in eleven
  styles (role-play, chat-template tags, polite requests, other languages, JSON / markup
  payloads, fake authority notes, output forcing, fake completions, notes to the model,
  base64 payloads, fake policy changes), placed before, inside or after the genuine text, with
  the label written raw, with spaces, in upper case, title case or kebab case.
- **negation** (feedback = true label): the request is retracted or was never the writer's
  ("Scratch that — ... — sorted it out myself", "My colleague wanted to ask '...' but I don't").
- **contradiction** (feedback = true label): the text joined with a text of another class
  ("... Also, ..."), or with a pair of mutually exclusive facts ("I got it on Monday. It still
  hasn't come.", an age that does not match the birth year, a day that does not follow another).
- **burst** (attacker label on every log, within minutes): *spray* (one source, several
  different unrelated texts), *swarm* (many sources, near-identical edits of one text) or
  *relay* (the identical text from a few rotating sources). The logs of a burst are spread
  over a short window and interleave with the other traffic.

Sources share one naming scheme ("agent_17", "u:4821", "maria.k@support.example.com",
"crm-sync"); attackers get ids of the same shapes (sometimes a known, compromised one), so the
id alone does not give them away. Pure and deterministic: ``random.Random(seed)`` is the only
source of randomness.
"""

from __future__ import annotations

import datetime as dt
import random
import re
from collections.abc import Sequence
from typing import Any

from adaptloop.bench.generate import Log, Stage
from adaptloop.bench.wordings_b import (
    FIXES,
    SERVICES,
    contradiction,
    injection,
    near_copy,
    negation,
    source_id,
)

__all__ = ["FIXABLE_KINDS", "POISON_KINDS", "POISON_WEIGHTS", "generate_stages"]

# ---------------------------------------------------------------------------- constants
FIXABLE_KINDS = ("clean", "emoji", "chatty", "abbreviation", "repeat_word", "signature", "whitespace",
                 "question_tag")
CLEAN_SHARE = 0.35  # share of fixable logs left untouched; the rest split evenly over the other kinds
POISON_KINDS = ("mislabel", "negation", "contradiction", "injection", "burst")  # generate.py's names
POISON_WEIGHTS = (0.30, 0.12, 0.13, 0.20, 0.25)  # share of each poison kind among the poisonous logs
BURST_SIZE = (3, 8)  # logs per burst
BURST_PATTERNS = ("spray", "swarm", "relay")
BURST_PATTERN_WEIGHTS = (0.35, 0.35, 0.30)
BURST_WINDOW_S = {"spray": (60, 360), "swarm": (45, 240), "relay": (120, 480)}  # a burst's time span
SYSTEMATIC = 0.65  # share of mislabels that follow a fixed class -> class flip
FLIP_SOURCES_PER = 15  # one flipped source class per this many labels (at least two, if there are 3+)
CONFUSED_REVIEWER = 0.7  # share of a systematic flip's logs sent by that flip's own reviewer
N_ATTACKER_LABELS = 3  # attacker target labels; the first is used most
ATTACKER_LABEL_WEIGHTS = (0.6, 0.25, 0.15)
INJECTION_FRESH_SOURCE = 0.5  # share of injections sent from a fresh (attacker) id, else a known one
COMPROMISED = 0.2  # share of burst sources that are known ids rather than fresh ones
START = dt.datetime(2026, 3, 2, 6, 45, 0)
MEAN_GAP_S = 22  # mean seconds between two logs (exponential), plus one
LULL = (0.02, 300, 1800)  # probability of a quiet spell, and its length range in seconds
STAGE_GAP_S = (3600, 4 * 3600)  # quiet time between stages

# ---------------------------------------------------------------------------- the plan
class _Pool:
    """The pool in a seeded order; every item is taken at most once (while any remain)."""

    def __init__(self, pool: Sequence[tuple[str, str]], order: list[int]) -> None:
        self.pool, self.order, self.pos = pool, order, 0
        self.taken: set[int] = set()
        self.by_label: dict[str, list[int]] = {}
        for i in reversed(order):
            self.by_label.setdefault(pool[i][1], []).append(i)  # popped from the end: in order

    def take(self, *, label: str | None = None, not_label: str | None = None) -> int | None:
        if label is not None:
            stack = self.by_label.get(label, [])
            while stack and stack[-1] in self.taken:
                stack.pop()
            i = stack.pop() if stack else None
        else:
            while self.pos < len(self.order) and self.order[self.pos] in self.taken:
                self.pos += 1
            j = self.pos
            while j < len(self.order) and (self.order[j] in self.taken or self.pool[self.order[j]][1] == not_label):
                j += 1
            i = self.order[j] if j < len(self.order) else None
        if i is not None:
            self.taken.add(i)
        return i


def _flips(labels: Sequence[str], avoid: Sequence[str], rng: random.Random) -> dict[str, str]:
    """Systematic flips: about half the source classes go to their most similar class by name,
    the rest all to one shared sink class."""
    if len(labels) < 2:
        return {}
    n = 1 if len(labels) < 3 else max(2, round(len(labels) / FLIP_SOURCES_PER))
    candidates = [x for x in labels if x not in avoid] or list(labels)
    sources = rng.sample(candidates, k=min(n, len(candidates)))

    def words(x: str) -> set[str]:
        return set(re.split(r"[_\W]+", x.lower())) - {""}

    def nearest(a: str) -> str:
        others = [x for x in labels if x != a]
        best = max(len(words(a) & words(x)) / len(words(a) | words(x) or {1}) for x in others)
        return rng.choice([x for x in others if len(words(a) & words(x)) / len(words(a) | words(x) or {1}) == best])

    n_near = (len(sources) + 1) // 2
    flips = {a: nearest(a) for a in sources[:n_near]}
    rest = sources[n_near:]
    if rest:
        sink = rng.choice([x for x in labels if x not in sources] or [x for x in labels if x not in rest])
        flips.update({a: sink for a in rest})
    return flips


def _units(n_poison: int, total: int, rng: random.Random) -> list[tuple[str | None, int]]:
    """Shuffled (fate, logs) units adding up to ``total`` logs, ``n_poison`` of them poisonous, the
    kinds split by ``POISON_WEIGHTS`` (largest remainder, so small stages keep the mix)."""
    raw = [n_poison * w for w in POISON_WEIGHTS]
    counts = [int(x) for x in raw]
    for k in sorted(range(len(raw)), key=lambda k: (counts[k] - raw[k], k))[:n_poison - sum(counts)]:
        counts[k] += 1
    n_burst = counts[-1]
    units: list[tuple[str | None, int]] = []
    while n_burst >= BURST_SIZE[0]:
        k = min(n_burst, rng.randint(*BURST_SIZE))
        left = n_burst - k
        if 0 < left < BURST_SIZE[0]:  # never leave a remainder too small for a burst
            k = n_burst if n_burst <= BURST_SIZE[1] else k - (BURST_SIZE[0] - left)
        units.append(("burst", k))
        n_burst -= k
    counts[0] += n_burst  # too few for a burst: mislabels instead
    for kind, c in zip(POISON_KINDS[:-1], counts[:-1]):
        units += [(kind, 1)] * c
    units += [(None, 1)] * (total - n_poison)
    rng.shuffle(units)
    return units


def _event(events: list[tuple[dt.datetime, int, dict[str, Any], dict[str, Any]]], ts: dt.datetime, text: str,
           feedback: str, source: str, answer: dict[str, Any]) -> None:
    """One log, its id to be given once the stage is in time order."""
    trace = {"id": None, "ts": ts.isoformat(), "model_version": None, "input": text, "output": None,
             "feedback": {"label": feedback, "source": source}, "meta": {"stage": answer["stage"]}}
    events.append((ts, len(events), trace, answer))


# ---------------------------------------------------------------------------- stages
class _Plan:
    """The draws behind the logs: the pool, the attackers and their labels, the systematic flips,
    the sources; one ``random.Random`` for all of it, drawn in a fixed order."""

    def __init__(self, pool: Sequence[tuple[str, str]], labels: Sequence[str], rng: random.Random,
                 detail: bool) -> None:
        self.pool, self.rng, self.detail = pool, rng, detail
        order = list(range(len(pool)))
        rng.shuffle(order)
        self.items = _Pool(pool, order)
        self.labels = list(labels)
        self.attackers = rng.sample(self.labels, k=min(N_ATTACKER_LABELS, len(self.labels)))
        self.flips = _flips(self.labels, self.attackers, rng)
        self.known = sorted({source_id(rng) for _ in range(40)}) + list(SERVICES)
        self.reviewers = {a: rng.choice(self.known) for a in self.flips}  # the confused reviewer behind each flip

    def next_item(self, **kw: Any) -> tuple[str, str]:
        i = self.items.take(**kw)
        if i is None:  # the pool is used up for this kind of draw: reuse one
            pool = self.pool
            ok = [j for j in range(len(pool)) if pool[j][1] != kw.get("not_label")] or list(range(len(pool)))
            i = self.rng.choice(ok)
        return self.pool[i]

    def attacker_for(self, label: str) -> str:
        choices = [(a, w) for a, w in zip(self.attackers, ATTACKER_LABEL_WEIGHTS) if a != label]
        return self.rng.choices([a for a, _ in choices], weights=[w for _, w in choices])[0]

    def known_source(self) -> str:
        return self.rng.choice(self.known) if self.rng.random() < 0.75 else self.rng.choice(SERVICES)

    def fresh_source(self) -> str:
        return self.rng.choice(self.known) if self.rng.random() < COMPROMISED else source_id(self.rng)

    def fresh_sources(self, k: int) -> list[str]:
        out: list[str] = []
        while len(out) < k:
            x = self.fresh_source()
            if x not in out:
                out.append(x)
        return out

    def answer(self, kind: str, poison: bool, label: str, feedback: str, stage: int, style: str) -> dict[str, Any]:
        out = {"id": None, "stage": stage, "poison": poison, "kind": kind, "label": label, "feedback": feedback}
        if self.detail:
            out["style"] = style
        return out

    # -- one unit of a stage's logs, by its fate ----------------------------------------------------
    def fixable(self, events: list, clock: dt.datetime, s: int) -> None:
        rng = self.rng
        text, label = self.next_item()
        kind = "clean" if rng.random() < CLEAN_SHARE else rng.choice(FIXABLE_KINDS[1:])
        new = text if kind == "clean" else FIXES[kind](text, rng)
        if not new.strip():
            new, kind = text, "clean"
        _event(events, clock, new, label, self.known_source(), self.answer(kind, False, label, label, s, kind))

    def mislabel(self, events: list, clock: dt.datetime, s: int) -> None:
        rng, flips = self.rng, self.flips
        src = rng.choice(list(flips)) if flips and rng.random() < SYSTEMATIC else None
        i = self.items.take(label=src) if src is not None else None
        if i is not None:
            text, label = self.pool[i]
            feedback, style = flips[label], "systematic"
            source = self.reviewers[label] if rng.random() < CONFUSED_REVIEWER else self.known_source()
        else:
            text, label = self.next_item()
            feedback, style = rng.choice([x for x in self.labels if x != label]), "random"
            source = self.known_source()
        _event(events, clock, text, feedback, source, self.answer("mislabel", True, label, feedback, s, style))

    def negation(self, events: list, clock: dt.datetime, s: int) -> None:
        text, label = self.next_item()
        _event(events, clock, negation(text, self.rng), label, self.known_source(),
               self.answer("negation", True, label, label, s, "retraction"))

    def contradiction(self, events: list, clock: dt.datetime, s: int) -> None:
        text, label = self.next_item()
        other, _ = self.next_item(not_label=label)
        new, style = contradiction(text, other, self.rng)
        _event(events, clock, new, label, self.known_source(),
               self.answer("contradiction", True, label, label, s, style))

    def injection(self, events: list, clock: dt.datetime, s: int) -> None:
        rng = self.rng
        text, label = self.next_item()
        feedback = self.attacker_for(label)
        new, style = injection(text, rng, feedback)
        source = source_id(rng) if rng.random() < INJECTION_FRESH_SOURCE else self.known_source()
        _event(events, clock, new, feedback, source, self.answer("injection", True, label, feedback, s, style))

    def burst(self, events: list, clock: dt.datetime, s: int, n: int) -> None:
        rng = self.rng
        pattern = rng.choices(BURST_PATTERNS, weights=BURST_PATTERN_WEIGHTS)[0]
        span = rng.randint(*BURST_WINDOW_S[pattern])
        offsets = sorted([0] + [rng.randint(5, span) for _ in range(n - 1)])
        if pattern == "spray":
            feedback = rng.choices(self.attackers, weights=ATTACKER_LABEL_WEIGHTS[:len(self.attackers)])[0]
            source = self.fresh_source()
            for off in offsets:
                text, label = self.next_item(not_label=feedback)
                _event(events, clock + dt.timedelta(seconds=off), text, feedback, source,
                       self.answer("burst", True, label, feedback, s, pattern))
            return
        text, label = self.next_item()
        feedback = self.attacker_for(label)
        if pattern == "swarm":
            sources = self.fresh_sources(n)
            texts = [text] + [near_copy(text, rng) for _ in range(n - 1)]
        else:  # relay
            ring = self.fresh_sources(rng.randint(2, min(4, n)))
            sources, texts = [ring[j % len(ring)] for j in range(n)], [text] * n
        for off, src, t in zip(offsets, sources, texts):
            _event(events, clock + dt.timedelta(seconds=off), t, feedback, src,
                   self.answer("burst", True, label, feedback, s, pattern))


def generate_stages(pool: Sequence[tuple[str, str]], labels: Sequence[str], *, rates: Sequence[float],
                    per_stage: int, prefix: str, seed: int, detail: bool = False) -> list[Stage]:
    """Logs for each stage from ``pool`` ((text, label) pairs the model never saw), disjoint
    across stages while the pool lasts; ``rates[i]`` is the share of poisonous logs in stage
    i + 1. Same interface as ``bench.generate.generate_stages``; ``detail`` adds each log's
    style (the fixable kind, injection style, contradiction shape or burst pattern) to its
    answer as ``"style"``.

    Raises:
        ValueError: the pool is too small for the stages asked for, or there are < 2 labels.
    """
    if len(pool) < per_stage * len(rates):
        raise ValueError(f"{len(pool)} unseen examples cannot fill {len(rates)} stages of {per_stage} logs")
    if len(set(labels)) < 2:
        raise ValueError("poisoned feedback needs at least two labels")
    rng = random.Random(seed)
    plan = _Plan(pool, labels, rng, detail)
    units = {None: plan.fixable, "mislabel": plan.mislabel, "negation": plan.negation,
             "contradiction": plan.contradiction, "injection": plan.injection}
    stages, clock = [], START
    for s, rate in enumerate(rates, start=1):
        if s > 1:
            clock += dt.timedelta(seconds=rng.randint(*STAGE_GAP_S))
        events: list[tuple[dt.datetime, int, dict[str, Any], dict[str, Any]]] = []
        for fate, n in _units(int(round(rate * per_stage)), per_stage, rng):
            gap = rng.randint(LULL[1], LULL[2]) if rng.random() < LULL[0] else int(rng.expovariate(1 / MEAN_GAP_S))
            clock += dt.timedelta(seconds=gap + 1)
            if fate in units:
                units[fate](events, clock, s)
            else:
                plan.burst(events, clock, s, n)
        stage = Stage(s, rate)
        for i, (_, _, trace, a) in enumerate(sorted(events, key=lambda e: (e[0], e[1]))):
            id_ = f"{prefix}-s{s}-{i:04d}"
            trace["id"] = a["id"] = id_
            stage.logs.append(Log(trace, a))
        clock = max(clock, max((e[0] for e in events), default=clock))
        stages.append(stage)
    return stages
