"""The generation family: what the one loop (``agent.coldstart``) needs to adapt a causal LM.

Preparation (``prepare_generation``): spec → frozen eval set (an ``EvalSet`` of samples) → dev and
train splits → targets that cannot be right leave the pool → for math data with final answers
only, worked solutions from a teacher LLM when ``[generation] teacher_url`` is set.

The plan (``GenerationPlan``, a ``Policy``), because every node costs minutes of decoding on CPU:

1. ``base``: the untrained causal LM with the full instruction (for a closed answer set it
   lists the answers). Its dev outputs are diagnosed (format vs content, truncation,
   repetition, extraction failures, length drift) and its decoding is timed.
2. ``sft``: a full fine-tune on the task's targets in the learned format. For math with
   worked solutions the targets are the chain of thought (the ``cot`` recipe). A closed answer
   set trains with the short instruction (the model learns the answers; the list would cost
   hundreds of tokens). It gets the whole remaining budget less the decoding it will need: on
   CPU, more training is the best use of time.
3. Only when the fine-tune ends early is there a follow-up: ``lora`` when it over-fitted (dev
   loss rose before the end), ``more-epochs`` when dev loss was still falling, else ``lora``.
4. Decode-time moves on the best node, each from a finding of its dev outputs, kept only when
   dev says so (same weights, no training): ``format-normalise``, ``prompt-template``,
   ``decoding``, ``more-tokens`` (``agent.generation_moves``).

Trials (``generation_trial``) fit through the ``Trainer`` protocol (``zero-shot``, ``sft``,
``sft-lora``) or apply a decode-time move to their parent, score dev and save the model with
how it presents its inputs. The loop selects on dev, scores the winner on the frozen eval set,
gates it against the best constant answer and promotes it, as for every family.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from adaptloop.agent.executor import Trial, TrialOutcome, limit_threads, save_model
from adaptloop.agent.generation_moves import decode_moves, few_shot, unusable_targets
from adaptloop.agent.policy import WAIT, Policy, Proposal, SearchState, Stop
from adaptloop.agent.predict import Generate
from adaptloop.data.generation import LoadedSamples, Sample, infer_kind
from adaptloop.data.prompts import instruction, present
from adaptloop.data.spec import slug
from adaptloop.diagnose.generation import METRIC, diagnose, score_outputs
from adaptloop.errors import DataError
from adaptloop.evaluate.rows import metrics_of
from adaptloop.search.graph import GraphNode
from adaptloop.store.db import Dataset, EvalSetRow, Node, Quarantine, Removal, Run, Task
from adaptloop.train import load_trained
from adaptloop.train.base import FitContext, Progress, no_progress
from adaptloop.types import EvalSet, Finding, NodeResult, Pipeline, RunState, TaskSpec, content_hash
from adaptloop.workspace import Workspace

log = logging.getLogger(__name__)

DECODE_RESERVE = 1.3  # decoding estimates are rough: keep this factor of them back
MIN_TRAIN_S = 30.0  # no fine-tune starts with less than this to train
TRAINED = ("zero-shot", "sft", "sft-lora")  # strategies that make weights (a decode move reuses its parent's)
Row = dict[str, Any]


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


def _sample_rows(samples: Sequence[Sample]) -> list[Row]:
    return [s.to_dict() for s in samples]


def samples_from_rows(rows: Sequence[Row]) -> list[Sample]:
    return [Sample.from_dict(r) for r in rows]


def _store_samples(ws: Workspace, task_id: int, role: str, samples: Sequence[Sample], source: str) -> str:
    address = ws.artifacts.put_jsonl(_sample_rows(samples))
    did = f"{role}:{address[:24]}"
    ws.store.add_once(Dataset(id=did, task_id=task_id, role=role, source=source, artifact=address, n=len(samples)))
    return address


# ---- preparation ------------------------------------------------------------------------------
def prepare_generation(ws: Workspace, loaded: LoadedSamples, prompt: str, budget_s: float, *,
                       progress: Progress = no_progress, teacher: Any = None) -> int:
    """Write the task, the frozen eval set, the splits and the curation of a generation run; returns its id."""
    store, seed, cfg = ws.store, ws.settings.train.seed, ws.settings.generation
    samples = list(loaded.samples)
    spec = infer_generation_spec(prompt, samples, model=cfg.model)
    unique = list({s.id: s for s in samples}.values())
    n_eval = min(cfg.eval_max, max(1, int(len(unique) * ws.settings.agent.eval_fraction)))
    held, pool = _split(unique, n_eval, seed)
    seen = {s.prompt for s in held}  # eval-set prompts never reach training, even under another target
    overlap = [s for s in pool if s.prompt in seen]
    pool = [s for s in pool if s.prompt not in seen]
    n_dev = min(cfg.dev_max, max(1, int(len(pool) * ws.settings.agent.dev_fraction)))
    dev, train = _split(pool, n_dev, seed + 1)
    bad = unusable_targets(spec.output["kind"], train)
    removed = [s for s in train if s.id in bad]
    train = [s for s in train if s.id not in bad]
    if not train:
        raise DataError(f"{loaded.source} has {len(unique)} distinct samples: too few to hold out an eval "
                        "set and a dev split and still train; add data")
    # ~3 characters a token for English and identifiers (a label like 'card_payment_wrong_exchange_rate'
    # is one "word" but eight tokens), with half again for margin
    longest = max(len(s.target) for s in unique)
    max_new = cfg.max_new_tokens or int(min(512, max(8, 1.5 * longest / 3 + 2)))
    spec = replace(spec, output={**spec.output, "max_new_tokens": max_new})
    task = store.add(Task(name=spec.name, prompt=prompt, family="generation", spec=spec.to_dict()))
    run = store.add(Run(task_id=task.id, kind="coldstart", budget_s=budget_s, state={}))
    with store.session() as s:
        for q in loaded.quarantined:
            s.add(Quarantine(source=loaded.source, line_no=q.line_no, raw=q.raw, reason=q.reason))
        for x in removed:
            s.add(Removal(task_id=task.id, example_id=x.id, text=x.prompt[:2000], label=x.target[:200],
                          reason="unusable_target", detail=bad[x.id]))
    if loaded.quarantined:
        store.decide(run.id, "quarantine",
                     f"{len(loaded.quarantined)} malformed lines quarantined from {loaded.source}")
    eval_set = EvalSet(samples=tuple(held))
    eval_address = ws.artifacts.put_json(eval_set.to_dict())
    store.add_once(EvalSetRow(id=eval_set.id, task_id=task.id, artifact=eval_address, n=len(held),
                              report={"kind": spec.output["kind"]}))
    store.update(Run, run.id, eval_set_id=eval_set.id)
    store.decide(run.id, "eval_set_frozen", f"eval set {eval_set.id}: {len(held)} samples (seeded content hash), "
                 "frozen before any training")
    datasets = {role: _store_samples(ws, task.id, role, part, loaded.source) for role, part in
                (("train", train), ("dev", dev))}
    kind = spec.output["kind"]
    recipe = "cot" if kind == "math" and sum("####" in s.target and "\n" in s.target.strip()
                                            for s in train) >= 0.5 * len(train) else "raw"
    curation = {"source": len(samples), "exact_or_conflicting_duplicates": len(samples) - len(unique),
                "unusable_targets": len(bad), "eval": len(held), "eval_overlap": len(overlap), "near_duplicates": 0,
                "dev": len(dev), "train": len(train), "label_issues": 0, "output_kind": kind,
                "max_new_tokens": max_new, "recipe": recipe}
    store.save_state(run.id, RunState(spec=spec, datasets=datasets, eval_artifact=eval_address, curation=curation))
    store.decide(run.id, "curation", f"{kind} task: removed duplicates, eval-prompt overlap and {len(bad)} training "
                 f"targets that cannot be right; decoding limit {max_new} tokens", **curation)
    if kind == "math" and recipe != "cot" and (teacher is not None or cfg.teacher_url):
        _teacher_targets(ws, run.id, train, loaded.source, teacher, progress)
    return run.id


def _teacher_targets(ws: Workspace, run_id: int, train: list[Sample], source: str, teacher: Any,
                     progress: Progress) -> None:
    """Worked solutions from the teacher for final-answer-only math data (see ``data.teacher``); the
    run's training data and recipe change only when the teacher got some right."""
    from adaptloop.data.teacher import TeacherClient, teacher_cot

    cfg, store = ws.settings.generation, ws.store
    client = teacher or TeacherClient(cfg.teacher_url, cfg.teacher_model)
    n = min(len(train), cfg.teacher_max)
    try:
        got = teacher_cot(train, client, limit=n, progress=progress("teacher", n))
    finally:
        if client is not teacher:
            client.close()
    stats = {"asked": got.asked, "accepted": got.accepted, "rejected": got.rejected, "failed": got.failed}
    store.decide(run_id, "teacher", f"teacher {client.url}: {got.accepted} of {got.asked} worked solutions "
                 f"kept (final answer = gold), {got.rejected} rejected, {got.failed} requests failed"
                 + (f"; first error: {got.errors[0]}" if got.errors else ""), **stats)
    if not got.accepted:
        return
    run = store.get(Run, run_id)
    address = _store_samples(ws, run.task_id, "train", got.samples, f"{source}+teacher")
    state = store.run_state(run).with_dataset("train", address, teacher=stats)
    note = f"; {got.accepted} of its targets are the teacher's worked solutions"
    store.save_state(run_id, replace(state, curation={**state.curation, "recipe": "cot", "teacher_note": note}))


