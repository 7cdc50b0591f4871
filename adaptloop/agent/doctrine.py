"""The rule-based doctrine policy: what to try next, as data.

Two tables are the whole doctrine:

- ``REGIMES``: the starting rules. A drop rolls back (the next expansion starts from the
  best node); below 0.70 fix the data first; below 0.90 tune with the data fixed; near
  the ceiling make surgical changes per failure pattern. Each regime orders the
  intervention families.
- ``search.interventions.CATALOGUE``: every intervention, its family and hypothesis.

``DoctrinePolicy.propose`` turns the graph and the latest diagnosis into one proposal:
UCT picks the node to expand, the node's findings suggest interventions, the regime ranks
their families, and what earlier runs learned (mean dev gain of each intervention on this
task family, from the ``outcomes`` table) reorders them. Graph-level moves (ensemble of
the best branches, merge of their data recipes, a recovery move after k rounds without
gain, refit at the end) compete in the same ranking. Nothing else decides.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from adaptloop.agent.policy import WAIT, Proposal, SearchState, Stop
from adaptloop.agent.refit import refit_pipeline
from adaptloop.data import recipes
from adaptloop.search import graph
from adaptloop.search import interventions as iv
from adaptloop.search.graph import GraphNode
from adaptloop.train.packaged import base_size
from adaptloop.types import Finding, Pipeline


def _noisy_pair(findings: Sequence[Finding]) -> bool:
    """A confusable pair that is also a label-noise pair: the confusion is (partly) in the labels."""
    noisy = {tuple(f.target["labels"]) for f in findings if f.kind == "label_noise" and "labels" in f.target}
    return any(f.kind == "confusable_pair" and tuple(f.target.get("labels", ())) in noisy for f in findings)


def _over_predicting(findings: Sequence[Finding]) -> bool:
    """Extraction: spurious entities, or a type over-predicted, weigh on the errors."""
    def weighs(f: Finding) -> bool:
        over = f.kind == "over_prediction" and "negatives" in f.suggests  # not a class's
        return (f.kind == "spurious_entities" or over) and f.severity >= 0.25

    return any(weighs(f) for f in findings)


@dataclass(frozen=True)
class Regime:
    name: str
    when: str  # for people
    below: float  # applies to a node scoring below this (checked top to bottom)
    prefer: tuple[str, ...]  # intervention families, most preferred first
    says: str
    match: Callable[[Sequence[Finding]], bool] | None = None  # on the node's findings, before the score
    focus: tuple[str, ...] = ()  # finding kinds whose suggestions go first within a family


REGIMES: tuple[Regime, ...] = (
    Regime("drop", "the latest node scored below its parent", math.inf, (),
           "roll back: never expand the dropped node; expand the best node next"),
    Regime("noisy-labels", "a confusable pair is also a label-noise pair", math.inf,
           ("data", "surgical", "model", "hparams"),
           "the confusion is in the labels: fix the data before the model", match=_noisy_pair,
           focus=("label_noise",)),
    Regime("precision-first", "extraction: spurious or over-predicted entities carry ≥ 25% of the errors",
           math.inf, ("data", "surgical", "model", "hparams"),
           "spurious entities: curate the data (negatives, cleaning) and threshold before changing the model",
           match=_over_predicting, focus=("over_prediction", "spurious_entities")),
    Regime("low", "score < 0.70", 0.70, ("data", "model", "hparams", "surgical"),
           "low score: fix the data first"),
    Regime("mid", "0.70 ≤ score < 0.90", 0.90, ("model", "hparams", "data", "surgical"),
           "mid score: tune the model with the data fixed"),
    Regime("near-ceiling", "score ≥ 0.90", math.inf, ("surgical", "model", "hparams", "data"),
           "near the ceiling: surgical changes per failure pattern"),
)

STANDING = ("finetune", "larger-encoder", "lora", "clean", "augment", "threshold", "lexical")
"""Interventions considered for every node even without a finding that suggests them."""
STANDING_EXTRACTION = ("span-threshold", "negatives", "clean", "larger-encoder", "frozen-tagger", "diversify", "lora")
STANDING_PENALTY = {"lora": -0.5}  # measured: LoRA trailed full fine-tuning on banking77
# measured: a LoRA tagger reached dev F1 0.57 where the full tagger reached 0.83 (presidio_pii)
EXTRACTION_PENALTY = {"lora": -1.5}
# The opening: after the baseline, the moves of the best fixed recipe measured for the family, from the
# baseline, on the workers side by side, then their ensemble; the doctrine's search follows. Measured
# (benchmarks/coldstart.py --dataset banking77, coldstart-banking77-budgets.json): a MiniLM fine-tune
# averaged with frozen mpnet + LR scored test 0.9468 in 489 s, the 20-minute search without an opening
# 0.9377 (its fine-tunes cut for trailing the frozen mpnet node, then not in its ensemble). An opening
# member's fine-tune is not cut for trailing: its plan is sized to the budget, its dev curve rises late,
# and what it adds is its errors being unlike the other members'. Its frozen member is held to the rule
# (an embedding pass costs what the data costs: frozen mpnet ran 67% of a 10-minute snips budget to a
# dev score below the fine-tune's); one cut keeps a head on what it embedded and is still a member of
# the ensemble that closes the opening.
# A word and character n-gram model (TF-IDF + LR, seconds to fit) opens first: measured on banking77, frozen
# MiniLM + LR averaged with it scored test 0.939 against 0.928 alone, and with frozen mpnet + LR 0.945
# (`benchmarks/lexical_members.py`); a short budget, where neither a fine-tune nor mpnet fits, still ends
# on an ensemble.
# extraction: the tagger on the ladder's next rung (the cased e5) and a head on frozen mpnet's layers beside
# the baseline, then their ensemble. Measured on wnut17 (`benchmarks/frozen_tagger.py`): the frozen-mpnet
# tagger alone scored test F1 0.423 in 182 s, the run's MiniLM taggers 0.360-0.368 in 300-390 s each.
# A baseline that is itself trained (the tagger: 400-530 s of a 20-minute wnut17 budget) does not hold the
# opening back: its moves need the baseline's pipeline, not its model, so they start on the other workers
# while it trains (each trial has its share of the cores: the second core idled through the baseline
# otherwise); the ensemble that closes the opening waits for it.
OPENING = {"classification": ("lexical", "finetune", "larger-encoder"),
           "extraction": ("larger-encoder", "frozen-tagger")}
MAX_MEMBERS = 4  # an ensemble's members: the best node of each kind (strategy, encoder), at most this many
MAX_TAGGER_MEMBERS = 3  # a tagger ensemble's members (each one more pass of a tagger at serving time)
TAGGER_FLOOR = 0.5  # share of the best tagger's dev F1 a candidate member must reach (tagger_members)
SEVERITY_WEIGHT = 2.0
ENCODER_TEXTS_PER_S = 150.0  # a fine-tuned default encoder scoring texts on one worker (measured 150–230/s)
SPEED_TEXTS = 64  # texts a finished node scores uncached to measure its speed (``executor.NODE_SPEED_TEXTS``)
LEARNED_SCALE = 100.0  # a mean gain of +0.01 over past runs is worth one family rank
SMALL_DATA_PER_CLASS = 50
C0 = 0.5  # UCT exploration at the start of the budget


def regime_of(score: float, findings: Sequence[Finding] = ()) -> Regime:
    """The first regime (after 'drop', which the search applies itself) that matches a node."""
    for r in REGIMES[1:]:
        if (r.match(findings) if r.match else score < r.below):
            return r
    raise AssertionError("the last regime matches every score")


def cost(p: Pipeline, s: SearchState) -> float:
    """Seconds a pipeline needs before it can return anything useful (a lower bound)."""
    n = s.n_train * (2 if "augment" in recipes.parse(p.recipe) else 1) if p.strategy != "ensemble" else 0
    if p.strategy == "frozen":
        if p.encoder == s.encoder:
            return 15.0 + (n / 250 * s.slowdown if "augment" in recipes.parse(p.recipe) else 0)
        return 1.15 * n / s.embed_rate_large * s.slowdown + 30
    if p.strategy == "lexical":  # measured: 15 s for 9,000 texts and 77 classes, 4 s for 12,400 and 7
        return 5.0 + n * s.n_classes / 50_000 * s.slowdown
    if p.strategy == "frozen-tagger":  # one forward pass over train and dev, then a head (seconds an epoch);
        heads = [n.seconds - n.chosen["feature_seconds"] for n in s.nodes  # once one ran, the features are stored
                 if n.status == "done" and n.strategy == "frozen-tagger" and "feature_seconds" in n.chosen
                 and n.pipeline.get("encoder") == p.encoder]
        return min(heads) + 5 if heads else 1.1 * s.n_train / s.embed_rate_features * s.slowdown + 30
    if p.strategy in iv.TAGGERS:
        n = s.n_train * (2 if "diversify" in recipes.parse(p.recipe) else 1)
        size = 1.0 if p.encoder == s.encoder else s.larger_slowdown
        return n / 16 * s.tagger_sec_per_step * size * s.slowdown + 30  # at least one epoch
    if p.strategy in iv.TRAINED:
        return 0.5 * n / 32 * s.sec_per_step * s.slowdown + 60  # at least half an epoch
    if p.strategy == "refit":
        return (s.refit_frozen_seconds if p.hparams.get("keep_trained") else s.refit_seconds) or math.inf
    if p.strategy == "ensemble":  # frozen and n-gram members score dev from cache or in a blink; trained ones
        # run their network over dev once (the node's score reads the probabilities its fit computed)
        strategy = {n.name: n.strategy for n in s.nodes}
        trained = sum(ENCODER_TEXTS_PER_S / s.embed_rate_features if strategy.get(m) == "frozen-tagger"
                      else float(strategy.get(m) in iv.TRAINED) for m in p.hparams.get("member_names", ()))
        return 5.0 + trained * s.n_train / 9 / ENCODER_TEXTS_PER_S * s.slowdown
    return 30.0  # threshold: scoring dev with a trained model, then tuning


def ensemble_members(pool: Sequence[GraphNode]) -> list[GraphNode]:
    """The best node of each kind of model (strategy, encoder), best first, at most ``MAX_MEMBERS``:
    models trained differently err differently; two of one kind mostly repeat each other."""
    by_kind: dict[tuple[str, Any], GraphNode] = {}
    for n in sorted(pool, key=lambda n: (-n.score, n.order)):
        by_kind.setdefault((n.strategy, n.pipeline.get("encoder")), n)
    return list(by_kind.values())[:MAX_MEMBERS]


def tagger_members(pool: Sequence[GraphNode]) -> list[GraphNode]:
    """The candidate members of a tagger ensemble: the best tagger of each encoder, best first, at most
    ``MAX_TAGGER_MEMBERS``, each at least ``TAGGER_FLOOR`` of the best one's dev F1. Their tag probabilities
    are averaged with equal weights (``train.ensemble.TaggerEnsemble``): taggers on different encoders (an
    uncased and a cased tokenizer) err differently, two on one encoder mostly repeat each other (presidio_pii
    test F1: the MiniLM `negatives` tagger 0.686, with an e5 tagger 0.763, with another MiniLM tagger 0.686).
    Of three, the ensemble keeps those that raise its dev F1 (``train.ensemble.select_taggers``), so the
    floor only spares the dev pass of a tagger that never converged (mpnet taggers at dev 0.42 and 0.32
    against 0.85); one dev merely ranks lower alone may be what the others miss (wnut17, official
    validation split as dev: the e5 tagger at 77% of the best tagger, under the 85% floor this had, was in
    the dev-best subset, test 0.468 against the 0.441 of the pair the floor allowed)."""
    by_encoder: dict[Any, GraphNode] = {}
    for n in sorted((n for n in pool if n.strategy in (*iv.TAGGERS, "frozen-tagger")),
                    key=lambda n: (-n.score, n.order)):
        by_encoder.setdefault(n.pipeline.get("encoder"), n)
    ranked = list(by_encoder.values())
    return [n for n in ranked if n.score >= TAGGER_FLOOR * ranked[0].score][:MAX_TAGGER_MEMBERS] if ranked else []


def servable(members: Sequence[GraphNode], s: SearchState) -> list[GraphNode]:
    """Best first, each member whose addition keeps the ensemble at ``min_throughput`` (its members run one
    after another): measured at 5 minutes on banking77, a fine-tune + frozen MiniLM + n-gram ensemble would
    have needed a student there was no time for; the fine-tune + n-gram pair serves as fast as the fine-tune."""
    out: list[GraphNode] = []
    for m in members:
        p = Pipeline("raw", "ensemble", s.encoder, {"member_names": [n.name for n in [*out, m]]})
        if not s.too_slow(p, alone=True):
            out.append(m)
    return out


def _key(p: Pipeline) -> str:
    return json.dumps(p.to_dict(), sort_keys=True, default=str)


def _tried(s: SearchState) -> set[str]:
    """Pipelines not to propose again: finished, failed or running (an interrupted one may rerun)."""
    return {_key(Pipeline.from_dict(n.pipeline)) for n in s.nodes if n.status != "interrupted"}


def _unique(name: str, nodes: tuple[GraphNode, ...]) -> str:
    return graph.unique_name(name, {n.name for n in nodes})


class DoctrinePolicy:
    """Ranks candidate interventions by regime, finding severity and learned gain."""

    name = "doctrine"

    def __init__(self, plateau_rounds: int = 2, min_gain: float = 0.001, c0: float = C0) -> None:
        self.plateau_rounds = plateau_rounds
        self.min_gain = min_gain
        self.c0 = c0

    # -- ranking --------------------------------------------------------------------------
    def learned_bonus(self, move: str, s: SearchState) -> float:
        n, gain, _ = s.learned.get(move, (0, 0.0, 0.0))
        return max(-1.0, min(1.0, gain * n / (n + 1) * LEARNED_SCALE))

    def priority(self, move: str, family: str, regime: Regime, severity: float, s: SearchState) -> float:
        rank = regime.prefer.index(family) if family in regime.prefer else len(regime.prefer)
        penalty = (EXTRACTION_PENALTY if s.family == "extraction" else STANDING_PENALTY).get(move, 0.0)
        return len(regime.prefer) - rank + SEVERITY_WEIGHT * severity + self.learned_bonus(move, s) + penalty

    def candidates(self, node: GraphNode, s: SearchState, kind: str = "expand") -> list[Proposal]:
        """Every applicable, affordable, untried intervention on ``node``."""
        regime = regime_of(node.score, node.findings)
        ctx = iv.Context(ladder=s.ladder, oos_label=s.oos_label, abstain_share=s.abstain_share,
                         parent_model=node.model_path, parent_name=node.name, findings=node.findings,
                         feature_encoder=s.feature_encoder)
        pairs: list[tuple[str, dict[str, Any] | None]] = []
        for f in sorted(node.findings, key=lambda f: -f.severity):
            pairs += [(m, f) for m in f.suggests if m in iv.BY_NAME]
        standing = [m for m in (STANDING_EXTRACTION if s.family == "extraction" else STANDING)
                    if (m != "clean" or s.n_label_issues > 0)
                    and (m != "augment" or s.n_train < SMALL_DATA_PER_CLASS * s.n_classes)]
        pairs += [(m, None) for m in standing]
        tried = _tried(s)
        out: dict[str, Proposal] = {}
        for move, f in pairs:
            if s.family not in iv.BY_NAME[move].tasks:
                continue
            child = iv.apply(move, Pipeline.from_dict(node.pipeline), f, ctx)
            if child is None or _key(child) in tried or cost(child, s) + s.student_cost(child) > s.seconds_left:
                continue
            if child.strategy in iv.TRAINED and s.trainable is not None and child.encoder not in s.trainable:
                continue  # e.g. a 110M encoder on a CPU: a fraction of an epoch in the budget
            if child.encoder != s.encoder and child.strategy in iv.TRAINED and any(
                    n.pipeline.get("encoder") == child.encoder and (n.status == "running" or n.chosen.get("trailing"))
                    for n in s.nodes):
                # one large trained model at a time (measured: two mpnet taggers side by side each got 0.15
                # epoch of a 45-minute WNUT run), and none again once one was cut for trailing the best node
                # (measured: presidio_pii at 20m ran a second mpnet tagger, cut again at dev 0.32 after 0.42)
                continue
            fam = iv.BY_NAME[move].family
            pr = self.priority(move, fam, regime, f.severity if f else 0.0, s)
            pr += 1.0 if f and f.kind in regime.focus else 0.0
            key = _key(child)
            if key in out and out[key].priority >= pr:
                continue
            why = iv.hypothesis(move, f)
            out[key] = Proposal(
                name=move, pipeline=child, parent=node.name, move=move, kind=kind,
                intervention=f"{move}{iv.describe_target(f)}", finding=f.kind if f else None,
                reason=f"{regime.name} regime ({regime.says}), {fam} move: {why}", priority=pr,
                detail={"regime": regime.name, "family": fam})
        return sorted(out.values(), key=lambda p: -p.priority)

    def graph_moves(self, s: SearchState) -> list[Proposal]:
        """Moves over the whole graph: ensemble of the best branches, merge of their recipes."""
        out = []
        b = graph.best(s.nodes)
        if b is None:
            return out
        regime = regime_of(b.score, b.findings)
        tried = _tried(s)
        pool = [n for n in graph.scored(s.nodes) if n.strategy not in graph.UNEXPANDABLE and n.model_path]
        members = ensemble_members(pool) if s.family != "extraction" else tagger_members(pool)
        full = self._ensemble(members, s, tried)
        # too slow to serve: first the members that serve fast enough together (seconds), for when the student
        # of the full ensemble is refused or has no time (then what serves is the best model that meets the
        # limit). Full first, the 10-minute banking77 run trained it with 21 s left, its student was refused
        # and a lone fine-tune served (test 0.9354; coldstart-banking77-servable.json)
        fast = servable(members, s)
        for ens in [self._ensemble(fast, s, tried) if fast != members else None, full]:
            if ens is None:
                continue
            p, chosen = ens
            out.append(Proposal(
                name="ensemble", pipeline=p, parent=chosen[0].name, move="ensemble", kind="ensemble",
                intervention="ensemble of the best branches",
                reason="models trained differently err differently: average the probabilities of "
                       f"{', '.join(m.name for m in chosen)} with weights picked on dev",
                priority=self.priority("ensemble", "model", regime, 0.25, s),
                detail={"family": "model"}))
        done_of = {n.pipeline.get("hparams", {}).get("of_name") for n in s.nodes if n.strategy == "threshold"}
        if s.oos_label and b.strategy not in ("threshold", "refit") and b.model_path and b.name not in done_of:
            child = iv.apply("threshold", Pipeline.from_dict(b.pipeline), None,
                             iv.Context(oos_label=s.oos_label, abstain_share=s.abstain_share,
                                        parent_model=b.model_path, parent_name=b.name, findings=b.findings))
            if child is not None and _key(child) not in tried:
                out.append(Proposal(
                    name="threshold", pipeline=child, parent=b.name, move="threshold", kind="expand",
                    intervention=f"abstention to '{s.oos_label}' on the best node",
                    reason=f"out-of-scope traffic: tune on dev when the best node '{b.name}' ({b.score:.3f}) "
                           f"should answer '{s.oos_label}' instead of its top class",
                    priority=self.priority("threshold", "surgical", regime, 0.25, s),
                    detail={"family": "surgical"}))
        pair = graph.merge_candidates(s.nodes)
        if pair:
            a, c = pair
            child = Pipeline.from_dict({**a.pipeline, "recipe": recipes.merge(a.pipeline["recipe"],
                                                                              c.pipeline["recipe"])})
            if _key(child) not in tried and cost(child, s) < s.seconds_left:
                out.append(Proposal(
                    name="merge", pipeline=child, parent=a.name, move="merge", kind="merge",
                    intervention=f"merge recipes {a.pipeline['recipe']} + {c.pipeline['recipe']}",
                    reason=f"both '{a.name}' ({a.score:.3f}) and '{c.name}' ({c.score:.3f}) gained with "
                           "different data recipes: combine them on the better branch's pipeline",
                    priority=self.priority("merge", "data", regime, 0.25, s), detail={"family": "data"}))
        return out

    @staticmethod
    def _ensemble(members: list[GraphNode], s: SearchState,
                  tried: set[str]) -> tuple[Pipeline, list[GraphNode]] | None:
        """The ensemble of ``members`` when it is new and affordable (with its student's time when it would
        serve too slowly), else None."""
        if len(members) < 2:
            return None
        p = Pipeline(recipe="raw", strategy="ensemble", encoder=s.encoder, seed=s.seed,
                     hparams={"members": [m.model_path for m in members], "member_names": [m.name for m in members]})
        # frozen members score dev from the vectors their fits cached; the node's speed check embeds
        # SPEED_TEXTS afresh with each larger encoder
        ens_cost = cost(p, s) + sum(SPEED_TEXTS / s.embed_rate_large * s.slowdown
                                    for m in members if m.pipeline.get("encoder") != s.encoder)
        if _key(p) in tried or ens_cost + s.student_cost(p) >= s.seconds_left:
            return None
        return p, members

    @staticmethod
    def _tagger_hparams(s: SearchState) -> dict[str, Any]:
        """Tagger defaults; a default encoder (``[train] encoder``) known to be base-size gets the base-size lr."""
        hp = dict(iv.TAGGER_DEFAULTS)
        if base_size(s.encoder):
            hp["lr"] = iv.LARGER_TAGGER_LR
        return hp

    def _baseline(self, s: SearchState) -> Proposal:
        """The first node: the cheapest strong pipeline for the family."""
        if s.family == "extraction":
            return Proposal(name="baseline", parent=None, move="baseline", kind="baseline",
                            pipeline=Pipeline(recipe="raw", strategy="tagger", encoder=s.encoder, seed=s.seed,
                                              hparams=self._tagger_hparams(s)),
                            intervention="start",
                            reason="token classification on the default encoder, fine-tuned on deduplicated "
                                   "data (a frozen encoder's tagger is a member beside it, not a stand-in); its "
                                   "errors are the first diagnosis")
        return Proposal(name="baseline", parent=None, move="baseline", kind="baseline",
                        pipeline=Pipeline(recipe="raw", strategy="frozen", encoder=s.encoder, seed=s.seed),
                        intervention="start",
                        reason="cheapest strong baseline: frozen encoder embeddings + logistic regression "
                               "on deduplicated data; its errors are the first diagnosis")

    # -- the decision ---------------------------------------------------------------------
    def propose(self, s: SearchState) -> Proposal | Stop | None:
        """The next trial, a ``Stop`` with its reason, or ``WAIT`` (None) for a running trial."""
        finished = graph.scored(s.nodes)
        running = s.running()
        if not finished:
            if running:  # a trained baseline takes minutes: the opening's moves need its pipeline, not its model
                return self._opening(s) or WAIT
            failed = [n for n in s.nodes if n.status == "failed"]
            if failed and not (all(n.crashed for n in failed) and len(failed) < 2):
                return Stop("the baseline pipeline failed; see the node's error")
            first = self._baseline(s)
            if failed:  # the process running it died, not the pipeline: once more
                return Proposal(**{**first.__dict__, "name": _unique(first.name, s.nodes),
                                   "reason": f"the worker running '{failed[0].name}' died (not the pipeline): "
                                             f"trying it once more; {first.reason}"})
            return first
        b = graph.best(s.nodes)
        assert b is not None
        if s.target is not None and b.score >= s.target:
            return Stop(f"target reached: '{b.name}' scores {b.score:.4f} ≥ {s.target}")
        if s.seconds_left <= 0:
            return Stop("budget spent")
        stale = graph.rounds_without_gain(s.nodes, self.min_gain)
        recovering = any(n.intervention.startswith("recovery") for n in s.running())
        opening = self._opening(s)
        if opening is not None:
            return opening
        fast = self._servable_ensemble(s)
        if fast is not None:
            return fast
        if stale >= self.plateau_rounds and not recovering:
            pick = self._recovery(s, b, stale)
        else:  # while a recovery runs, the other workers keep expanding
            pick = self._expand(s)
        refit = self._refit(s, b)
        if isinstance(pick, Stop) or pick is None:
            if running:
                return WAIT
            final = [m for m in self.graph_moves(s) if m.kind == "ensemble"]
            if final:  # consolidate before stopping: members finished since the last ensemble
                top = final[0]
                return Proposal(**{**top.__dict__, "name": _unique(top.name, s.nodes),
                                   "reason": f"before stopping ({pick.reason if pick else 'nothing else fits'}): "
                                             f"{top.reason}"})
        if isinstance(pick, Stop):
            return refit or pick
        if refit is not None and not running and pick is None:
            return refit  # the last move: nothing else is affordable, a refit is
        if pick is None:
            return WAIT if running else Stop(
                f"no affordable intervention left with {s.seconds_left:.0f}s "
                f"(best '{b.name}' {b.score:.4f})")
        return Proposal(**{**pick.__dict__, "name": _unique(pick.name, s.nodes)})

    def _opening(self, s: SearchState) -> Proposal | None:
        """The next move of the family's opening (``OPENING``) that fits the budget, then the
        ensemble of what it trained; None once it is played (or cannot be)."""
        moves = OPENING.get(s.family, ()) if s.opening else ()
        root = next((n for n in graph.scored(s.nodes) if n.parent is None and n.strategy not in graph.UNEXPANDABLE),
                    None)
        if root is None:  # a baseline still training starts the opening beside it (nothing else needs a worker)
            root = next((n for n in s.running() if n.parent is None and n.strategy in iv.TRAINED), None)
        if not moves or root is None:
            return None
        played = [n for n in s.nodes if n.parent == root.name and n.move in moves]
        todo = [p for p in self.candidates(root, s) if p.move in moves and p.move not in {n.move for n in played}]
        if todo and not any(n.intervention.startswith("recovery") for n in s.nodes):
            top = min(todo, key=lambda p: moves.index(p.move))  # in the opening's order: the cheapest first
            why = top.reason if root.status == "done" else (  # no dev score yet: no regime to name
                f"started while '{root.name}' trains (the move needs its pipeline, not its model), "
                f"{top.detail['family']} move: {iv.hypothesis(top.move, None)}")
            return Proposal(**{**top.__dict__, "name": _unique(top.name, s.nodes), "kind": "opening",
                               "reason": f"opening ({' + '.join(moves)} from '{root.name}', then their ensemble: the "
                                         f"best fixed recipe measured for {s.family}); {why}"})
        done = [n for n in played if n.status == "done"]
        if root.status != "done":
            return None  # the ensemble that closes the opening waits for the baseline, a member of it
        ensembled = [set(n.pipeline.get("hparams", {}).get("member_names", ())) for n in s.nodes
                     if n.strategy == "ensemble" and n.status != "failed"]
        if not done or any(n.status == "running" for n in played) or any(
                {n.name for n in done} <= names for names in ensembled):
            return None
        ens = [m for m in self.graph_moves(s) if m.kind == "ensemble"]
        return Proposal(**{**ens[0].__dict__, "name": _unique(ens[0].name, s.nodes),
                           "reason": f"opening, last move: {ens[0].reason}"}) if ens else None

    def _servable_ensemble(self, s: SearchState) -> Proposal | None:
        """Once an ensemble too slow for ``[serve] min_throughput`` is trained, the ensemble of its members
        that serve fast enough together, next (seconds): its student may be refused, and then what serves is
        the most accurate model that meets the limit. Measured on banking77 (`coldstart-banking77-lexical.json`):
        without it the 10- and 20-minute runs served a lone fine-tune (test 0.9354), where the 2- and 5-minute
        runs served such an ensemble (0.9380, 0.9386)."""
        slow = [n for n in graph.scored(s.nodes) if n.strategy == "ensemble"
                and s.too_slow(Pipeline.from_dict(n.pipeline))]
        if not slow:
            return None
        fast = [p for p in self.graph_moves(s) if p.kind == "ensemble" and not s.too_slow(p.pipeline, alone=True)]
        if not fast:
            return None
        return Proposal(**{**fast[0].__dict__, "name": _unique(fast[0].name, s.nodes),
                           "reason": f"'{slow[-1].name}' serves under [serve] min_throughput "
                                     f"{s.min_throughput:.0f} texts/s: {fast[0].reason}, as fast as serving needs"})

    def _expand(self, s: SearchState) -> Proposal | None:
        c = graph.exploration(self.c0, s.seconds_left, s.budget)
        options = {n.name: self.candidates(n, s) for n in graph.scored(s.nodes)
                   if n.strategy not in graph.UNEXPANDABLE}
        allowed = {k for k, v in options.items() if v}
        latest = graph.scored(s.nodes)[-1]
        b = graph.best(s.nodes)
        rollback = graph.is_drop(latest, s.nodes)
        if rollback and b is not None and b.name in allowed:
            target, why = b.name, (f"rollback: '{latest.name}' ({latest.score:.4f}) fell below its parent; "
                                   f"expanding the best node '{b.name}'")
        else:
            target = graph.select(s.nodes, c, allowed)
            why = f"UCT (c={c:.2f}) selects '{target}'"
        cands = (options.get(target, []) if target else []) + self.graph_moves(s)
        if not cands:
            return None
        top = max(cands, key=lambda p: p.priority)
        uct = {k: round(v, 4) for k, v in graph.uct_scores(s.nodes, c).items()}
        return Proposal(**{**top.__dict__, "reason": f"{why}; {top.reason}",
                           "detail": {**top.detail, "uct": uct, "c": round(c, 3), "rollback": rollback,
                                      "alternatives": [(p.move, round(p.priority, 3)) for p in cands[:6]]}})

    def _recovery(self, s: SearchState, b: GraphNode, stale: int) -> Proposal | Stop | None:
        """A move from a family not tried since the last gain, from the best node or a root. The plateau
        stops the search only once every family affordable has had its recovery: measured, stopping after
        the first left 352 s of a 20-minute presidio_pii search unspent, before the ``negatives`` tagger
        that won both runs which spent their budget (`extraction-presidio_pii-o-weight.json`)."""
        recent = graph.scored(s.nodes)[-stale:]
        again = any(n.intervention.startswith("recovery") for n in recent)
        families = {iv.BY_NAME[n.move].family for n in recent if n.move in iv.BY_NAME}
        roots = [n for n in graph.scored(s.nodes) if n.parent is None]
        starts = {n.name: n for n in [b, *roots] if n.strategy not in graph.UNEXPANDABLE}
        cands = [p for n in starts.values() for p in self.candidates(n, s, kind="recovery")]
        fresh = [p for p in cands if p.detail.get("family") not in families]
        if again and not fresh:
            return Stop(f"plateau: {stale} nodes without dev gain over {b.score:.4f}, recovery moves tried "
                        f"({', '.join(sorted(families))}) and no other family has an affordable move")
        fresh = fresh or cands
        if not fresh:
            return None
        top = max(fresh, key=lambda p: p.priority)
        return Proposal(**{**top.__dict__, "intervention": f"recovery: {top.intervention}",
                           "reason": f"recovery after {stale} rounds without gain: switch to a family not "
                                     f"tried lately ({', '.join(sorted(families)) or 'none'}); {top.reason}"})

    def _refit(self, s: SearchState, b: GraphNode) -> Proposal | None:
        full = s.refit_seconds is not None and s.seconds_left >= s.refit_seconds
        part = not full and s.refit_frozen_seconds is not None and s.seconds_left >= s.refit_frozen_seconds
        if not (full or part):
            return None
        pipeline, intervention = refit_pipeline(b.name, s.encoder, s.seed, keep_trained=part)
        return Proposal(name="refit", parent=b.name, move="refit", kind="refit", pipeline=pipeline,
                        intervention=intervention,
                        reason=f"'{b.name}' is best on dev ({b.score:.4f}) and the budget left fits only a "
                               + ("refit: retrain the same pipeline with dev added (same hyperparameters and "
                                  "steps)" if full else
                                  f"refit of its frozen members ({s.seconds_left:.0f}s left; its trained members "
                                  f"would take {s.refit_seconds or 0:.0f}s): they refit with dev added in "
                                  "seconds, the trained ones and the weights stay")
                               + "; judged on the frozen eval set")
