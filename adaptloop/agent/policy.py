"""The policy seam: what a policy sees (``SearchState``) and what it answers (``Proposal``,
``Stop`` or ``WAIT``).

The loop asks ``policy.propose(state)`` and runs what comes back; it does not know how the
proposal was chosen. A proposal carries who made it (``proposer``) and why (``reason``), and both
are kept with the node it becomes. ``DoctrinePolicy`` (rules as data, ``agent.doctrine``) is the
offline default.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from adaptloop.search.graph import GraphNode
from adaptloop.types import Pipeline

# a node's speed timed alone against the same node measured in its trial beside another: 1.21-1.40 over five
# banking77 nodes (`speed` decisions of a 20-minute run: a fine-tune 154 -> 195 texts/s; its pair with the n-gram
# model, 146 from the shared speeds, was not built under [serve] min_throughput 150, and a lone fine-tune served)
SHARED_SPEEDUP = 1.2


@dataclass(frozen=True)
class SearchState:
    """What the policy may look at."""

    nodes: tuple[GraphNode, ...]  # finished, failed and running
    seconds_left: float
    budget: float
    encoder: str
    n_train: int
    n_classes: int
    n_label_issues: int = 0
    ladder: tuple[str, ...] = ()
    oos_label: str | None = None
    abstain_share: float | None = None  # [serve] abstain_share (None: the threshold trainer's default)
    seed: int = 0
    learned: dict[str, tuple[int, float, float]] = field(default_factory=dict)  # move -> (n, mean gain, mean s)
    refit_seconds: float | None = None
    refit_frozen_seconds: float | None = None  # an ensemble's frozen members alone (its trained ones kept)
    workers: int = 1
    trainable: tuple[str, ...] | None = None  # encoders cheap enough to fine-tune here (None: all)
    target: float | None = None
    opening: bool = False  # a cold start plays the family's opening first (an improve cycle starts from its incumbent)
    min_throughput: float = 0.0  # texts/s a cold start's winner must serve at, or be distilled (0: no limit)
    student_s: float = 0.0  # seconds a too-slow proposal must also leave for that student (0: kept back already)
    # cost rates: these defaults were measured on one 2-core machine; a run replaces them with this
    # machine's (train/machine_speed.py, the run's `costs` decision)
    sec_per_step: float = 0.5  # MiniLM, batch 32, 2 threads
    family: str = "classification"  # the task family: picks the baseline and the applicable moves
    tagger_sec_per_step: float = 0.5  # measured: MiniLM token classification, batch 16, 2 threads
    larger_slowdown: float = 9.0  # a step on the next rung (mpnet-base) vs the default (measured embed ratio)
    embed_rate_large: float = 35.0  # texts/s, all-mpnet-base-v2, 2 threads (measured)
    feature_encoder: str | None = None  # extraction: the frozen-tagger's encoder, when installed
    embed_rate_features: float = 35.0  # texts/s of ``feature_encoder`` (all-mpnet-base-v2, 2 threads, measured)

    @property
    def slowdown(self) -> float:
        return 1.7 if self.workers > 1 else 1.0  # two trials share two cores

    def running(self) -> list[GraphNode]:
        return [n for n in self.nodes if n.status == "running"]

    def too_slow(self, p: Pipeline, *, alone: bool = False) -> bool:
        """Whether ``p`` would likely serve slower than ``min_throughput``: a model on a larger encoder
        than the default, or an ensemble whose measured members together do (it runs them all). With
        ``alone``, as production will time it: a member's speed measured in its trial beside another
        (``workers`` > 1) counts ``SHARED_SPEEDUP`` times faster (for what to build for serving, which is
        timed again alone before it serves)."""
        if self.min_throughput <= 0:
            return False
        if p.strategy == "ensemble":
            speed = {n.name: n.texts_per_second for n in self.nodes}
            members = [speed.get(m) for m in p.hparams.get("member_names", ())]
            if not members or not all(members):
                return False
            rate = 1 / sum(1 / m for m in members)
            return rate * (SHARED_SPEEDUP if alone and self.workers > 1 else 1.0) < self.min_throughput
        return p.encoder != self.encoder

    def student_cost(self, p: Pipeline) -> float:
        """Seconds ``p`` needs beyond its own cost: its student's, when it may win and be too slow."""
        return self.student_s if self.too_slow(p) else 0.0


@dataclass(frozen=True)
class Proposal:
    name: str
    pipeline: Pipeline
    parent: str | None
    intervention: str  # for people: what changes
    reason: str  # the hypothesis, with the finding and the regime
    move: str = ""  # catalogue name or graph move (baseline, ensemble, merge, refit)
    kind: str = "expand"  # baseline | opening | expand | recovery | merge | ensemble | refit
    finding: str | None = None  # kind of the finding that suggested it
    priority: float = 0.0
    detail: dict[str, Any] = field(default_factory=dict)
    proposer: str = "doctrine"  # who chose it: the doctrine, an LLM planner, the improve cycle
    reserve_s: float = 0.0  # seconds of the budget the trial must leave (its own scoring, the winner's)


@dataclass(frozen=True)
class Stop:
    reason: str


WAIT = None  # nothing to start until a running trial finishes


class Policy(Protocol):
    """Chooses the next trial of a search: a proposal, a stop, or ``WAIT`` for a running trial."""

    name: str

    def propose(self, state: SearchState) -> Proposal | Stop | None: ...