@dataclass(frozen=True)
class GenerationData:
    """A prepared generation run's splits, as its trials and its plan read them."""

    spec: TaskSpec
    train: tuple[Sample, ...]
    dev: tuple[Sample, ...]
    n_eval: int
    recipe: str
    teacher_note: str = ""

    @property
    def kind(self) -> str:
        return self.spec.output["kind"]

    def shown(self, samples: Sequence[Sample], style: str) -> list[Sample]:
        text = instruction(self.kind, self.spec.labels, style)
        return [present(s, self.kind, text, self.recipe) for s in samples]


def generation_data(ws: Workspace, run: Run) -> GenerationData:
    state = ws.store.run_state(run)
    eval_set = ws.artifacts.get_json(state.eval_artifact)
    return GenerationData(
        spec=state.spec, train=tuple(samples_from_rows(ws.artifacts.get_jsonl(state.datasets["train"]))),
        dev=tuple(samples_from_rows(ws.artifacts.get_jsonl(state.datasets["dev"]))),
        n_eval=len(eval_set.get("samples", ())), recipe=state.curation.get("recipe", "raw"),
        teacher_note=state.curation.get("teacher_note", ""))


# ---- the plan ------------------------------------------------------------------------------------
class GenerationPlan:
    """The generation family's policy (see the module docstring): base → sft → a follow-up when the
    fine-tune ended early → decode-time moves on the best node."""

    name = "doctrine"

    def __init__(self, data: GenerationData, *, seed: int = 0, llama_cpp: bool = False) -> None:
        self.data, self.seed, self.llama_cpp = data, seed, llama_cpp
        self.skipped: list[str] = []

    def _pipeline(self, strategy: str, style: str, **extra: Any) -> Pipeline:
        spec = self.data.spec
        hp = {"instruction": style, "max_new_tokens": spec.output["max_new_tokens"], **extra}
        return Pipeline(recipe=self.data.recipe, strategy=strategy, encoder=spec.output["base"], hparams=hp,
                        seed=self.seed)

    def propose(self, state: SearchState) -> Proposal | Stop | None:
        if state.running():
            return WAIT
        nodes = {n.name: n for n in state.nodes}
        data = self.data
        if "base" not in nodes:
            return Proposal("base", self._pipeline("zero-shot", "full", llama_cpp=self.llama_cpp), None,
                            "the untrained model", "the untrained model with the full instruction: what "
                            "fine-tuning must beat", move="base", kind="baseline")
        base = nodes["base"]
        if base.status != "done":
            return Stop("the base model did not load or decode; see the node's error")
        per = float(base.chosen.get("decode_s", 1.0))
        decode_s = DECODE_RESERVE * per * (len(data.dev) + data.n_eval)
        style = "short" if data.kind == "label" else "full"
        train_s = state.seconds_left - decode_s
        if "sft" not in nodes:
            if train_s < MIN_TRAIN_S:
                return self._decode_or_stop(state, per, f"budget: {state.seconds_left:.0f}s left, not enough "
                                                        "to train 'sft'")
            return Proposal("sft", self._pipeline("sft", style), "base", "sft",
                            self._why_sft(base.findings, data.recipe) + data.teacher_note, move="sft",
                            reserve_s=decode_s)
        sft = nodes["sft"]
        if sft.status != "done":
            return self._decode_or_stop(state, per, "the fine-tune failed")
        if "lora" in nodes or "more-epochs" in nodes:
            return self._decode_or_stop(state, per, "planned nodes done")
        follow = self._follow_up(sft, train_s)
        if follow is not None:
            name, strategy, extra, why = follow
            return Proposal(name, self._pipeline(strategy, style, **extra), "base", name, why, move=name,
                            reserve_s=decode_s)
        return self._decode_or_stop(state, per, f"'sft' used the budget ({sft.chosen.get('notes', '')})")

    def _decode_or_stop(self, state: SearchState, per: float, why: str) -> Proposal | Stop:
        """The next decode-time move on the best node, from the findings of the best trained node."""
        done = [n for n in state.nodes if n.status == "done"]
        trained = [n for n in done if "of" not in n.pipeline.get("hparams", {})]
        if not trained:
            return Stop(why)
        top = _best(trained)
        best = _best(done)
        data = self.data
        eval_s = DECODE_RESERVE * per * data.n_eval
        names = {n.name for n in state.nodes}
        hp = dict(best.pipeline.get("hparams", {}))
        for name, changes, cost, reason in decode_moves(data.kind, list(top.findings),
                                                         data.spec.output["max_new_tokens"],
                                                         zero_shot=top.strategy == "zero-shot"):
            if name in names or name in self.skipped:
                continue
            if state.seconds_left - eval_s < DECODE_RESERVE * cost * per * len(data.dev):
                self.skipped.append(name)
                why += f"; '{name}' skipped ({state.seconds_left:.0f}s left, a dev decode costs about " \
                       f"{cost * per * len(data.dev):.0f}s)"
                continue
            if "shots" in changes:  # the number of worked examples becomes the examples themselves
                changes = {"shots": few_shot(data.train, changes["shots"], seed=self.seed,
                                             show=lambda x: present(x, data.kind, "", data.recipe))}
            shown = {k: (len(v) if k == "shots" else v) for k, v in changes.items() if v}
            pipe = Pipeline(recipe=best.pipeline["recipe"], strategy=best.strategy, encoder=best.pipeline["encoder"],
                            hparams={**{k: v for k, v in hp.items() if k not in ("of", "decode")}, **shown,
                                     "of": best.name, "decode": changes}, seed=self.seed)
            return Proposal(name, pipe, best.name, name, reason, move=name, kind="expand",
                            reserve_s=eval_s)
        return Stop(why)

    @staticmethod
    def _why_sft(findings: Sequence[Finding], recipe: str) -> str:
        top = findings[0].summary if findings else "no failure found"
        how = "chain-of-thought targets (worked solutions)" if recipe == "cot" else "the data's targets"
        return f"base model: {top}; a full fine-tune on {how} teaches the task and its output format"

    @staticmethod
    def _follow_up(sft: GraphNode, seconds_left: float) -> tuple[str, str, dict[str, Any], str] | None:
        """A second fine-tune when the first left time: LoRA after over-fitting, more epochs after
        a planned end with dev loss still falling, else LoRA as a second strategy."""
        scores = [c["dev_score"] for c in sft.curve if "dev_score" in c]
        fit_s = float(sft.chosen.get("fit_seconds", sft.seconds))
        if seconds_left < max(60.0, 0.5 * fit_s) or len(scores) < 2:
            return None
        if scores[-1] < max(scores):
            return ("lora", "sft-lora", {"lr": 2e-4},
                    "dev loss rose before the end of the full fine-tune (over-fitting): LoRA changes fewer weights")
        if "planned" in str(sft.chosen.get("notes", "")):
            return ("more-epochs", "sft", {"epochs": 2 * max(float(sft.chosen.get("epochs", 1.0)), 1.0)},
                    "dev loss still falling when the planned epochs ended: train longer")
        return ("lora", "sft-lora", {"lr": 2e-4}, "a second strategy: LoRA of the same model")


