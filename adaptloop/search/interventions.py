"""Interventions: small pure transforms from a parent pipeline to a child pipeline.

Every transform returns a whole new ``Pipeline`` (or None when it does not apply to that
parent); trainers always start again from the base model, so a child never inherits a
parent's trained weights, only its choices. Each intervention belongs to a family the
doctrine ranks by regime: ``data`` (what to train on), ``model`` (what to train),
``hparams`` (how long and how fast), ``surgical`` (targeted at one failure pattern).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from adaptloop.data import recipes
from adaptloop.train.base import TAGGER_DEFAULTS
from adaptloop.train.packaged import base_size
from adaptloop.types import Finding, Pipeline

FINETUNE_DEFAULTS = {"epochs": 2.0, "lr": 1e-4, "head_lr": 2e-3}
LORA_DEFAULTS = {"epochs": 2.0, "lr": 1e-3, "head_lr": 2e-3}
TRAINED = ("finetune", "lora", "tagger", "tagger-lora")
TAGGERS = ("tagger", "tagger-lora")
TAGGER_LORA_DEFAULTS = {"epochs": 6.0, "lr": 1e-3, "head_lr": 1e-3}
# measured: an all-mpnet-base-v2 tagger at MiniLM's lr 1e-4 stayed at dev F1 0 (all O) for 1.5 epochs
# on WNUT-17; 3e-5 is the usual range for base-size encoders (not re-measured here: CPU time)
LARGER_TAGGER_LR = 3e-5
MAX_PAIRS = 5  # confusable pairs given hard negatives in one contrastive fine-tune
UPWEIGHT = 2.0  # class weight for under-predicted classes


@dataclass(frozen=True)
class Context:
    """What a transform may read besides the parent pipeline and the finding."""

    ladder: tuple[str, ...] = ()  # installed encoders, smallest first
    oos_label: str | None = None
    abstain_share: float | None = None  # of in-scope dev examples abstention may take (None: default)
    parent_model: str | None = None  # saved model folder of the parent
    parent_name: str = ""
    feature_encoder: str | None = None  # extraction: the encoder a frozen-tagger reads, when installed
    findings: tuple[Finding, ...] = field(default_factory=tuple)  # the parent's findings

    def labels_of(self, kind: str) -> list[list[str]]:
        return [list(f.target["labels"]) for f in self.findings if f.kind == kind and "labels" in f.target]

    def label_of(self, kind: str) -> list[str]:
        return [f.target["label"] for f in self.findings if f.kind == kind and "label" in f.target]


Transform = Callable[[Pipeline, Finding | None, Context], Pipeline | None]


def _hp(p: Pipeline, **changes: Any) -> Pipeline:
    return replace(p, hparams={**p.hparams, **changes})


def _recipe(op: str, add: bool) -> Transform:
    def apply(p: Pipeline, _f: Finding | None, _c: Context) -> Pipeline | None:
        ops = recipes.parse(p.recipe)
        if (op in ops) == add:
            return None
        return replace(p, recipe=recipes.name(ops | {op} if add else ops - {op}))
    return apply


def _to_trained(strategy: str, defaults: dict[str, Any]) -> Transform:
    def apply(p: Pipeline, _f: Finding | None, _c: Context) -> Pipeline | None:
        if p.strategy == "tagger" and strategy == "lora":  # extraction: LoRA of the tagger
            return replace(p, strategy="tagger-lora", hparams=dict(TAGGER_LORA_DEFAULTS))
        if p.strategy in TRAINED or p.strategy == "frozen-tagger":
            return None
        keep = {k: v for k, v in p.hparams.items() if k == "class_weight"}
        return replace(p, strategy=strategy, hparams={**defaults, **keep})
    return apply


def larger_encoder(p: Pipeline, _f: Finding | None, c: Context) -> Pipeline | None:
    """The next installed rung of the ladder, frozen (a larger encoder fine-tuned does not fit CPU budgets).

    A tagger stays a tagger (a frozen encoder under a tagging head is the ``frozen-tagger`` move); the
    doctrine skips it where fine-tuning that encoder is too slow (CPU).
    """
    if p.encoder not in c.ladder or c.ladder.index(p.encoder) + 1 >= len(c.ladder):
        return None
    rung = c.ladder[c.ladder.index(p.encoder) + 1]
    if p.strategy in TAGGERS:  # a base-size encoder wants a BERT-like learning rate (see LARGER_TAGGER_LR)
        lr = float(p.hparams.get("lr", TAGGER_DEFAULTS["lr"]))
        lr = lr if base_size(rung) is False else min(lr, LARGER_TAGGER_LR)  # an unknown rung: as a base-size one
        return replace(p, encoder=rung, hparams={**p.hparams, "lr": lr})
    return Pipeline(recipe=p.recipe, strategy="frozen", encoder=rung,
                    hparams={k: v for k, v in p.hparams.items() if k == "class_weight"}, seed=p.seed)


def frozen_tagger(p: Pipeline, _f: Finding | None, c: Context) -> Pipeline | None:
    """From a tagger: a head trained on the frozen ``feature_encoder``'s last hidden layers, on the same data
    (``train.frozen_tagger``): a base-size encoder's knowledge of names for the price of one forward pass."""
    if p.strategy not in TAGGERS or not c.feature_encoder or p.encoder == c.feature_encoder:
        return None
    return Pipeline(recipe=p.recipe, strategy="frozen-tagger", encoder=c.feature_encoder, hparams={}, seed=p.seed)


