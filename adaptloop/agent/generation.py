"""The generation cold start: spec → frozen eval set → base model diagnosed → fine-tunes → promote.

A small doctrine of its own, because every node costs minutes of decoding on CPU:

1. ``base``: the untrained causal LM with the full instruction (for a closed answer set it
   lists the answers). Its dev outputs are diagnosed (format vs content, truncation,
   repetition, extraction failures, length drift).
2. ``sft``: a full fine-tune on the task's targets in the learned format. For math with
   worked solutions the targets are the chain of thought (rationale, calculator marks
   removed, ``#### n`` last): the ``cot`` recipe. A closed answer set trains with the short
   instruction (the model learns the answers; the list would cost hundreds of tokens).
   It gets the whole remaining budget (less the decoding it will need): on CPU, more training
   is the best use of time. Math data with final answers only gets its chain of thought from a
   teacher LLM when ``[generation] teacher_url`` is set (``data.teacher``: solutions whose final
   answer is wrong are rejected).
3. Only when the fine-tune ends early (planned epochs, early stop) is there a follow-up:
   ``lora`` when it over-fitted (dev loss rose before the end), ``more-epochs`` when dev loss
   was still falling, else ``lora`` as a second strategy.
4. Decode-time moves on the best node, each from a finding of its dev outputs and kept only
   when dev says so (same weights, no training): ``format-normalise`` (format errors: outputs
   put into the task's format; a rescoring, no decoding), ``decoding`` (repetition loops: a
   repetition penalty), ``more-tokens`` (truncation: twice the decoding limit).

Each node is a ``Node`` row with its reason, dev metrics, curve and findings; the best on
dev is scored on the frozen eval set, registered and promoted. Every decision is recorded.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from adaptloop.agent.budget import Clock
from adaptloop.agent.coldstart import ColdStartResult
from adaptloop.agent.generation_moves import decode_moves, few_shot, unusable_targets
from adaptloop.data.generation import LoadedSamples, Sample, infer_kind
from adaptloop.data.prompts import instruction, present
from adaptloop.data.spec import slug
from adaptloop.diagnose.generation import METRIC, diagnose, score_outputs
from adaptloop.errors import DataError
from adaptloop.evaluate.gate import first_model
from adaptloop.store import registry
from adaptloop.store.db import Dataset, EvalSetRow, FindingRow, Node, Quarantine, Removal, Run, Task, utcnow
from adaptloop.train.base import FitContext, Progress, no_progress
from adaptloop.types import Finding, Pipeline, RunState, TaskSpec, content_hash
from adaptloop.workspace import Workspace

log = logging.getLogger(__name__)

DECODE_RESERVE = 1.3  # decoding estimates are rough: keep this factor of them back


def infer_generation_spec(prompt: str, samples: Sequence[Sample], *, model: str) -> TaskSpec:
    kind = infer_kind(samples)
    labels = tuple(sorted({s.target.strip() for s in samples})) if kind == "label" else ()
    metric = METRIC[kind]
    return TaskSpec(name=slug(prompt), prompt=prompt, family="generation", labels=labels, primary_metric=metric,
                    secondary_metrics=("format_ok",), output={"kind": kind, "base": model})


def _split(samples: Sequence[Sample], n: int, seed: int) -> tuple[list[Sample], list[Sample]]:
    """A deterministic function of content: the ``n`` samples whose seeded hashes sort first."""
    ranked = sorted(samples, key=lambda s: content_hash([seed, s.id]))
    return ranked[:n], ranked[n:]


def _sample_rows(samples: Sequence[Sample]) -> list[dict[str, Any]]:
    return [{"prompt": s.prompt, "target": s.target, "context": [list(c) for c in s.context], "extra": s.extra,
             "id": s.id, "source": s.source} for s in samples]


def samples_from_rows(rows: Sequence[dict[str, Any]]) -> list[Sample]:
    return [Sample(prompt=r["prompt"], target=r["target"], context=tuple(tuple(c) for c in r["context"]),
                   extra=r["extra"], id=r["id"], source=r["source"]) for r in rows]


def default_trainer(strategy: str):
    from adaptloop.train.causal import CausalTrainer

    return CausalTrainer(lora=strategy == "sft-lora")


def default_loader(name: str, *, device: str, max_new_tokens: int, llama_cpp: bool = False):
    from adaptloop.train.causal import load_base

    return load_base(name, device=device, max_new_tokens=max_new_tokens, llama_cpp=llama_cpp)


class GenerationColdStart:
    """Prepare and run one generation cold start (see the module docstring).

    Args:
        ws: the workspace.
        loaded: the samples read from the user's file.
        prompt: the user's words.
        budget_s: wall budget in seconds.
        progress: progress-bar factory.
        make_trainer: strategy -> trainer with ``fit(pipeline, train, dev, ctx)`` (a seam for tests).
        load_model: ``(name, device=, max_new_tokens=, llama_cpp=)`` -> the base model (a seam for tests).
        teacher: a ``TeacherClient`` (a seam for tests); default one for ``[generation] teacher_url``.
    """

    def __init__(self, ws: Workspace, loaded: LoadedSamples, prompt: str, budget_s: float, *,
                 progress: Progress = no_progress, make_trainer: Callable[[str], Any] = default_trainer,
                 load_model: Callable[..., Any] = default_loader, teacher=None) -> None:
        self.ws, self.loaded, self.prompt, self.budget_s = ws, loaded, prompt, budget_s
        self.progress, self.make_trainer, self.load_model = progress, make_trainer, load_model
        self.cfg = ws.settings.generation
        self.teacher = teacher
        self.device = _device(ws)

    # ---- preparation -------------------------------------------------------------------------
    def prepare(self) -> tuple[TaskSpec, int, int, dict[str, list[Sample]]]:
        ws, store, seed = self.ws, self.ws.store, self.ws.settings.train.seed
        samples = list(self.loaded.samples)
        spec = infer_generation_spec(self.prompt, samples, model=self.cfg.model)
        unique = list({s.id: s for s in samples}.values())
        n_eval = min(self.cfg.eval_max, max(1, int(len(unique) * ws.settings.agent.eval_fraction)))
        held, pool = _split(unique, n_eval, seed)
        # eval-set prompts never reach training, even under another target
        seen = {s.prompt for s in held}
        overlap = [s for s in pool if s.prompt in seen]
        pool = [s for s in pool if s.prompt not in seen]
        n_dev = min(self.cfg.dev_max, max(1, int(len(pool) * ws.settings.agent.dev_fraction)))
        dev, train = _split(pool, n_dev, seed + 1)
        bad = unusable_targets(spec.output["kind"], train)
        removed = [s for s in train if s.id in bad]
        train = [s for s in train if s.id not in bad]
        if not train:
            raise DataError(f"{self.loaded.source} has {len(unique)} distinct samples: too few to hold out an eval "
                            "set and a dev split and still train; add data")
        # ~3 characters a token for English and identifiers (a label like 'card_payment_wrong_exchange_rate'
        # is one "word" but eight tokens), with half again for margin
        longest = max(len(s.target) for s in unique)
        max_new = self.cfg.max_new_tokens or int(min(512, max(8, 1.5 * longest / 3 + 2)))
        spec = replace(spec, output={**spec.output, "max_new_tokens": max_new})
        task = store.add(Task(name=spec.name, prompt=self.prompt, family="generation", spec=spec.to_dict()))
        run = store.add(Run(task_id=task.id, kind="coldstart", budget_s=self.budget_s, state={}))
        with store.session() as s:
            for q in self.loaded.quarantined:
                s.add(Quarantine(source=self.loaded.source, line_no=q.line_no, raw=q.raw, reason=q.reason))
            for x in removed:
                s.add(Removal(task_id=task.id, example_id=x.id, text=x.prompt[:2000], label=x.target[:200],
                              reason="unusable_target", detail=bad[x.id]))
        if self.loaded.quarantined:
            store.decide(run.id, "quarantine", f"{len(self.loaded.quarantined)} malformed lines quarantined "
                         f"from {self.loaded.source}")
        eval_id = content_hash(sorted(s.id for s in held))[:16]
        eval_address = ws.artifacts.put_json({"id": eval_id, "samples": _sample_rows(held)})
        if store.get(EvalSetRow, eval_id) is None:
            store.add(EvalSetRow(id=eval_id, task_id=task.id, artifact=eval_address, n=len(held),
                                 report={"kind": spec.output["kind"]}))
        store.update(Run, run.id, eval_set_id=eval_id)
        store.decide(run.id, "eval_set_frozen", f"eval set {eval_id}: {len(held)} samples (seeded content hash), "
                     "frozen before any training")
        datasets = {}
        for role, part in (("train", train), ("dev", dev)):
            address = ws.artifacts.put_jsonl(_sample_rows(part))
            did = f"{role}:{address[:24]}"
            if store.get(Dataset, did) is None:
                store.add(Dataset(id=did, task_id=task.id, role=role, source=self.loaded.source, artifact=address,
                                  n=len(part)))
            datasets[role] = address
        curation = {"source": len(samples), "exact_or_conflicting_duplicates": len(samples) - len(unique),
                    "unusable_targets": len(bad),
                    "eval": len(held), "eval_overlap": len(overlap), "near_duplicates": 0, "dev": len(dev),
                    "train": len(train), "label_issues": 0, "output_kind": spec.output["kind"],
                    "max_new_tokens": max_new}
        store.save_state(run.id, RunState(spec=spec, datasets=datasets, eval_artifact=eval_address,
                                          curation=curation))
        store.decide(run.id, "curation", f"{spec.output['kind']} task: removed duplicates, eval-prompt overlap and "
                     f"{len(bad)} training targets that cannot be right; decoding limit {max_new} tokens",
                     **curation)
        return spec, task.id, run.id, {"train": train, "dev": dev, "eval": held}

    # ---- the search ----------------------------------------------------------------------------
    def run(self) -> ColdStartResult:
        t0 = time.monotonic()
        clock = Clock(self.budget_s)
        spec, task_id, run_id, parts = self.prepare()
        kind, labels = spec.output["kind"], spec.labels
        store = self.ws.store
        recipe = "cot" if kind == "math" and sum("####" in s.target and "\n" in s.target.strip()
                                                for s in parts["train"]) >= 0.5 * len(parts["train"]) else "raw"
        teacher_note = ""
        if kind == "math" and recipe != "cot" and (self.teacher is not None or self.cfg.teacher_url):
            parts["train"], teacher_note = self._teacher_targets(run_id, parts["train"])
            recipe = "cot" if teacher_note else recipe
        base = self.load_model(spec.output["base"], device=self.device, max_new_tokens=spec.output["max_new_tokens"],
                               llama_cpp=self.cfg.llama_cpp)
        models: dict[int, Any] = {}
        # node 1: the base model, zero-shot, with the full instruction
        t_dec = time.monotonic()
        base_node = self._node(run_id, None, "base", "start", Pipeline(
            recipe=recipe, strategy="zero-shot", encoder=spec.output["base"], hparams={"instruction": "full"}),
            "the untrained model with the full instruction: what fine-tuning must beat")
        scored = self._score(spec, base, parts["dev"], "full", recipe)
        per_dev = (time.monotonic() - t_dec) / max(1, len(parts["dev"]))
        self._finish_node(run_id, base_node, spec, scored, None)
        models[base_node], scored_by = base, {base_node: scored}
        findings = diagnose(kind, scored)
        fast = getattr(base, "fast", None) is not None
        if kind == "label" or fast:
            # time one batch decoded the way a fine-tune will be: with transformers (not llama.cpp)
            # and, for labels, the short instruction (not the list of labels)
            slow = base
            if hasattr(base, "with_decoding"):
                slow = base.with_decoding()
                slow.fast = None
            probe = parts["dev"][:self.cfg.batch_size]
            t_probe = time.monotonic()
            self._score(spec, slow, probe, "short" if kind == "label" else "full", recipe)
            probed = (time.monotonic() - t_probe) / max(1, len(probe))
            per_dev = probed if fast else min(per_dev, probed)
        plan = [("sft", "sft", {}, self._why_sft(kind, recipe, findings) + teacher_note)]
        stop = "planned nodes done"
        for i, (name, strategy, extra, why) in enumerate(plan):
            decode_s = DECODE_RESERVE * per_dev * len(parts["dev"]) + DECODE_RESERVE * per_dev * len(parts["eval"])
            # on CPU more training is the best use of the budget: the fine-tune gets all of it; a
            # follow-up runs only on what an early finish leaves
            train_s = clock.left - decode_s
            if train_s < 30:
                stop = f"budget: {clock.left:.0f}s left, not enough to train '{name}'"
                break
            style = "short" if kind == "label" else "full"
            hp = {"instruction": style, "max_new_tokens": spec.output["max_new_tokens"], **extra}
            pipe = Pipeline(recipe=recipe, strategy=strategy, encoder=spec.output["base"], hparams=hp,
                            seed=self.ws.settings.train.seed)
            node_id = self._node(run_id, base_node, name, name, pipe, why)
            text = instruction(kind, labels, style)
            train = [present(s, kind, text, recipe) for s in parts["train"]]
            dev = [present(s, kind, text, recipe) for s in parts["dev"]]
            try:
                model, result = self.make_trainer(strategy).fit(
                    pipe, train, dev, FitContext(deadline=time.monotonic() + train_s, progress=self.progress,
                                                 device=self.device))
            except (RuntimeError, ValueError) as exc:  # one failed node does not end the run
                store.update(Node, node_id, status="failed", reason=f"{why}; failed: {exc}", finished_at=utcnow())
                store.decide(run_id, "node_failed", f"'{name}' failed: {exc}", node_id=node_id)
                continue
            scored = self._score(spec, model, parts["dev"], style, recipe)
            self._finish_node(run_id, node_id, spec, scored, result)
            models[node_id], scored_by[node_id] = model, scored
            if i == 0:
                follow = self._follow_up(result, clock.left - decode_s)
                if follow is not None:
                    plan.append(follow)
                else:
                    stop = f"'{name}' used the budget ({result.notes})"
        self._decode_moves(spec, run_id, parts, models, scored_by, clock, per_dev, recipe)
        winner, version = self._promote(spec, task_id, run_id, parts["eval"], models, recipe)
        nodes = [{"id": n.id, "name": n.name, "status": n.status, "pipeline": n.pipeline, "reason": n.reason,
                  "dev": n.dev_metrics, "eval": n.eval_metrics, "train_seconds": round(n.train_seconds, 1)}
                 for n in store.nodes(run_id)]
        run = store.get(Run, run_id)
        store.update(Run, run_id, status="done", spent_s=clock.spent, finished_at=utcnow())
        return ColdStartResult(task_id, run_id, spec, run.eval_set_id, nodes, winner, version, stop,
                                time.monotonic() - t0, store.run_state(run).curation)

    def _teacher_targets(self, run_id: int, train: list[Sample]) -> tuple[list[Sample], str]:
        """Worked solutions from the teacher for final-answer-only math data (see ``data.teacher``)."""
        from adaptloop.data.teacher import TeacherClient, teacher_cot

        client = self.teacher or TeacherClient(self.cfg.teacher_url, self.cfg.teacher_model)
        n = min(len(train), self.cfg.teacher_max)
        try:
            got = teacher_cot(train, client, limit=n, progress=self.progress("teacher", n))
        finally:
            if client is not self.teacher:
                client.close()
        store = self.ws.store
        stats = {"asked": got.asked, "accepted": got.accepted, "rejected": got.rejected, "failed": got.failed}
        store.decide(run_id, "teacher", f"teacher {client.url}: {got.accepted} of {got.asked} worked solutions "
                     f"kept (final answer = gold), {got.rejected} rejected, {got.failed} requests failed"
                     + (f"; first error: {got.errors[0]}" if got.errors else ""), **stats)
        if not got.accepted:
            return train, ""
        address = self.ws.artifacts.put_jsonl(_sample_rows(got.samples))
        run = store.get(Run, run_id)
        did = f"train:{address[:24]}"
        if store.get(Dataset, did) is None:
            store.add(Dataset(id=did, task_id=run.task_id, role="train", source=f"{self.loaded.source}+teacher",
                              artifact=address, n=len(got.samples)))
        store.save_state(run_id, store.run_state(run).with_dataset("train", address, teacher=stats))
        return got.samples, f"; {got.accepted} of its targets are the teacher's worked solutions"

    @staticmethod
    def _why_sft(kind: str, recipe: str, findings: list[Finding]) -> str:
        top = findings[0].summary if findings else "no failure found"
        how = "chain-of-thought targets (worked solutions)" if recipe == "cot" else "the data's targets"
        return f"base model: {top}; a full fine-tune on {how} teaches the task and its output format"

    @staticmethod
    def _follow_up(result, seconds_left: float) -> tuple[str, str, dict, str] | None:
        """A second fine-tune when the first left time: LoRA after over-fitting, more epochs after
        a planned end with dev loss still falling, else LoRA as a second strategy."""
        scores = [c["dev_score"] for c in result.curve if "dev_score" in c]
        if seconds_left < max(60.0, 0.5 * result.train_seconds) or len(scores) < 2:
            return None
        if scores[-1] < max(scores):
            return ("lora", "sft-lora", {"lr": 2e-4},
                    "dev loss rose before the end of the full fine-tune (over-fitting): LoRA changes fewer weights")
        if "planned" in result.notes:
            return ("more-epochs", "sft", {"epochs": 2 * max(result.chosen.get("epochs", 1.0), 1.0)},
                    "dev loss still falling when the planned epochs ended: train longer")
        return ("lora", "sft-lora", {"lr": 2e-4}, "a second strategy: LoRA of the same model")

    def _decode_moves(self, spec: TaskSpec, run_id: int, parts: dict[str, list[Sample]], models: dict[int, Any],
                      scored_by: dict[int, dict[str, Any]], clock: Clock, per_dev: float, recipe: str) -> None:
        """Decode-time interventions on the best node, in the order of its findings; each new node
        becomes the parent of the next when it is better on dev."""
        store, metric, kind = self.ws.store, spec.primary_metric, spec.output["kind"]
        done = [n for n in store.nodes(run_id) if n.status == "done" and n.id in models]
        if not done or not hasattr(models[done[0].id], "with_decoding"):
            return
        best = max(done, key=lambda n: (n.dev_metrics.get(metric, 0.0), -n.id))
        eval_s = DECODE_RESERVE * per_dev * len(parts["eval"])
        zero_shot = best.pipeline["strategy"] == "zero-shot"
        for move in decode_moves(kind, diagnose(kind, scored_by[best.id]), spec.output["max_new_tokens"],
                                 zero_shot=zero_shot):
            name, changes, cost, why = move
            if "shots" in changes:  # the number of worked examples becomes the examples themselves
                changes = {"shots": few_shot(parts["train"], changes["shots"], seed=self.ws.settings.train.seed,
                                             show=lambda x: present(x, kind, "", recipe))}
            if clock.left - eval_s < DECODE_RESERVE * cost * per_dev * len(parts["dev"]):
                store.decide(run_id, "skip", f"'{name}' skipped: {clock.left:.0f}s left, a dev decode costs "
                             f"about {cost * per_dev * len(parts['dev']):.0f}s", node_id=best.id)
                continue
            parent = models[best.id]
            model = parent.with_decoding(labels=spec.labels, **changes)
            pipe = Pipeline.from_dict(best.pipeline)
            hp = {**pipe.hparams, **{k: (len(v) if k == "shots" else v) for k, v in changes.items() if v}}
            node_id = self._node(run_id, best.id, name, name, replace(pipe, hparams=hp), why)
            style = pipe.hparams.get("instruction", "full")
            if cost == 0:  # a rescoring of the parent's outputs, no decoding
                outputs = [model.finish(r["output"]) for r in scored_by[best.id]["rows"]]
                scored = self._rescore(spec, parts["dev"], outputs, model)
            else:
                scored = self._score(spec, model, parts["dev"], style, recipe)
            self._finish_node(run_id, node_id, spec, scored, None)
            models[node_id], scored_by[node_id] = model, scored
            node = store.get(Node, node_id)
            if node.dev_metrics[metric] > best.dev_metrics.get(metric, 0.0):
                best = node
            else:
                store.decide(run_id, "rollback", f"'{name}' did not beat its parent on dev ({metric} "
                             f"{node.dev_metrics[metric]:.4f} vs {best.dev_metrics.get(metric, 0.0):.4f}); the "
                             "next move starts from the parent", node_id=node_id)

    @staticmethod
    def _rescore(spec: TaskSpec, samples: Sequence[Sample], outputs: Sequence[str], model) -> dict[str, Any]:
        tok = getattr(model, "tok", None)
        n_tokens = [len(tok(o, add_special_tokens=False)["input_ids"]) for o in outputs] if tok else []
        return score_outputs(spec.output["kind"], samples, outputs, labels=spec.labels, n_tokens=n_tokens,
                             max_new_tokens=getattr(model, "max_new_tokens", spec.output["max_new_tokens"]))

    def _score(self, spec: TaskSpec, model, samples: Sequence[Sample], style: str, recipe: str) -> dict[str, Any]:
        kind = spec.output["kind"]
        text = instruction(kind, spec.labels, style)
        shown = [present(s, kind, text, recipe) for s in samples]
        bar = self.progress("decode", len(shown))
        outputs = model.generate(shown, batch_size=self.ws.settings.generation.batch_size, progress=bar)
        return self._rescore(spec, samples, outputs, model)

    def _node(self, run_id: int, parent: int | None, name: str, move: str, pipe: Pipeline, why: str) -> int:
        node = self.ws.store.add(Node(run_id=run_id, parent_id=parent, name=name, intervention=move, reason=why,
                                      pipeline=pipe.to_dict(), move=move, proposer="doctrine"))
        self.ws.store.decide(run_id, "expand", f"'{name}': {why}", node_id=node.id, proposer="doctrine")
        return node.id

    def _finish_node(self, run_id: int, node_id: int, spec: TaskSpec, scored: dict[str, Any], result) -> None:
        store = self.ws.store
        metric = spec.primary_metric
        dev = {"n": scored["n"], metric: scored[metric], "format_ok": scored["format_ok"]}
        if result is not None:
            dev["loss"] = result.dev_metrics.get("loss")
        store.update(Node, node_id, status="done", dev_metrics=dev, finished_at=utcnow(),
                     curve=result.curve if result is not None else [],
                     chosen=result.chosen if result is not None else {},
                     train_seconds=result.train_seconds if result is not None else 0.0,
                     predictions_artifact=self.ws.artifacts.put_jsonl(scored["rows"]))
        findings = diagnose(spec.output["kind"], scored)
        with store.session() as s:
            for f in findings:
                s.add(FindingRow(run_id=run_id, node_id=node_id, kind=f.kind, summary=f.summary,
                                 severity=f.severity, evidence=f.evidence, suggests=list(f.suggests)))
        top = findings[0].summary if findings else "no finding"
        name = store.get(Node, node_id).name
        store.decide(run_id, "diagnosis", f"'{name}' dev {metric} {scored[metric]:.4f} (format ok "
                     f"{scored['format_ok']:.2f}); top: {top}", node_id=node_id)

    def _promote(self, spec: TaskSpec, task_id: int, run_id: int, held: Sequence[Sample], models: dict[int, Any],
                 recipe: str) -> tuple[dict[str, Any] | None, int | None]:
        store, metric = self.ws.store, spec.primary_metric
        done = [n for n in store.nodes(run_id) if n.status == "done" and n.id in models]
        if not done:
            return None, None
        best = max(done, key=lambda n: (n.dev_metrics.get(metric, 0.0), -n.id))
        style = best.pipeline["hparams"].get("instruction", "full")
        scored = self._score(spec, models[best.id], held, style, recipe)
        m = {"n": scored["n"], metric: scored[metric], "format_ok": scored["format_ok"]}
        staging = self.ws.artifacts.staging_dir()
        models[best.id].save(staging)
        _write_generation_meta(staging, spec, style, recipe)
        address = self.ws.artifacts.put_dir(staging)
        store.update(Node, best.id, eval_metrics=m, model_artifact=address)
        run = store.get(Run, run_id)
        store.decide(run_id, "select", f"'{best.name}' has the best dev {metric} "
                     f"({best.dev_metrics.get(metric, 0.0):.4f}) of {len(done)} nodes", node_id=best.id)
        mv = registry.register(store, task_id=task_id, node_id=best.id, artifact=address,
                               metrics={"eval": m, "dev": best.dev_metrics},
                               lineage={"run_id": run_id, "eval_set": run.eval_set_id,
                                        "datasets": store.run_state(run).datasets, "pipeline": best.pipeline},
                               reason=f"winner of generation run {run_id}")
        registry.promote(store, mv.id, first_model(metric, run.eval_set_id or "", len(held), m[metric]),
                         f"cold start: best on dev, {metric} {m[metric]:.4f} on frozen eval set {run.eval_set_id}")
        return {"node": best.name, "node_id": best.id, "dev": best.dev_metrics, "eval": m}, mv.id


def _write_generation_meta(folder, spec: TaskSpec, style: str, recipe: str) -> None:
    """How to present inputs to this model: kept with it, so eval and serving match training."""
    import json
    from pathlib import Path

    path = Path(folder) / "adaptloop_model.json"
    meta = json.loads(path.read_text(encoding="utf-8"))
    meta.update({"task_kind": spec.output["kind"], "instruction": instruction(spec.output["kind"], spec.labels, style),
                 "recipe": recipe, "labels": list(spec.labels)})
    path.write_text(json.dumps(meta, indent=1), encoding="utf-8")


def _device(ws: Workspace) -> str:
    setting = ws.settings.train.device
    if setting != "auto":
        return setting
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