def _best(nodes: Sequence[GraphNode]) -> GraphNode:
    """The best on dev; a tie goes to the earlier node (the simpler one)."""
    return max(sorted(nodes, key=lambda n: n.order), key=lambda n: n.score)


# ---- trials --------------------------------------------------------------------------------------
_MODELS: dict[tuple[str, int, str], Any] = {}  # this process's models of the current run, by node name


def _cached(ws: Workspace, run_id: int, node: Node) -> Any:
    """A node's model: kept in this process since its trial, else loaded from its artifact."""
    key = (str(ws.root), run_id, node.name)
    if key not in _MODELS:
        if not node.model_artifact:
            raise RuntimeError(f"node '{node.name}' has no saved model")
        _MODELS[key] = load_trained(ws.artifacts.path(node.model_artifact))
    return _MODELS[key]


def _keep(ws: Workspace, run_id: int, name: str, model: Any) -> None:
    for key in [k for k in _MODELS if k[:2] != (str(ws.root), run_id)]:
        del _MODELS[key]  # another run's models: free their memory
    _MODELS[(str(ws.root), run_id, name)] = model


def generation_trial(trial: Trial) -> TrialOutcome:
    """Fit (or apply a decode-time move to the parent), score dev, time the decoding and save one node."""
    t0 = time.monotonic()
    ws = Workspace.open(Path(trial.root), store=trial.store)
    run = ws.store.get(Run, trial.run_id)
    data = generation_data(ws, run)
    spec, kind, pipe = data.spec, data.kind, Pipeline.from_dict(trial.pipeline)
    progress = trial.progress or no_progress
    style = pipe.hparams.get("instruction", "full")
    limit_threads(trial.threads)
    batch = ws.settings.generation.batch_size
    try:
        if "decode" in pipe.hparams:
            model, result, rows = _decode_move(ws, run, pipe, data, batch, progress)
        else:
            ctx = FitContext(deadline=time.monotonic() + (trial.deadline - time.time()), progress=progress,
                             device=trial.device)
            model, result = trial.make_trainer(pipe.strategy).fit(spec, pipe, data.shown(data.train, style),
                                                                 data.shown(data.dev, style), ctx)
            rows = None
    except (RuntimeError, ValueError) as exc:  # a failed pipeline is a result, not a crash
        log.warning("node %s failed: %s", trial.name, exc)
        return TrialOutcome(trial.node_id, "failed", error=str(exc)[:500], train_seconds=time.monotonic() - t0)
    text = instruction(kind, spec.labels, style)
    model.presentation, model.labels = {"task_kind": kind, "instruction": text, "recipe": data.recipe}, spec.labels
    t_dec = time.monotonic()
    if rows is None:
        rows = Generate(model).rows(data.dev, batch_size=batch, progress=progress, what=f"decode dev ({trial.name})")
    per = (time.monotonic() - t_dec) / max(1, len(data.dev))
    if pipe.strategy == "zero-shot" and "decode" not in pipe.hparams:
        per = _probe(model, data, per, batch)
    _keep(ws, run.id, trial.name, model)
    address = save_model(ws, model, lambda folder: _write_generation_meta(folder, spec, text, data.recipe))
    loss = {"loss": result.dev_metrics["loss"]} if "loss" in result.dev_metrics else {}
    return TrialOutcome(trial.node_id, "done", model_artifact=address,
                        predictions_artifact=ws.artifacts.put_jsonl(rows),
                        dev_metrics={**metrics_of(spec, rows), **loss},
                        curve=result.curve, notes=result.notes,
                        chosen={**result.chosen, "decode_s": per, "fit_seconds": result.train_seconds,
                                "notes": result.notes},
                        train_seconds=time.monotonic() - t0)