def lexical(p: Pipeline, _f: Finding | None, c: Context) -> Pipeline | None:
    """Word and character n-grams + logistic regression on the parent's data (from a frozen node on the
    default encoder; from a larger rung it would be the same model again).

    The encoder field keeps the parent's: the model runs no encoder, and serves at its speed or faster."""
    if p.strategy != "frozen" or p.encoder in c.ladder[1:]:
        return None
    return Pipeline(recipe=p.recipe, strategy="lexical", encoder=p.encoder,
                    hparams={k: v for k, v in p.hparams.items() if k == "class_weight"}, seed=p.seed)


def contrastive(p: Pipeline, f: Finding | None, c: Context) -> Pipeline | None:
    """Fine-tune with hard negatives of the confusable pairs in every batch + a SupCon loss."""
    pairs = [list(pr) for pr in c.labels_of("confusable_pair")][:MAX_PAIRS]
    if f and "labels" in f.target and list(f.target["labels"]) not in pairs:
        pairs = [list(f.target["labels"]), *pairs][:MAX_PAIRS]
    if not pairs:
        return None
    pairs = sorted(pairs)  # one pipeline per set of pairs, whichever finding proposed it
    base = p if p.strategy in TRAINED else replace(p, strategy="finetune",
                                                    hparams={**FINETUNE_DEFAULTS, **p.hparams})
    base = replace(base, hparams={k: v for k, v in base.hparams.items() if k != "C"})
    return _hp(base, pairs=pairs, contrastive=0.5)


def reweight(p: Pipeline, f: Finding | None, c: Context) -> Pipeline | None:
    labels = [f.target["label"]] if f and "label" in f.target else []
    labels += [lab for lab in c.label_of("under_prediction") if lab not in labels]
    current = p.hparams.get("class_weight") or {}
    if not labels or not isinstance(current, dict) or all(current.get(lab) for lab in labels):
        return None
    return _hp(p, class_weight={**current, **{lab: UPWEIGHT for lab in labels}})


def threshold(p: Pipeline, f: Finding | None, c: Context) -> Pipeline | None:
    """Per-class bias for over-predicted classes and abstention to the out-of-scope label."""
    if p.strategy in ("threshold", "refit") or not c.parent_model:
        return None
    labels = [f.target["label"]] if f and "label" in f.target else []
    labels += [lab for lab in c.label_of("over_prediction") if lab not in labels]
    if not labels and c.oos_label is None:
        return None
    return Pipeline(recipe=p.recipe, strategy="threshold", encoder=p.encoder,
                    hparams={"of": c.parent_model, "of_name": c.parent_name, "labels": labels,
                             "abstain": c.oos_label,
                             **({"share": c.abstain_share} if c.abstain_share is not None else {})}, seed=p.seed)


def span_threshold(p: Pipeline, f: Finding | None, c: Context) -> Pipeline | None:
    """Per-type confidence thresholds on the parent tagger, tuned on dev."""
    if p.strategy not in TAGGERS or not c.parent_model:
        return None
    return Pipeline(recipe=p.recipe, strategy="span-threshold", encoder=p.encoder,
                    hparams={"of": c.parent_model, "of_name": c.parent_name}, seed=p.seed)


def _scale(key: str, factor: float, floor: float) -> Transform:
    def apply(p: Pipeline, _f: Finding | None, _c: Context) -> Pipeline | None:
        if p.strategy not in TRAINED:
            return None
        defaults = TAGGER_DEFAULTS if p.strategy in TAGGERS else FINETUNE_DEFAULTS
        value = float(p.hparams.get(key, defaults[key]))
        return _hp(p, **{key: max(floor, round(value * factor, 6))})
    return apply


