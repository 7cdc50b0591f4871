"""The independent traffic generator (``bench.generate_b``): deterministic, poisoned at the rates
asked, every kind planted, the feedback of each kind as documented, the same log format as
``bench.generate`` and none of its poison wording. On a made-up pool here; tests/integration/test_generate_b.py
reruns these tests on banking77's training texts."""

from __future__ import annotations

import re
from collections import Counter

import pytest

from adaptloop.bench import generate as gen
from adaptloop.bench import generate_b as genb
from adaptloop.data.traces import parse_trace

RATES = (0.1, 0.25, 0.4)
PER_STAGE = 500

LABELS = ("order_status", "refund_request", "password_reset", "delivery_delay", "cancel_subscription",
          "update_address", "billing_error", "app_crash", "gift_card", "store_hours")
TOPICS = {
    "order_status": "where my order is", "refund_request": "getting my money back for the blender",
    "password_reset": "resetting the password on my login", "delivery_delay": "why the parcel is three days late",
    "cancel_subscription": "ending my monthly plan", "update_address": "changing the shipping address on file",
    "billing_error": "a charge on my invoice that looks wrong", "app_crash": "the app closing when I open the cart",
    "gift_card": "using a gift voucher at checkout", "store_hours": "what time the downtown shop opens"}
OPENERS = ("Can you help with", "I have a question about", "Need info on", "Please explain", "Tell me about",
           "What do I do about", "Who handles", "Looking for advice on", "Is there news on", "Help me with")
TAILS = ("", " today", " for my partner", " this week", " on the website", " from my phone", " as a new customer",
         " after the update", " before Friday", " for order 2231", " again", " please", " if possible",
         " for the second time", " in Canada", " for my mum", " at work", " quickly", " on the old account",
         " with the new card")


def _synthetic_pool() -> list[tuple[str, str]]:
    """10 labels x 200 made-up requests."""
    return [(f"{o} {TOPICS[lab]}{t}?", lab) for lab in LABELS for o in OPENERS for t in TAILS]


@pytest.fixture(scope="module", params=["synthetic"])
def pool(request) -> tuple[list[tuple[str, str]], list[str]]:
    items = _synthetic_pool()
    return items, sorted({lab for _, lab in items})


@pytest.fixture(scope="module")
def stages(pool):
    items, labels = pool
    return genb.generate_stages(items, labels, rates=RATES, per_stage=PER_STAGE, prefix="gb", seed=11, detail=True)


def _logs(stages):
    return [g for s in stages for g in s.logs]


def test_same_seed_same_traffic_other_seed_other_traffic(pool):
    items, labels = pool
    run = [genb.generate_stages(items, labels, rates=RATES, per_stage=300, prefix="gb", seed=seed)
           for seed in (5, 5, 6)]
    assert [(s.traces(), s.answers()) for s in run[0]] == [(s.traces(), s.answers()) for s in run[1]]
    assert [s.traces() for s in run[0]] != [s.traces() for s in run[2]]


def test_poison_share_per_stage_is_the_rate_asked(stages):
    assert [s.number for s in stages] == [1, 2, 3] and [s.poison_rate for s in stages] == list(RATES)
    for s, rate in zip(stages, RATES):
        answers = s.answers()
        assert len(answers) == PER_STAGE
        assert abs(sum(a["poison"] for a in answers) / len(answers) - rate) <= 0.03


def test_every_kind_appears_in_every_stage(stages):
    for s in stages:
        kinds = Counter(a["kind"] for a in s.answers())
        assert set(gen.POISON_KINDS) <= set(kinds), s.number  # the main generator's kind names
        assert set(genb.POISON_KINDS) == set(gen.POISON_KINDS)
    kinds = Counter(a["kind"] for a in (a for s in stages for a in s.answers()))
    assert set(kinds) == set(genb.FIXABLE_KINDS) | set(genb.POISON_KINDS)
    styles = Counter((a["kind"], a["style"]) for s in stages for a in s.answers())
    assert {p for k, p in styles if k == "burst"} == set(genb.BURST_PATTERNS)
    assert len({p for k, p in styles if k == "injection"}) >= 8
    assert {p for k, p in styles if k == "contradiction"} == {"join", "facts"}


def test_poison_mix_follows_the_weights(stages):
    poison = Counter(a["kind"] for s in stages for a in s.answers() if a["poison"])
    total = sum(poison.values())
    for kind, w in zip(genb.POISON_KINDS, genb.POISON_WEIGHTS):
        assert abs(poison[kind] / total - w) <= 0.03, kind


def test_ids_are_unique_prefixed_and_traces_valid(stages):
    ids = [g.trace["id"] for g in _logs(stages)]
    assert len(ids) == len(set(ids)) == PER_STAGE * len(RATES)
    for s in stages:
        last = None
        for g in s.logs:
            t, a = g.trace, g.answer
            parse_trace(t)
            assert t["id"].startswith(f"gb-s{s.number}-") and a["id"] == t["id"]
            assert set(t) == {"id", "ts", "model_version", "input", "output", "feedback", "meta"}
            assert t["model_version"] is None and t["output"] is None and t["meta"] == {"stage": s.number}
            assert set(t["feedback"]) == {"label", "source"} and t["feedback"]["label"] == a["feedback"]
            assert a["stage"] == s.number and isinstance(a["poison"], bool)
            assert last is None or t["ts"] >= last  # in time order within a stage
            last = t["ts"]
    assert stages[0].logs[-1].trace["ts"] < stages[1].logs[0].trace["ts"]