def _decode_move(ws: Workspace, run: Run, pipe: Pipeline, data: GenerationData, batch: int,
                 progress: Progress) -> tuple[Any, NodeResult, list[Row] | None]:
    """The parent's weights with other decode-time settings; a normalisation rescores the parent's outputs."""
    parents = [n for n in ws.store.nodes(run.id) if n.name == pipe.hparams["of"] and n.status == "done"]
    if not parents:
        raise RuntimeError(f"parent '{pipe.hparams['of']}' is not a finished node")
    parent = _cached(ws, run.id, parents[-1])
    changes = dict(pipe.hparams["decode"])
    model = parent.with_decoding(labels=data.spec.labels, **changes)
    rows = None
    if set(changes) == {"normalise"}:  # no decoding: the parent's outputs put into the format
        model.presentation = getattr(parent, "presentation", {})
        outputs = [model.finish(r["output"]) for r in ws.artifacts.get_jsonl(parents[-1].predictions_artifact)]
        rows = Generate(model).scored(data.dev, outputs)
    return model, NodeResult(dev_metrics={}, train_seconds=0.0, notes="decode-time move, no training"), rows


def _probe(model: Any, data: GenerationData, per_dev: float, batch: int) -> float:
    """Seconds per sample a fine-tune of this model will take to decode: one batch decoded with
    transformers (not llama.cpp) and, for labels, the short instruction (not the list of labels)."""
    fast = getattr(model, "fast", None) is not None
    if not (data.kind == "label" or fast) or not hasattr(model, "with_decoding"):
        return per_dev
    slow = model.with_decoding()
    slow.fast = None
    probe = data.shown(data.dev[:batch], "short" if data.kind == "label" else "full")
    t = time.monotonic()
    slow.generate(probe, batch_size=batch)
    probed = (time.monotonic() - t) / max(1, len(probe))
    return probed if fast else min(per_dev, probed)