CLS, EXT, BOTH = ("classification",), ("extraction",), ("classification", "extraction")


@dataclass(frozen=True)
class Intervention:
    name: str
    family: str  # data | model | hparams | surgical
    apply: Transform
    hypothesis: str  # why it might help; {target} is filled from the finding
    tasks: tuple[str, ...] = CLS  # task families it applies to


CATALOGUE: tuple[Intervention, ...] = (
    Intervention("clean", "data", _recipe("clean", True),
                 "suspected label noise{target}: dropping what cleanlab flags gives a smaller, cleaner set", BOTH),
    Intervention("select-raw", "data", _recipe("clean", False),
                 "the cleaned set may have dropped hard but correct examples: try the large raw set", BOTH),
    Intervention("augment", "data", _recipe("augment", True),
                 "errors in a slice or a thin class{target}: typo, casing and truncation variants widen the data"),
    Intervention("finetune", "model", _to_trained("finetune", FINETUNE_DEFAULTS),
                 "the frozen encoder limits the head: fine-tune it (LP-FT)"),
    Intervention("lora", "model", _to_trained("lora", LORA_DEFAULTS),
                 "LoRA adapters change fewer weights and may generalise differently", BOTH),
    Intervention("lexical", "model", lexical,
                 "word and character n-grams read surface forms (rare words, codes, misspellings) an encoder "
                 "blurs: alone weaker, beside the encoder a member that errs on other examples"),
    Intervention("larger-encoder", "model", larger_encoder,
                 "a larger encoder separates classes the small one blurs{target}", BOTH),
    Intervention("contrastive", "surgical", contrastive,
                 "confusable classes{target}: hard negatives in every batch and a contrastive loss "
                 "pull the pair apart in embedding space"),
    Intervention("reweight", "surgical", reweight,
                 "a class is under-predicted{target}: weigh its examples up"),
    Intervention("threshold", "surgical", threshold,
                 "over-prediction or out-of-scope traffic{target}: tune class bias and abstention on dev"),
    Intervention("fewer-epochs", "hparams", _scale("epochs", 0.5, 0.5),
                 "dev peaked early and fell (overfit): train for half as long", BOTH),
    Intervention("lower-lr", "hparams", _scale("lr", 0.5, 1e-6),
                 "overfit or unstable: halve the encoder learning rate", BOTH),
    Intervention("more-epochs", "hparams", _scale("epochs", 1.5, 0.5),
                 "dev was still rising at the end (underfit): train longer", BOTH),
)
CATALOGUE += (
    Intervention("negatives", "data", _recipe("negatives", True),
                 "spurious entities{target}: entity-free clauses from the training text teach the model "
                 "what to leave alone (precision first)", EXT),
    Intervention("diversify", "data", _recipe("diversify", True),
                 "entities missed or confused{target}: the same contexts with other mentions of each type "
                 "make the model read the entity, not the template", EXT),
    Intervention("frozen-tagger", "model", frozen_tagger,
                 "a base-size encoder knows names the small one never saw in training: its frozen layers under a "
                 "trained head cost one forward pass, and err unlike a fine-tuned tagger", EXT),
    Intervention("span-threshold", "surgical", span_threshold,
                 "over-prediction{target}: per-type confidence thresholds tuned on dev drop low-confidence "
                 "spans", EXT),
)
BY_NAME = {i.name: i for i in CATALOGUE}


def describe_target(finding: Finding | None) -> str:
    if not finding:
        return ""
    t = finding.target
    if "labels" in t:
        return f" ({' ↔ '.join(t['labels'])})"
    if "label" in t:
        return f" ({t['label']})"
    if "slice" in t:
        return f" (slice '{t['slice']}')"
    return ""


def apply(name: str, parent: Pipeline, finding: Finding | None, ctx: Context) -> Pipeline | None:
    """The child pipeline of ``parent`` under intervention ``name`` (None: not applicable)."""
    return BY_NAME[name].apply(parent, finding, ctx)


def hypothesis(name: str, finding: Finding | None) -> str:
    text = BY_NAME[name].hypothesis.format(target=describe_target(finding))
    if finding:
        text += f" — finding: {finding.summary or finding.kind}"
    return text


def names(task: str | None = None) -> Sequence[str]:
    return [i.name for i in CATALOGUE if task is None or task in i.tasks]