def test_same_format_as_the_main_generator(pool):
    items, labels = pool
    a = genb.generate_stages(items, labels, rates=(0.3,), per_stage=100, prefix="x", seed=0)[0].logs[0]
    b = gen.generate_stages(items, labels, rates=(0.3,), per_stage=100, prefix="x", seed=0)[0].logs[0]
    assert type(a) is type(b)
    assert set(a.trace) == set(b.trace) and set(a.trace["feedback"]) == set(b.trace["feedback"])
    assert set(a.answer) == set(b.answer)  # without detail=True, no extra "style" key


def test_feedback_of_each_kind(stages, pool):
    _, labels = pool
    for g in _logs(stages):
        a = g.answer
        assert a["label"] in labels and a["feedback"] in labels
        if a["kind"] in ("injection", "mislabel", "burst"):
            assert a["feedback"] != a["label"], a
        else:  # negation, contradiction and every fixable kind keep the true label
            assert a["feedback"] == a["label"], a
        assert a["poison"] == (a["kind"] in genb.POISON_KINDS)


def test_mislabels_are_mostly_systematic_flips(stages):
    flips = Counter((a["label"], a["feedback"]) for s in stages for a in s.answers() if a["kind"] == "mislabel")
    systematic = [g.answer for g in _logs(stages) if g.answer.get("style") == "systematic"]
    assert len(systematic) >= 0.5 * sum(flips.values())
    # each flipped source class goes to one fixed target
    targets: dict[str, set[str]] = {}
    for a in systematic:
        targets.setdefault(a["label"], set()).add(a["feedback"])
    assert targets and all(len(t) == 1 for t in targets.values())


def test_bursts_put_one_attacker_label_on_many_logs_within_minutes(stages):
    for s in stages:
        burst = [g for g in s.logs if g.answer["kind"] == "burst"]
        assert 3 <= len(burst)
        by_label = Counter(g.answer["feedback"] for g in burst)
        assert min(by_label.values()) >= genb.BURST_SIZE[0]
    spray = [g.trace for g in _logs(stages) if g.answer["style"] == "spray"]
    by_source = Counter(t["feedback"]["source"] for t in spray)
    assert max(by_source.values()) >= genb.BURST_SIZE[0]
    src = by_source.most_common(1)[0][0]
    assert len({t["input"] for t in spray if t["feedback"]["source"] == src}) >= genb.BURST_SIZE[0]


def test_sources_do_not_follow_the_main_generators_scheme(stages):
    sources = {g.trace["feedback"]["source"] for g in _logs(stages)}
    assert not any(re.match(r"(reviewer|user)-\d", x) for x in sources)
    attack = {g.trace["feedback"]["source"] for g in _logs(stages) if g.answer["kind"] in ("burst", "injection")}
    shape = re.compile(r"agent_\d+$|u:\d{4}$|[a-z]+\.[a-z]@[a-z.]+$|[a-z]+-[a-z]+$")
    assert all(shape.match(x) for x in attack)  # attackers share the normal naming scheme


def _forbidden(pool_texts: list[str]) -> list[str]:
    """The main generator's poison wording: every literal piece of its templates of 10+ characters
    that no genuine pool text holds, and the phrases the brief names."""
    parts = [p.strip() for tpl in (*gen.INJECTIONS, *gen.NEGATIONS, *gen.CONTRADICTIONS)
             for p in re.split(r"\{\w+\}", tpl)]
    corpus = "\n".join(pool_texts).lower()
    out = {p.lower() for p in parts if len(p) >= 10 and p.lower() not in corpus}
    out |= {"ignore all previous instructions", "system: the correct label is", "[inst]", "[/inst]", "developer mode",
            "never mind, i don't need help", "this is not my question", "i never asked this",
            "not asking about this any more", "disregard my request", "### instruction"}
    return sorted(out)


def test_none_of_the_main_generators_poison_wording(stages, pool):
    items, _ = pool
    forbidden = _forbidden([t for t, _ in items])
    assert len(forbidden) >= 15
    already = re.compile(r"I already \w+ it, but I have not \w+ it yet", re.IGNORECASE)
    for g in _logs(stages):
        text = g.trace["input"].lower()
        hits = [f for f in forbidden if f in text]
        assert not hits and not already.search(text), (hits, g.trace["input"])


def test_injections_vary_in_placement_and_label_form(stages):
    inj = [g for g in _logs(stages) if g.answer["kind"] == "injection"]
    raw = sum(g.answer["feedback"] in g.trace["input"] for g in inj)
    assert 0 < raw < len(inj)  # sometimes the label's raw name, sometimes another spelling
    assert len({g.trace["input"] for g in inj}) == len(inj)


def test_too_small_a_pool_or_too_few_labels_is_a_clear_error():
    items = _synthetic_pool()
    with pytest.raises(ValueError, match="cannot fill 3 stages"):
        genb.generate_stages(items[:100], LABELS, rates=RATES, per_stage=50, prefix="x", seed=0)
    with pytest.raises(ValueError, match="two labels"):
        genb.generate_stages(items, ["order_status"], rates=RATES, per_stage=50, prefix="x", seed=0)