def _write_generation_meta(folder: Path, spec: TaskSpec, text: str, recipe: str) -> None:
    """How to present inputs to this model: kept with it, so eval and serving match training."""
    path = Path(folder) / "adaptloop_model.json"
    meta = json.loads(path.read_text(encoding="utf-8"))
    meta.update({"task_kind": spec.output["kind"], "instruction": text, "recipe": recipe,
                 "labels": list(spec.labels)})
    path.write_text(json.dumps(meta, indent=1), encoding="utf-8")


# ---- the family ----------------------------------------------------------------------------------
class GenerationFamily:
    name = "generation"
    parallel = False  # a causal LM trains on every core
    improves = False  # production cycles for generation models are not built yet (traces are recorded)
    runner = staticmethod(generation_trial)

    def prepare(self, ws: Workspace, loaded: Any, prompt: str, budget_s: float, *, progress: Progress = no_progress,
                embed_fn: Callable[[list[str]], np.ndarray] | None = None, gold: Any = None,
                teacher: Any = None) -> int:
        if gold is not None:
            raise DataError("--eval-data is not read for generation tasks yet: the eval set is held out of --data")
        return prepare_generation(ws, loaded, prompt, budget_s, progress=progress, teacher=teacher)

    def data(self, ws: Workspace, run: Run) -> GenerationData:
        return generation_data(ws, run)

    def facts(self, ws: Workspace, run: Run, spec: TaskSpec, data: GenerationData, rows: Sequence[Node],
              device: str) -> dict[str, Any]:
        return dict(encoder=spec.output["base"], n_train=len(data.train), n_classes=len(spec.labels),
                    seed=ws.settings.train.seed, family=spec.family)

    def policy(self, ws: Workspace, run: Run, data: GenerationData, llm: Any = None) -> Policy:
        return GenerationPlan(data, seed=ws.settings.train.seed, llama_cpp=ws.settings.generation.llama_cpp)

    def diagnose(self, ws: Workspace, run: Run, spec: TaskSpec, data: GenerationData, node: Node, rows: list[Row],
                 out: TrialOutcome) -> list[Finding]:
        return diagnose(data.kind, {**metrics_of(spec, rows), "rows": rows})

    def score_eval(self, ws: Workspace, node: Node, eval_set: EvalSet, *, progress: Progress = no_progress,
                   what: str = "score winner on eval set") -> list[Row]:
        model = _cached(ws, node.run_id, node)
        return Generate(model).rows(eval_set.samples, batch_size=ws.settings.generation.batch_size,
                                    progress=progress, what=what)

    def baseline(self, spec: TaskSpec, eval_set: EvalSet, rows: list[Row]) -> tuple[str, list[Row]]:
        """Always answering the most frequent reference, scored like the model was."""
        targets = [s.target for s in eval_set.samples]
        top = max(sorted(set(targets)), key=targets.count) if targets else ""
        scored = score_outputs(spec.output["kind"], eval_set.samples, [top] * len(targets), labels=spec.labels)
        return f"always '{top[:40]}'", scored["rows"]


GENERATION = GenerationFamily()
