"""The rule-based doctrine policy: the starting rules as one readable table.

Each rule says when it applies (a named condition over the run's facts), what pipeline it
proposes relative to the best node so far, and why. ``DoctrinePolicy.propose`` walks the
table top to bottom and returns the first rule that applies and has not been tried.
Later issues add rules (and learned reordering); the table stays the one place to read.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from adaptloop.types import Pipeline


@dataclass(frozen=True)
class Facts:
    """What the policy may look at: finished nodes and data facts."""

    nodes: tuple[dict[str, Any], ...]  # name, pipeline (dict), score (dev), status, model_path
    n_train: int
    n_label_issues: int
    n_classes: int
    seconds_left: float
    encoder: str
    seed: int = 0
    larger_encoder: str | None = None  # next installed rung of the encoder ladder
    sec_per_step: float = 0.5  # measured prior for MiniLM, batch 32, 2 CPU threads
    larger_embed_rate: float = 35.0  # texts/s, all-mpnet-base-v2 on 2 CPU threads (measured)
    refit_seconds: float | None = None  # estimated cost of refitting the best node (None: n/a)

    def done(self) -> list[dict[str, Any]]:
        return [n for n in self.nodes if n["status"] == "done"]

    def tried(self, name: str) -> bool:
        """Finished or failed (a failed pipeline is not retried; an interrupted one is)."""
        return any(n["name"] == name and n["status"] in ("done", "failed") for n in self.nodes)

    def best(self, strategy: str | None = None) -> dict[str, Any] | None:
        """The best finished node on dev (refits have no dev score and are never 'best')."""
        pool = [n for n in self.done() if n["pipeline"]["strategy"] != "refit"
                and (strategy is None or n["pipeline"]["strategy"] == strategy)]
        return max(pool, key=lambda n: n["score"], default=None)

    def epoch_seconds(self) -> float:
        return self.n_train / 32 * self.sec_per_step


@dataclass(frozen=True)
class Rule:
    name: str
    when: Callable[[Facts], bool]
    build: Callable[[Facts], Pipeline]
    parent: Callable[[Facts], str | None]
    intervention: str
    reason: Callable[[Facts], str]


@dataclass(frozen=True)
class Proposal:
    name: str
    pipeline: Pipeline
    parent: str | None
    intervention: str
    reason: str


def _best_recipe(f: Facts) -> str:
    b = f.best("frozen")
    return b["pipeline"]["recipe"] if b else "raw"


def _score(f: Facts, strategy: str | None = None) -> str:
    b = f.best(strategy)
    return f"{b['score']:.3f}" if b else "n/a"


def _members(f: Facts, k: int = 3) -> list[dict[str, Any]]:
    """The ``k`` best finished non-ensemble nodes that have a saved model."""
    pool = [n for n in f.done() if n["pipeline"]["strategy"] not in ("ensemble", "refit")
            and n.get("model_path")]
    return sorted(pool, key=lambda n: -n["score"])[:k]


def _fits(f: Facts, epochs: float) -> bool:
    return f.seconds_left > epochs * f.epoch_seconds() + 30


SMALL_DATA_PER_CLASS = 50  # below this many examples per class, augmentation is worth a node

RULES: tuple[Rule, ...] = (
    Rule(
        name="baseline",
        when=lambda f: not f.done(),
        build=lambda f: Pipeline(recipe="raw", strategy="frozen", encoder=f.encoder, seed=f.seed),
        parent=lambda f: None,
        intervention="start",
        reason=lambda f: "cheapest strong baseline: frozen encoder embeddings + logistic "
                         "regression on deduplicated data",
    ),
    Rule(
        name="clean-data",
        when=lambda f: f.n_label_issues > 0,
        build=lambda f: Pipeline(recipe="curated", strategy="frozen", encoder=f.encoder,
                                 seed=f.seed),
        parent=lambda f: "baseline",
        intervention="drop label issues",
        reason=lambda f: f"doctrine: fix the data before the knobs — cleanlab flags "
                         f"{f.n_label_issues} likely mislabelled training examples",
    ),
    Rule(
        name="augment",
        when=lambda f: f.n_train < SMALL_DATA_PER_CLASS * f.n_classes,
        build=lambda f: Pipeline(recipe="augmented", strategy="frozen", encoder=f.encoder,
                                 seed=f.seed),
        parent=lambda f: "baseline",
        intervention="augment (typos, casing, truncation)",
        reason=lambda f: f"small data ({f.n_train / f.n_classes:.0f} examples per class): add a "
                         "typo, casing or truncation variant of every training example",
    ),
    Rule(
        name="finetune",
        when=lambda f: _fits(f, 0.5),
        build=lambda f: Pipeline(recipe=_best_recipe(f), strategy="finetune", encoder=f.encoder,
                                 hparams={"epochs": 2.0, "lr": 1e-4, "head_lr": 2e-3},
                                 seed=f.seed),
        parent=lambda f: (f.best("frozen") or {}).get("name"),
        intervention="fine-tune encoder (LP-FT)",
        reason=lambda f: f"frozen head reaches {_score(f, 'frozen')} on dev; the encoder itself "
                         f"must move — full fine-tune from the linear-probe head on the "
                         f"'{_best_recipe(f)}' recipe",
    ),
    Rule(
        name="larger-encoder",
        when=lambda f: f.larger_encoder is not None
        and f.seconds_left > 1.3 * f.n_train / f.larger_embed_rate + 60,
        build=lambda f: Pipeline(recipe=_best_recipe(f), strategy="frozen",
                                 encoder=f.larger_encoder or f.encoder, seed=f.seed),
        parent=lambda f: (f.best("frozen") or {}).get("name"),
        intervention="larger encoder (frozen)",
        reason=lambda f: f"climb the encoder ladder: {f.larger_encoder} embeddings + logistic "
                         f"regression (best so far {_score(f)}); a larger encoder separates "
                         "close classes that the small one blurs",
    ),
    Rule(
        name="ensemble",
        when=lambda f: len(_members(f)) >= 2 and f.seconds_left > 60,
        build=lambda f: Pipeline(recipe="raw", strategy="ensemble", encoder=f.encoder,
                                 hparams={"members": [n["model_path"] for n in _members(f)],
                                          "member_names": [n["name"] for n in _members(f)]},
                                 seed=f.seed),
        parent=lambda f: _members(f)[0]["name"],
        intervention="ensemble of the best nodes",
        reason=lambda f: "models trained differently err differently: average the "
                         f"probabilities of {', '.join(n['name'] for n in _members(f))} "
                         "with weights picked on dev",
    ),
    Rule(
        name="refit",
        when=lambda f: f.refit_seconds is not None and f.seconds_left > f.refit_seconds + 30,
        build=lambda f: Pipeline(recipe="train+dev", strategy="refit", encoder=f.encoder,
                                 hparams={"of": (f.best() or {}).get("name")}, seed=f.seed),
        parent=lambda f: (f.best() or {}).get("name"),
        intervention="refit on train+dev",
        reason=lambda f: f"'{(f.best() or {}).get('name')}' is best on dev ({_score(f)}): retrain "
                         "the same pipeline with the dev split added (same hyperparameters and "
                         "steps) — more data, no new choices; judged on the frozen eval set",
    ),
    Rule(
        name="lora",
        when=lambda f: _fits(f, 0.5),
        build=lambda f: Pipeline(recipe=_best_recipe(f), strategy="lora", encoder=f.encoder,
                                 hparams={"epochs": 2.0, "lr": 1e-3, "head_lr": 2e-3},
                                 seed=f.seed),
        parent=lambda f: (f.best("frozen") or {}).get("name"),
        intervention="LoRA adapters (r=8)",
        reason=lambda f: f"budget left after fine-tuning ({_score(f)} best so far): LoRA "
                         "changes fewer weights and may generalise differently",
    ),
    Rule(
        name="finetune-other-recipe",
        when=lambda f: f.tried("finetune") and f.n_label_issues > 0 and _fits(f, 0.5),
        build=lambda f: Pipeline(recipe="raw" if _best_recipe(f) == "curated" else "curated",
                                 strategy="finetune", encoder=f.encoder,
                                 hparams={"epochs": 2.0, "lr": 1e-4, "head_lr": 2e-3},
                                 seed=f.seed),
        parent=lambda f: "finetune",
        intervention="swap data recipe",
        reason=lambda f: "fine-tuning may tolerate the examples that curation removed; "
                         "check the other recipe at the same settings",
    ),
)


@dataclass
class DoctrinePolicy:
    """Walks ``RULES`` in order; stops on plateau or when no rule applies."""

    rules: tuple[Rule, ...] = RULES
    plateau_rounds: int = 2
    min_gain: float = 0.001
    skipped: list[str] = field(default_factory=list)

    def propose(self, facts: Facts) -> Proposal | str:
        """The next pipeline to try, or a string saying why to stop.

        A plateau (``plateau_rounds`` nodes without dev gain) stops the search only when the
        next rule would repeat a strategy already tried: a new lever always gets its node.
        """
        done = [n for n in facts.done() if n["pipeline"]["strategy"] != "refit"]
        plateau = ""
        if len(done) > self.plateau_rounds:
            best_before = max(n["score"] for n in done[: -self.plateau_rounds])
            recent = max(n["score"] for n in done[-self.plateau_rounds:])
            if recent < best_before + self.min_gain:
                plateau = (f"plateau: {self.plateau_rounds} nodes without dev gain over "
                           f"{best_before:.3f}")
        tried_strategies = {n["pipeline"]["strategy"] for n in done}
        for rule in self.rules:
            if facts.tried(rule.name) or not rule.when(facts):
                continue
            pipe = rule.build(facts)
            if plateau and pipe.strategy in tried_strategies:
                return plateau
            return Proposal(rule.name, replace(pipe), rule.parent(facts), rule.intervention,
                            rule.reason(facts))
        if plateau:
            return plateau
        if facts.seconds_left <= 30:
            return "budget spent"
        untried = [r.name for r in self.rules if not facts.tried(r.name)]
        if untried:
            return (f"no doctrine rule applies with {facts.seconds_left:.0f}s left "
                    f"(not tried: {', '.join(untried)})")
        return "no doctrine rule applies: every rule has been tried"
