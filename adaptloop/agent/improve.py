"""One production cycle: judge → triage → taxonomy → curriculum → retrain → gate → promote | refuse.

1. Traces not yet judged (imported or served) are predicted with the production model when
   they carry no output, then judged and triaged (``diagnose.triage``); every verdict and its
   reason is written back to the trace. Poisonous traces stay in the store, quarantined.
2. Fixable failures are clustered into a taxonomy (``diagnose.taxonomy``).
3. With enough failures: a checkpoint eval set is frozen from held-out trusted traces before
   any training, and the curriculum is built — trusted traces (corrected failures and
   confirmations), hard negatives for the top confusion clusters, typo / truncation variants
   for the top pattern clusters, and a replay of the parent's training data.
4. The cold-start search machinery retrains from the base model on it (smaller budget), and
   registers its winner as ``candidate``.
5. Production competes with the candidate on this cycle's dev rows it never trained on (the
   data that selected the candidate): a candidate that scores lower there is refused before
   the gate. Frozen eval sets can be too small to see a drop (a tagger's holds a few dozen
   entities), dev is this cycle's fresh traffic and free.
6. The regression gate (``evaluate.gate``) compares candidate and incumbent on every frozen
   eval set of the task (the ratchet); ``production`` moves only when it passes.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from sqlalchemy import select

from adaptloop.agent.coldstart import ColdStart, encoder_embedder
from adaptloop.agent.executor import Executor
from adaptloop.agent.families import family_of
from adaptloop.agent.llm_judge import judge_unlabelled, trusted_examples
from adaptloop.agent.policy import Proposal
from adaptloop.agent.predict import embedding_cache, load_version, score_rows
from adaptloop.agent.prepare import _examples, _store_dataset, eval_sets, fail_run
from adaptloop.agent.refit import refit_plan, settled_pipeline
from adaptloop.agent.traffic import (
    as_given,
    failure_taxonomy,
    judge,
    trace_views,
)
from adaptloop.data import curate
from adaptloop.data.augment import augment
from adaptloop.data.llm import LLMClient
from adaptloop.data.split import stratified_split
from adaptloop.diagnose.reference import REFERENCE_ODDS, reference_odds
from adaptloop.diagnose.taxonomy import Cluster
from adaptloop.diagnose.triage import TraceView
from adaptloop.errors import AdaptloopError, DataError, PromotionConflict, RunFailed
from adaptloop.evaluate.gate import GateResult, SetResult, compare, gate
from adaptloop.store import registry
from adaptloop.store.db import EvalSetRow, ModelVersionRow, Removal, Run, TraceRow, TraceUse, utcnow
from adaptloop.train import Trainer, load_trained, trainer_for
from adaptloop.train.base import Progress, no_progress
from adaptloop.types import CarriedTrace, EvalSet, Example, RunState, TaskSpec, Verdict
from adaptloop.workspace import Workspace

WATCHDOG_MIN = 30  # trusted traces needed before production is compared with the version it replaced
GATE_RESERVE_S = 60.0  # budget kept back for scoring both models on every eval set
BLEND_WEIGHTS = (0.5, 0.6, 0.7, 0.8, 0.9, 1.0)  # candidate's share in the fallback blend
BLEND_SLACK = 0.005  # dev accuracy a blend may give up for fewer broken examples


@dataclass
class ImproveResult:
    traces: dict[str, Any]
    triage: dict[str, int]
    poison: dict[str, int]
    taxonomy: list[dict[str, Any]]
    decision: str  # promoted | refused | no-op
    reason: str
    incumbent: str
    candidate: str | None = None
    run_id: int | None = None
    gate: dict[str, Any] | None = None
    curriculum: dict[str, int] = field(default_factory=dict)
    checkpoint: list[dict[str, Any]] = field(default_factory=list)  # this cycle's new eval set, not binding yet
    rolled_back: bool = False  # the watchdog restored the version before production first
    audit: list[dict[str, Any]] = field(default_factory=list)  # per set traces went into: how many doubted, why
    wall_seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__, wall_seconds=round(self.wall_seconds, 1))


class ImproveCycle:
    """One cycle on the workspace's ``production`` model; see the module docstring.

    Args:
        ws: the workspace.
        budget_s: wall budget of the whole cycle.
        progress: progress-bar factory.
        make_trainer / executor: as for ``ColdStart`` (the seams tests fill with fakes).
        embed_fn: texts → embeddings (default: the workspace encoder through its cache).
        llm: the LLM judge's client (default: from ``[llm]``; none offline).
    """

    def __init__(self, ws: Workspace, budget_s: float, *, progress: Progress = no_progress,
                 make_trainer: Callable[[str], Trainer] = trainer_for, executor: Executor | None = None,
                 embed_fn: Callable[[list[str]], np.ndarray] | None = None, llm: Any = None) -> None:
        self.ws, self.budget_s, self.progress, self.llm = ws, budget_s, progress, llm
        self.make_trainer, self.executor = make_trainer, executor
        self.embed = embed_fn or encoder_embedder(ws, progress, what="embed")
        self.cfg = ws.settings.improve

    def run(self) -> ImproveResult:
        """One cycle; an error after its run was opened marks the run failed (``RunFailed``)."""
        self._run_id: int | None = None
        try:
            return self._run()
        except KeyboardInterrupt:
            if self._run_id is not None:
                self.ws.store.update(Run, self._run_id, status="interrupted", finished_at=utcnow())
            raise
        except Exception as exc:
            if self._run_id is None:
                raise
            fail_run(self.ws.store, self._run_id, exc)
            if isinstance(exc, AdaptloopError):
                raise
            raise RunFailed(self._run_id, exc) from exc

    def _run(self) -> ImproveResult:
        t0 = time.monotonic()
        ws, store = self.ws, self.ws.store
        mv, spec, model = load_version(ws, "production", cached=True)
        if not family_of(spec.family).improves:
            raise DataError(f"improve supports classification and extraction tasks so far; production model "
                            f"v{mv.id} is {spec.family} (its traces are still recorded and shown by "
                            "`adaptloop traces`)")
        parent_run, parent_train, parent_dev = self._parent(mv)
        eval_sets = self._eval_sets(mv.task_id)
        run, views, verdicts = self._judge(mv, spec, model, parent_run, parent_train, eval_sets)
        # what only the LLM judge labelled trains, lighter than people's labels, and is never held out
        trusted, by_llm = trusted_examples(spec, verdicts, views, weight=ws.settings.llm.judge_trust)
        # the watchdog also counts feedback only the label-noise rule doubted: that rule trusts
        # production's own training data, which is what the watchdog puts in question
        doubted = [as_given(views[i]) for i, v in enumerate(verdicts) if v.kind == "label_noise"]
        rolled = self._watchdog(run, spec, model, trusted + [e for e in doubted if e is not None])
        if rolled is not None:  # the curriculum replays the restored version's data
            mv, spec, model = rolled
            parent_run, parent_train, parent_dev = self._parent(mv)
        fixable = [(v, views[i]) for i, v in enumerate(verdicts) if v.triage == "fixable"]
        carried, clusters, base = self._failures(run, mv, views, verdicts, fixable, rolled is not None)
        n_carried = sum(1 for c in carried if c.triage == "fixable")
        if not verdicts:
            return self._close(run, t0, ImproveResult(**base, decision="no-op", reason="no new traces to judge; "
                                                      "production stays"))
        if len(fixable) + n_carried < self.cfg.min_failures:
            reason = (f"{len(fixable) + n_carried} fixable failures (this cycle {len(fixable)}, carried "
                      f"{n_carried}), fewer than the {self.cfg.min_failures} a retrain needs ([improve] "
                      "min_failures); production stays and they wait for the next cycle")
            return self._close(run, t0, ImproveResult(**base, decision="no-op", reason=reason))

        people, judged_only = trusted_examples(spec, [], [], carried, weight=ws.settings.llm.judge_trust)
        trusted, by_llm = trusted + people, by_llm + judged_only
        base["curriculum"] = self._curriculum(run, spec, trusted, clusters, parent_train, parent_dev, eval_sets,
                                              mv.task_id, by_llm)
        search_s = self.budget_s - (time.monotonic() - t0) - GATE_RESERVE_S
        store.update(Run, run.id, budget_s=max(30.0, search_s))
        result = ColdStart(ws, run.id, progress=self.progress, make_trainer=self.make_trainer,
                           executor=self.executor, promote=False,
                           first=self._incumbent_recipe(parent_run, spec)).run()
        if result.version is None:
            return self._close(run, t0, ImproveResult(**base, decision="refused",
                                                      reason=f"no candidate: {result.stop_reason}"))
        return self._close(run, t0, self._decide(run, spec, mv, model, result.version, parent_train, parent_dev,
                                                 eval_sets, base))

    # -- phases ---------------------------------------------------------------------------
    def _parent(self, mv: ModelVersionRow) -> tuple[Run, list[Example], list[Example]]:
        """The run that trained a version, and its training and dev data (what a cycle replays)."""
        parent_run = self.ws.store.get(Run, mv.lineage["run_id"])
        data = self.ws.store.run_state(parent_run).datasets
        return parent_run, _examples(self.ws, data["raw"]), _examples(self.ws, data["dev"])

    def _judge(self, mv: ModelVersionRow, spec: TaskSpec, model: Any, parent_run: Run, parent_train: list[Example],
               eval_sets: list[tuple[str, list[Example]]]) -> tuple[Run, list[Any], list[Verdict]]:
        """Every trace not judged yet, triaged; the verdicts written back to the traces of a new run."""
        store = self.ws.store
        query = (select(TraceRow).where(TraceRow.triage.is_(None))
                 .where((TraceRow.task_id == mv.task_id) | TraceRow.task_id.is_(None))
                 .order_by(TraceRow.ts, TraceRow.id))
        rows = store.all(query)
        client = self.llm or LLMClient.from_settings(self.ws.settings.llm)
        judge_counts = judge_unlabelled(self.ws, client, spec, rows) if client and rows else {}
        if judge_counts:  # its answers are feedback now: read the traces again
            rows = store.all(query)
        views = trace_views(rows, model, self.progress)
        verdicts = judge(views, spec, parent_train, eval_sets, self.embed, self.ws.settings.train.seed)
        by_id = {v.id: v for v in verdicts}
        counts = Counter(v.triage for v in verdicts)
        poison = Counter(v.kind for v in verdicts if v.triage == "poison")
        run = store.add(Run(task_id=mv.task_id, kind="improve", budget_s=self.budget_s, state={},
                            eval_set_id=parent_run.eval_set_id))
        self._run_id = run.id
        if judge_counts:
            store.claim_llm_calls("judge", run.id)
        with store.session() as s:
            for r in rows:
                v = by_id[r.id]
                row = s.get(TraceRow, r.id)
                row.triage, row.kind, row.reason, row.trust, row.cycle_id = (
                    v.triage, v.kind, v.reason, round(v.trust, 4), run.id)
                row.task_id = mv.task_id
        if judge_counts:
            store.decide(run.id, "llm_judge", "the LLM judged traces without feedback: " + ", ".join(
                f"{k} {n}" for k, n in sorted(judge_counts.items())), counts=judge_counts)
        store.decide(run.id, "triage", f"judged {len(verdicts)} traces: " + ", ".join(
            f"{k} {n}" for k, n in counts.most_common()), counts=dict(counts), poison=dict(poison))
        return run, views, verdicts

    def _failures(self, run: Run, mv: ModelVersionRow, views: list[Any], verdicts: list[Verdict],
                  fixable: list[tuple[Verdict, Any]],
                  rolled_back: bool) -> tuple[list[CarriedTrace], list[Cluster], dict[str, Any]]:
        """Drift reported, earlier cycles' trusted traces carried in, the failure taxonomy built; also the
        result's fields so far."""
        store = self.ws.store
        drift = [views[i].text for i, v in enumerate(verdicts) if v.triage == "out_of_scope"]
        if drift:
            store.decide(run.id, "drift", f"{len(drift)} traces are far from every known class (out of scope): "
                         "reported, never trained on", examples=drift[:10])
        carried = store.carried_trusted(mv.task_id, run.id)
        if carried:
            n_carried = sum(1 for c in carried if c.triage == "fixable")
            store.decide(run.id, "carried", f"{len(carried)} trusted traces from earlier cycles that no promoted "
                         f"model has learned from yet ({n_carried} fixable failures) join this cycle")
        clusters = failure_taxonomy(fixable, self.embed, self.ws.settings.train.seed)
        store.decide(run.id, "taxonomy", f"{len(clusters)} failure clusters; top: " + "; ".join(
            f"{c.name} ({c.count})" for c in clusters[:3]), clusters=[c.to_dict() for c in clusters[:20]])
        base = dict(traces={"judged": len(verdicts), "carried": len(carried), "drift_examples": drift[:5]},
                    triage=dict(Counter(v.triage for v in verdicts)), rolled_back=rolled_back,
                    poison=dict(Counter(v.kind for v in verdicts if v.triage == "poison")),
                    taxonomy=[c.to_dict() for c in clusters], incumbent=f"v{mv.id}", run_id=run.id)
        return carried, clusters, base

    def _decide(self, run: Run, spec: TaskSpec, mv: ModelVersionRow, model: Any, version: int,
                parent_train: list[Example], parent_dev: list[Example], eval_sets: list[tuple[str, list[Example]]],
                base: dict[str, Any]) -> ImproveResult:
        """The candidate against production: the dev duel, then the gate (and the blend when only
        breakage refused it); promote or refuse, with the rule that decided."""
        ws, store = self.ws, self.ws.store
        cand = store.get(ModelVersionRow, version)
        candidate = load_trained(ws.artifacts.path(cand.artifact), embeddings=embedding_cache(ws.root))
        duel = self._dev_duel(run, spec, model, candidate, parent_train + parent_dev)
        if duel is not None and duel.candidate < duel.incumbent:
            reason = (f"refused: production v{mv.id} scores higher than v{cand.id} on this cycle's dev split "
                      f"({duel.n} rows production never trained on): {spec.primary_metric} {duel.incumbent:.4f} "
                      f"vs {duel.candidate:.4f}; the candidate is not better even on the data that selected it")
            registry.refuse(store, cand.id, reason)
            store.decide(run.id, "refused", reason, candidate=cand.id, incumbent=mv.id, dev_duel=asdict(duel))
            return ImproveResult(**base, decision="refused", reason=reason, candidate=f"v{cand.id}")
        # binding: the eval sets that existed before this cycle (the current one and every earlier
        # checkpoint's), both rules; this cycle's checkpoint set binds on the noise rule only (it holds
        # the incumbent's own failures) and on both from the next cycle
        fresh = [(sid, ex) for sid, ex in self._eval_sets(mv.task_id) if sid not in dict(eval_sets)]
        doubted = self._doubted(spec, parent_train, eval_sets)
        g = self._gate(spec, model, candidate, eval_sets, fresh, doubted)
        base["checkpoint"] = [asdict(r) | {"broken": len(r.broken)} for r in g.sets[len(eval_sets):]]
        if not g.passed and all("breaks" in r for r in g.reasons):
            # only breakage: one more candidate, decided on dev before the gate sees it — the new model
            # blended with the incumbent, which keeps the incumbent's confident answers
            blended = self._blend(run, spec, candidate, model, cand)
            if blended is not None:
                g2 = self._gate(spec, model, blended[1], eval_sets, fresh, doubted)
                store.decide(run.id, "blend", f"gate refused v{cand.id} for breakage only; v{blended[0].id} "
                             f"blends it with the incumbent ({blended[2]}): gate "
                             f"{'passed' if g2.passed else 'refused'}", first_gate=g.to_dict())
                registry.refuse(store, cand.id, "refused: " + "; ".join(g.reasons), g)
                cand, g = blended[0], g2
        if g.passed:
            summary = "; ".join(f"{s.eval_set}: {s.incumbent:.4f} → {s.candidate:.4f}, {len(s.broken)} broken, "
                                f"{s.fixed} fixed" for s in g.sets)
            reason = f"passed the gate on {len(g.sets)} eval sets ({summary}); rules: " + "; ".join(g.notes)
            try:  # a compare-and-set: another cycle or an admin may have moved production meanwhile
                registry.promote(store, cand.id, g, reason, replacing=mv.id)
                decision = "promoted"
            except PromotionConflict as exc:
                reason, decision = f"not promoted: {exc}", "refused"
                registry.refuse(store, cand.id, reason, g)
        else:
            reason = "refused: " + "; ".join(g.reasons)
            registry.refuse(store, cand.id, reason, g)
            decision = "refused"
        store.decide(run.id, decision, reason, candidate=cand.id, incumbent=mv.id, gate=g.to_dict())
        return ImproveResult(**base, decision=decision, reason=reason, candidate=f"v{cand.id}", gate=g.to_dict())

    # -- steps ----------------------------------------------------------------------------
    def _incumbent_recipe(self, parent_run: Run, spec: TaskSpec) -> list[Proposal]:
        """Production's own pipeline retrained on this cycle's curriculum, started before the policy
        proposes anything: the candidate every improvement must beat, and the one a short budget
        could otherwise never afford (a fine-tune the search would rule out as too costly)."""
        plan = refit_plan(self.ws.store.nodes(parent_run.id), spec, again=True)
        if plan is None:
            return []
        node = max(plan.members, key=lambda m: m[1])[0]  # an ensemble: its heaviest member
        pipe = settled_pipeline(node, new_budget=True)
        if pipe.strategy == "frozen" and pipe.recipe == "raw":
            return []  # the policy's own baseline
        return [Proposal(name="incumbent-recipe", parent=None, move="baseline", kind="baseline",
                         pipeline=pipe, intervention="start", proposer="improve",
                         reason=f"production's own recipe ('{node.name}': {pipe.strategy} on {pipe.encoder}, "
                                f"recipe {pipe.recipe}) retrained on this cycle's curriculum: the candidate "
                                "any other pipeline must beat")]

    def _watchdog(self, run: Run, spec: TaskSpec, model: Any,
                  trusted: list[Example]) -> tuple[ModelVersionRow, TaskSpec, Any] | None:
        """Production against the version it replaced, on this cycle's trusted traffic: when it is
        worse beyond noise (paired bootstrap), roll back before anything else — "any drop: roll back".
        Returns the restored (version, spec, model), or None."""
        stack = registry.production_stack(self.ws.store)
        if len(stack) < 2 or len(trusted) < WATCHDOG_MIN:
            return None
        _, _, before = load_version(self.ws, f"v{stack[-2]}", cached=True)
        now = score_rows(model, trusted, progress=self.progress, what="watchdog: production")
        old = score_rows(before, trusted, progress=self.progress, what="watchdog: previous")
        r = compare(spec, "fresh trusted traffic", old, now, epsilon=None, seed=self.ws.settings.train.seed)
        verdict = (f"production v{stack[-1]} vs v{stack[-2]} on {len(trusted)} fresh trusted traces: "
                   f"{r.candidate:.4f} vs {r.incumbent:.4f} (95% interval of the change "
                   f"[{r.ci_low:+.4f}, {r.ci_high:+.4f}])")
        if r.ci_high >= 0:
            self.ws.store.decide(run.id, "watchdog", verdict + ": not worse beyond noise, production stays")
            return None
        registry.rollback(self.ws.store, reason="watchdog: " + verdict + ", worse beyond noise", who="watchdog")
        self.ws.store.decide(run.id, "rolled_back", verdict + ": worse beyond noise, rolled back")
        mv, spec, model = load_version(self.ws, "production", cached=True)
        self.ws.store.update(Run, run.id, eval_set_id=self.ws.store.get(Run, mv.lineage["run_id"]).eval_set_id)
        return mv, spec, model

    def _eval_sets(self, task_id: int) -> list[tuple[str, list[Example]]]:
        return eval_sets(self.ws, task_id)

    def _curriculum(self, run: Run, spec: TaskSpec, trusted: list[Example], clusters: list[Cluster],
                    parent_train: list[Example], parent_dev: list[Example],
                    eval_sets: list[tuple[str, list[Example]]], task_id: int,
                    by_llm: Sequence[Example] = ()) -> dict[str, int]:
        """Freeze this cycle's checkpoint eval set (people's labels only), then write train and dev for the
        search; ``by_llm`` (traces only the LLM judge labelled) joins training, never eval or dev."""
        ws, store, seed = self.ws, self.ws.store, self.ws.settings.train.seed
        agent = ws.settings.agent
        given = trusted
        trusted = curate.apply_drops(trusted, curate.find_exact_duplicates(trusted))
        held, rest = stratified_split(trusted, fraction=agent.eval_fraction, seed=seed + 7, max_n=agent.eval_max)
        es = EvalSet(tuple(held))
        address = ws.artifacts.put_json(es.to_dict())
        store.add_once(EvalSetRow(id=es.id, task_id=task_id, artifact=address, n=len(held),
                                  report=curate.class_balance(held)))
        store.decide(run.id, "eval_set_frozen", f"checkpoint eval set {es.id}: {len(held)} held-out trusted "
                     "traces, frozen before any training; every later candidate must pass it too (ratchet)")
        old_eval = [e for _, ex in eval_sets for e in ex] + list(held)
        drops = curate.find_eval_overlap(rest, old_eval)
        with store.session() as s:
            for d in drops:
                e = rest[d.index]
                s.add(Removal(task_id=task_id, example_id=e.id, text=e.text, label=e.label, reason=d.reason,
                              detail=d.detail))
        rest = curate.apply_drops(rest, drops)
        dev_new, train_new = stratified_split(rest, fraction=agent.dev_fraction, seed=seed + 8)
        judge_drops = curate.find_eval_overlap(list(by_llm), old_eval + dev_new)
        train_new += curate.apply_drops(list(by_llm), judge_drops)
        share = replay_share(self.cfg.replay, len(parent_train), len(rest))
        replay = (stratified_split(parent_train, fraction=share, seed=seed + 9)[0] if 0 < share < 1
                  else list(parent_train) if share else [])
        variants: list[Example] = []
        top = clusters[: self.cfg.top_clusters]
        pair_labels = {lab for c in top if c.kind == "confusion" for a, b, _n in c.pairs[:1] for lab in (a, b)}
        replayed = {e.id for e in replay}
        hard = [e for e in parent_train if e.label in pair_labels and e.id not in replayed]
        pattern_labels = {b for c in top if c.kind == "pattern" for _a, b, _n in c.pairs}
        if pattern_labels:
            variants = augment([e for e in parent_train if e.label in pattern_labels], seed=seed)
            variants = [e for e in variants if e.source.startswith("augment")] or variants
        train = curate.first_of_each_id(train_new + replay + hard + variants)  # a replayed row may be a hard one
        dev = list(parent_dev) + dev_new
        placed = {e.source for part in (train_new, dev_new, held) for e in part}
        dropped = list({e.source: e for e in given if e.source not in placed}.values())
        with store.session() as s:  # "dropped": duplicates / eval overlaps, so they are not carried again
            for role, part in (("train", train_new), ("dev", dev_new), ("eval", held), ("dropped", dropped)):
                for e in part:
                    s.add(TraceUse(trace_id=e.source.removeprefix("trace:"), run_id=run.id, role=role))
        counts = {"trusted_traces": len(trusted), "judge_labelled": len(by_llm), "checkpoint_eval": len(held),
                  "eval_overlap": len(drops),
                  "traces_train": len(train_new), "traces_dev": len(dev_new), "replay": len(replay),
                  "hard_negatives": len(hard), "pattern_variants": len(variants), "train": len(train),
                  "dev": len(dev)}
        store.save_state(run.id, RunState(
            spec=spec, eval_artifact=store.get(EvalSetRow, run.eval_set_id).artifact,
            datasets={"raw": _store_dataset(ws, task_id, "train", train, f"improve run {run.id}"),
                      "dev": _store_dataset(ws, task_id, "dev", dev, f"improve run {run.id}")},
            label_issues=(), curation=counts))
        store.decide(run.id, "curriculum", "corrected failures + confirmations from trusted traces, hard "
                     f"negatives for {len(pair_labels) // 2 or 0} confusions, variants for "
                     f"{len(pattern_labels)} pattern classes, {share:.0%} replay of the parent's data", **counts)
        return counts

    def _blend(self, run: Run, spec: TaskSpec, candidate: Any, incumbent: Any,
               cand: ModelVersionRow) -> tuple[ModelVersionRow, Any, str] | None:
        """Candidate × incumbent probability blend, its weight chosen on dev: the fewest dev
        examples broken against the incumbent among weights within ``BLEND_SLACK`` of the best
        dev accuracy. None when no blend keeps the candidate's dev gain."""
        from adaptloop.train.ensemble import EnsembleModel

        dev = _examples(self.ws, self.ws.store.run_state(run.id).datasets["dev"])
        if not dev or not hasattr(candidate, "predict_proba"):  # a blend mixes class probabilities
            return None
        texts = [e.text for e in dev]
        y = np.array([spec.labels.index(e.label) for e in dev])
        pc, pi = candidate.predict_proba(texts), incumbent.predict_proba(texts)
        inc_right = pi.argmax(1) == y
        scored = []
        for w in BLEND_WEIGHTS:
            pred = (w * pc + (1 - w) * pi).argmax(1)
            scored.append((w, float((pred == y).mean()), int((inc_right & (pred != y)).sum())))
        best = max(acc for _, acc, _ in scored)
        if best <= float(inc_right.mean()):
            return None
        w, acc, broken = min((t for t in scored if t[1] >= best - BLEND_SLACK), key=lambda t: (t[2], -t[0]))
        if w >= 1.0:
            return None  # the candidate alone: the gate has already said no
        folder = self.ws.artifacts.staging_dir()
        EnsembleModel([candidate, incumbent], [w, 1 - w]).save(folder)
        address = self.ws.artifacts.put_dir(folder)
        mv = registry.register(self.ws.store, task_id=cand.task_id, node_id=cand.node_id, artifact=address,
                               metrics=cand.metrics, lineage={**cand.lineage, "blend": {
                                   "candidate": cand.id, "incumbent": registry.alias_target(
                                       self.ws.store, "production"), "weight": w}},
                               reason=f"blend of v{cand.id} (weight {w}) with the incumbent")
        how = f"weight {w}: dev accuracy {acc:.4f}, {broken} dev examples broken vs the incumbent"
        return mv, load_trained(self.ws.artifacts.path(address), embeddings=embedding_cache(self.ws.root)), how

    def _dev_duel(self, run: Run, spec: TaskSpec, incumbent: Any, candidate: Any,
                  seen: list[Example]) -> SetResult | None:
        """Production and the candidate on this cycle's dev rows whose text production's own train
        and dev data lack (it was trained or selected on those); None when no row is left."""
        known = {e.text for e in seen}
        dev = [e for e in _examples(self.ws, self.ws.store.run_state(run.id).datasets["dev"])
               if e.text not in known]
        if not dev:
            return None
        return compare(spec, "this cycle's dev split",
                       score_rows(incumbent, dev, progress=self.progress, what="dev: production"),
                       score_rows(candidate, dev, progress=self.progress, what="dev: candidate"),
                       epsilon=None, seed=self.ws.settings.train.seed)

    def _doubted(self, spec: TaskSpec, parent_train: list[Example],
                 eval_sets: list[tuple[str, list[Example]]]) -> frozenset[str]:
        """Ids of binding eval examples whose gold label the training data doubts: a model of production's
        training data alone finds it ``REFERENCE_ODDS`` less likely than its top class (the triage's
        label-noise rule). Their broken units weigh less at the gate. Classification only."""
        evals = [e for _, es in eval_sets for e in es]
        if not evals or not parent_train or spec.family != "classification":
            return frozenset()
        views = [TraceView(e.id, e.text, None, None, e.label) for e in evals]
        odds, _, _ = reference_odds(views, self.embed([e.text for e in evals]), [e.label for e in parent_train],
                                    self.embed([e.text for e in parent_train]), spec.labels,
                                    seed=self.ws.settings.train.seed)
        return frozenset(e.id for e, o in zip(evals, odds) if o >= REFERENCE_ODDS)

    def _gate(self, spec: TaskSpec, incumbent: Any, candidate: Any, eval_sets: list[tuple[str, list[Example]]],
              fresh: list[tuple[str, list[Example]]] = (), doubted: frozenset[str] = frozenset()) -> GateResult:
        def scored(sets: list[tuple[str, list[Example]]]) -> list[tuple[str, list, list]]:
            return [(sid, score_rows(incumbent, ex, progress=self.progress, what=f"gate: incumbent on {sid}"),
                     score_rows(candidate, ex, progress=self.progress, what=f"gate: candidate on {sid}"))
                    for sid, ex in sets]

        return gate(spec, scored(eval_sets), epsilon=self.cfg.epsilon, seed=self.ws.settings.train.seed,
                    fresh=scored(list(fresh)), doubted=doubted)

    def _close(self, run: Run, t0: float, result: ImproveResult) -> ImproveResult:
        result.wall_seconds = time.monotonic() - t0
        store = self.ws.store
        result.audit = store.trace_audit(run.id)
        if result.decision == "no-op":
            store.decide(run.id, "no-op", result.reason)
        store.update(Run, run.id, status="done", finished_at=utcnow())
        return result


def replay_share(share: float, n_parent: int, n_new: int) -> float:
    """The share of the parent's training data to replay: ``[improve] replay`` when the parent's
    data dwarfs the new data, else enough for as many old rows as new ones (all of a small parent):
    a cycle that learns 500 traces on top of a 600-row seed set must not forget 85% of it, and
    each cycle's traces live on in the next one's replay."""
    if share <= 0 or n_parent == 0:
        return 0.0
    return min(1.0, max(share, n_new / n_parent))
