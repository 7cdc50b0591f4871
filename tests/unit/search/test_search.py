"""The experiment graph (UCT, rollback, merge, recovery), the interventions and the doctrine."""

from dataclasses import replace

import pytest

from adaptloop.agent.doctrine import REGIMES, TAGGER_FLOOR, DoctrinePolicy, cost, regime_of
from adaptloop.agent.policy import WAIT, Proposal, SearchState, Stop
from adaptloop.data.recipes import RecipeBook, merge, parse
from adaptloop.search import graph
from adaptloop.search import interventions as iv
from adaptloop.search.graph import GraphNode
from adaptloop.types import Example, Finding, Pipeline

ENC, BIG = "small-enc", "big-enc"


def node(name, score, parent=None, recipe="raw", strategy="frozen", order=0, findings=(), status="done",
         encoder=ENC, move="", hparams=None):
    return GraphNode(name=name, parent=parent, score=score, status=status, order=order, move=move,
                     pipeline={"recipe": recipe, "strategy": strategy, "encoder": encoder,
                               "hparams": hparams or {}, "seed": 0},
                     model_path=f"/models/{name}", findings=tuple(findings))


def state(nodes, left=3000.0, budget=3600.0, **kw):
    base = dict(nodes=tuple(nodes), seconds_left=left, budget=budget, encoder=ENC, n_train=2000,
                n_classes=20, ladder=(ENC, BIG))
    return SearchState(**{**base, **kw})


def finding(kind: str, severity: float = 0.0, summary: str = "", **kw) -> Finding:
    return Finding(kind=kind, summary=summary, severity=severity, target=kw.get("target", {}),
                   suggests=tuple(kw.get("suggests", ())))


PAIR = finding("confusable_pair", 0.4, "a ↔ b", target={"labels": ["a", "b"]},
               suggests=["contrastive", "larger-encoder"])


# -- graph --------------------------------------------------------------------------------
def test_exploration_decays_with_the_budget():
    assert graph.exploration(0.5, 3600, 3600) == 0.5
    assert graph.exploration(0.5, 1800, 3600) == 0.25
    assert graph.exploration(0.5, -5, 3600) == 0.0


def test_uct_prefers_unvisited_nodes_early_and_the_best_late():
    nodes = [node("root", 0.80, order=0), node("good", 0.90, "root", order=1),
             node("fresh", 0.85, "root", order=2)]
    nodes += [node(f"g{i}", 0.89 - i / 100, "good", order=3 + i) for i in range(3)]  # 'good' visited 3x
    nodes += [node("g0c", 0.80, "g0", order=9)]
    # early: exploration makes the unvisited 'fresh' win over the visited best
    assert graph.select(nodes, c=2.0) == "fresh"
    # late (c -> 0): pure exploitation, the best expandable node
    assert graph.select(nodes, c=0.0) == "good"


def test_dropped_and_terminal_nodes_are_never_expanded():
    nodes = [node("root", 0.80, order=0), node("worse", 0.70, "root", order=1),
             node("ens", 0.95, "root", strategy="ensemble", order=2)]
    assert graph.is_drop(nodes[1], nodes) and not graph.is_drop(nodes[2], nodes)
    assert set(graph.uct_scores(nodes, c=1.0)) == {"root"}


def test_rounds_without_gain_counts_since_the_last_improvement():
    nodes = [node("a", 0.8, order=0), node("b", 0.85, "a", order=1), node("c", 0.84, "b", order=2),
             node("d", 0.85, "b", order=3)]
    assert graph.rounds_without_gain(nodes) == 2
    assert graph.rounds_without_gain(nodes[:2]) == 0


def test_merge_combines_the_recipes_of_two_improving_branches():
    nodes = [node("root", 0.80, order=0), node("cl", 0.84, "root", recipe="clean", order=1),
             node("au", 0.83, "root", recipe="augment", order=2), node("x", 0.79, "root", recipe="raw", order=3)]
    a, b = graph.merge_candidates(nodes)
    assert (a.name, b.name) == ("cl", "au")
    assert merge("clean", "augment") == "augment+clean" and parse("curated") == {"clean"}
    assert graph.merge_candidates(nodes[:2]) is None


def test_recipe_book_materialises_compositions():
    raw = [Example(f"Where is my Card number {i} and the delivery status please", "a" if i % 2 else "b")
           for i in range(10)]
    book = RecipeBook(raw, raw[:2], {raw[0].id, raw[1].id}, seed=0)
    assert len(book["raw"]) == 10 and len(book["clean"]) == 8 and len(book["curated"]) == 8
    assert len(book["augment+clean"]) > 8 and {e.id for e in book["clean"]} <= {e.id for e in raw}
    assert len(book["train+dev"]) == 12
    with pytest.raises(ValueError, match="unknown data recipe"):
        book["shuffle"]


# -- interventions: each transforms the pipeline as documented -------------------------------
def test_interventions_transform_pipelines():
    frozen = Pipeline("raw", "frozen", ENC, {"C": 10.0})
    ctx = iv.Context(ladder=(ENC, BIG), oos_label="oos", parent_model="/m/p", parent_name="p",
                     findings=(PAIR, finding("under_prediction", target={"label": "c"}),
                               finding("over_prediction", target={"label": "d"})))
    c = iv.apply("contrastive", frozen, PAIR, ctx)
    assert c.strategy == "finetune" and c.hparams["pairs"] == [["a", "b"]] and c.hparams["contrastive"] > 0
    assert "C" not in c.hparams and c.encoder == ENC
    assert iv.apply("larger-encoder", frozen, None, ctx).encoder == BIG
    assert iv.apply("larger-encoder", Pipeline("raw", "frozen", BIG), None, ctx) is None
    assert iv.apply("clean", frozen, None, ctx).recipe == "clean"
    assert iv.apply("clean", Pipeline("clean", "frozen", ENC), None, ctx) is None
    assert iv.apply("select-raw", Pipeline("augment+clean", "frozen", ENC), None, ctx).recipe == "augment"
    assert iv.apply("augment", frozen, None, ctx).recipe == "augment"
    assert iv.apply("reweight", frozen, None, ctx).hparams["class_weight"] == {"c": iv.UPWEIGHT}
    t = iv.apply("threshold", frozen, None, ctx)
    assert t.strategy == "threshold" and t.hparams == {"of": "/m/p", "of_name": "p", "labels": ["d"],
                                                       "abstain": "oos"}
    ft = iv.apply("finetune", frozen, None, ctx)
    assert ft.strategy == "finetune" and ft.hparams == iv.FINETUNE_DEFAULTS
    assert iv.apply("fewer-epochs", ft, None, ctx).hparams["epochs"] == 1.0
    assert iv.apply("more-epochs", ft, None, ctx).hparams["epochs"] == 3.0
    assert iv.apply("lower-lr", ft, None, ctx).hparams["lr"] == 5e-5
    assert iv.apply("fewer-epochs", frozen, None, ctx) is None  # nothing to shorten
    assert frozen == Pipeline("raw", "frozen", ENC, {"C": 10.0})  # parents are never mutated
    assert {i.family for i in iv.CATALOGUE} == {"data", "model", "hparams", "surgical"}


# -- the doctrine ------------------------------------------------------------------------------
def test_regimes_are_one_table_in_order():
    assert [r.name for r in REGIMES] == ["drop", "noisy-labels", "precision-first", "low", "mid", "near-ceiling"]
    assert regime_of(0.5).name == "low" and regime_of(0.8).name == "mid" and regime_of(0.95).name == "near-ceiling"
    assert regime_of(0.5).prefer[0] == "data" and regime_of(0.8).prefer[0] == "model"
    assert regime_of(0.95).prefer[0] == "surgical"


def test_first_move_is_the_baseline_and_the_search_waits_for_it():
    pol = DoctrinePolicy()
    p = pol.propose(state([]))
    assert isinstance(p, Proposal) and p.kind == "baseline" and p.pipeline.strategy == "frozen"
    assert pol.propose(state([node("baseline", 0, status="running")])) is WAIT


def test_near_ceiling_diagnosis_targets_the_confusable_pair_first():
    pol = DoctrinePolicy()
    p = pol.propose(state([node("baseline", 0.92, findings=[PAIR])]))
    assert p.move == "contrastive" and p.pipeline.hparams["pairs"] == [["a", "b"]]
    assert "a ↔ b" in p.intervention and "near-ceiling" in p.reason and p.finding == "confusable_pair"


def test_a_confusable_pair_with_noisy_labels_is_cleaned_first():
    noise = finding("label_noise", 0.2, "a/b flagged", target={"labels": ["a", "b"]}, suggests=["clean"])
    assert regime_of(0.95, [PAIR, noise]).name == "noisy-labels" and regime_of(0.95, [PAIR]).name == "near-ceiling"
    oov = finding("slice", 0.6, target={"slice": "typos_or_oov"}, suggests=["augment"])
    p = DoctrinePolicy().propose(state([node("baseline", 0.93, findings=[PAIR, noise, oov])], n_label_issues=30))
    assert p.move == "clean" and "a ↔ b" in p.intervention and "noisy-labels" in p.reason


def test_low_score_fixes_the_data_first():
    noise = finding("label_noise", 0.1, target={"labels": ["a", "b"]}, suggests=["clean"])
    p = DoctrinePolicy().propose(state([node("baseline", 0.55, findings=[noise, PAIR])], n_label_issues=40))
    assert p.move == "clean" and p.pipeline.recipe == "clean"


def test_learned_outcomes_reorder_choices():
    pol = DoctrinePolicy()
    nodes = [node("baseline", 0.80)]  # mid: model family first; finetune and larger-encoder tie on rank
    plain = pol.propose(state(nodes))
    learned = {plain.move: (5, -0.02, 100.0)}  # it lost 2 points on average in past runs
    other = pol.propose(state(nodes, learned=learned))
    assert other.move != plain.move and other.detail["family"] == "model"


def test_rollback_after_a_drop_expands_the_best_node():
    nodes = [node("baseline", 0.80, order=0), node("finetune", 0.88, "baseline", strategy="finetune",
                                                  order=1, hparams=dict(iv.FINETUNE_DEFAULTS)),
             node("lr", 0.85, "finetune", strategy="finetune", order=2,
                  hparams={**iv.FINETUNE_DEFAULTS, "lr": 5e-5})]
    p = DoctrinePolicy(plateau_rounds=5).propose(state(nodes))
    assert p.parent == "finetune" and p.detail["rollback"] and p.reason.startswith("rollback")


def _as_node(p, name, score, order, status="done"):
    """The node a proposal became, scored."""
    pipe = p.pipeline
    return GraphNode(**{**node(name, score, p.parent, recipe=pipe.recipe, strategy=pipe.strategy, order=order,
                               move=p.move, hparams=pipe.hparams, status=status).__dict__,
                        "intervention": p.intervention})


def test_a_plateau_tries_a_recovery_in_each_family_then_stops():
    pol = DoctrinePolicy(plateau_rounds=2)
    nodes = [node("baseline", 0.80, order=0, findings=[PAIR]),
             node("finetune", 0.79, "baseline", strategy="finetune", order=1, move="finetune",
                  hparams=dict(iv.FINETUNE_DEFAULTS)),
             node("lora", 0.78, "baseline", strategy="lora", order=2, move="lora",
                  hparams=dict(iv.LORA_DEFAULTS))]
    s = dict(n_label_issues=10)
    p = pol.propose(state(nodes, **s))
    assert p.kind == "recovery" and p.intervention.startswith("recovery")
    assert p.detail["family"] != "model"  # the recent nodes were all model moves
    other = pol.propose(state([*nodes, _as_node(p, "rec", 0.0, 3, status="running")], **s))
    assert isinstance(other, Proposal) and other.kind != "recovery"  # one recovery at a time
    nodes.append(_as_node(p, "rec", 0.70, 3))
    again = pol.propose(state(nodes, **s))  # no gain: the budget is not spent, another family's recovery
    assert again.kind == "recovery" and again.detail["family"] not in {"model", p.detail["family"]}
    nodes.append(_as_node(again, "rec2", 0.75, 4))
    out = pol.propose(state(nodes, **s))
    assert out.kind == "ensemble"  # no family left: the plateau first consolidates the members it has
    nodes.append(node("ensemble", 0.79, "baseline", strategy="ensemble", order=5, hparams=out.pipeline.hparams))
    out = pol.propose(state(nodes, **s))
    assert isinstance(out, Stop) and out.reason.startswith("plateau") and "recovery moves tried" in out.reason


def test_target_reached_and_budget_and_unaffordable():
    pol = DoctrinePolicy()
    assert pol.propose(state([node("b", 0.99)], target=0.98)).reason.startswith("target reached")
    out = pol.propose(state([node("b", 0.8)], left=5.0))
    assert isinstance(out, Stop) and "no affordable" in out.reason


def test_ensemble_needs_diverse_members_and_refit_is_the_last_move():
    pol = DoctrinePolicy(plateau_rounds=9)
    nodes = [node("baseline", 0.80, order=0), node("big", 0.84, "baseline", encoder=BIG, order=1)]
    moves = {p.move for p in pol.graph_moves(state(nodes))}
    assert "ensemble" in moves
    same = [node("baseline", 0.80, order=0), node("c2", 0.81, "baseline", recipe="clean", order=1)]
    assert "ensemble" not in {p.move for p in pol.graph_moves(state(same))}
    nodes.append(node("lexical", 0.70, "baseline", strategy="lexical", move="lexical", order=2))
    ens = next(p for p in pol.graph_moves(state(nodes)) if p.move == "ensemble")
    nodes.append(node("ensemble", 0.75, "big", strategy="ensemble", order=3, hparams=ens.pipeline.hparams))
    p = pol.propose(state(nodes, left=25.0, refit_seconds=20.0))  # nothing else fits
    assert p.kind == "refit" and p.pipeline.hparams["of"] == "big" and "keep_trained" not in p.pipeline.hparams
    # a full refit (a fine-tune member) does not fit, its frozen members' does: they alone refit
    p = pol.propose(state(nodes, left=25.0, refit_seconds=400.0, refit_frozen_seconds=20.0))
    assert p.kind == "refit" and p.pipeline.hparams["keep_trained"] and "frozen members" in p.intervention
    out = pol.propose(state(nodes, left=25.0, refit_seconds=400.0, refit_frozen_seconds=40.0))
    assert not (isinstance(out, Proposal) and out.kind == "refit")


def test_contrastive_is_one_pipeline_whichever_pair_proposed_it():
    other = replace(PAIR, target={"labels": ["c", "d"]}, severity=0.2)
    ctx = iv.Context(findings=(PAIR, other))
    frozen = Pipeline("raw", "frozen", ENC)
    assert iv.apply("contrastive", frozen, PAIR, ctx) == iv.apply("contrastive", frozen, other, ctx)
    assert iv.apply("contrastive", frozen, other, ctx).hparams["pairs"] == [["a", "b"], ["c", "d"]]


def test_larger_encoders_are_not_fine_tuned_where_only_the_default_is_trainable():
    pol = DoctrinePolicy()
    big = node("big", 0.93, findings=[PAIR], encoder=BIG)
    moves = {(p.move, p.pipeline.strategy) for p in pol.candidates(big, state([big], trainable=(ENC,)))}
    assert not {m for m in moves if m[1] in iv.TRAINED}
    assert [m for m in pol.candidates(big, state([big])) if m.pipeline.strategy in iv.TRAINED]


def test_an_encoder_whose_fit_was_cut_for_trailing_is_not_trained_again():
    pol = DoctrinePolicy()
    base = node("baseline", 0.80, strategy="tagger", hparams=dict(iv.TAGGER_DEFAULTS))
    s = state([base], family="extraction")
    assert "larger-encoder" in {p.move for p in pol.candidates(base, s)}
    cut = replace(node("larger-encoder", 0.42, "baseline", strategy="tagger", encoder=BIG, move="larger-encoder",
                       hparams=dict(iv.TAGGER_DEFAULTS), order=1), chosen={"trailing": True})
    best = node("negatives", 0.85, "baseline", strategy="tagger", recipe="negatives", order=2,
                hparams=dict(iv.TAGGER_DEFAULTS))
    s = state([base, cut, best], family="extraction")
    assert not [p for p in pol.candidates(best, s) if p.pipeline.encoder == BIG]
    uncut = replace(cut, chosen={})  # merely worse, not cut: the larger encoder stays a candidate
    assert [p for p in pol.candidates(best, state([base, uncut, best], family="extraction"))
            if p.pipeline.encoder == BIG]


def test_a_plateau_consolidates_new_members_into_an_ensemble_before_stopping():
    pol = DoctrinePolicy(plateau_rounds=2)
    recovered = [GraphNode(**{**node(f"rec-{m}", 0.70, "baseline", recipe="clean", order=4 + i, move=m).__dict__,
                              "intervention": f"recovery: {m}"})
                 for i, m in enumerate(("clean", "contrastive", "more-epochs"))]  # every other family too
    nodes = [node("baseline", 0.80, order=0, findings=[PAIR]),
             node("big", 0.85, "baseline", encoder=BIG, order=1),
             node("ens", 0.86, "big", strategy="ensemble", order=2,
                  hparams={"members": ["/models/big", "/models/baseline"], "member_names": ["big", "baseline"]}),
             node("ft", 0.84, "baseline", strategy="finetune", order=3, move="finetune",
                  hparams=dict(iv.FINETUNE_DEFAULTS)),
             *recovered]
    p = pol.propose(state(nodes, n_label_issues=10))
    assert p.kind == "ensemble" and p.pipeline.hparams["member_names"] == ["big", "ft", "baseline"]
    assert p.reason.startswith("before stopping (plateau")


def test_a_cold_start_opens_with_the_best_fixed_recipe_then_its_ensemble():
    from adaptloop.agent.doctrine import OPENING

    pol = DoctrinePolicy()
    base = node("baseline", 0.80, findings=[PAIR])
    first = pol.propose(state([base], opening=True))
    assert first.kind == "opening" and first.move in OPENING["classification"] and first.parent == "baseline"
    assert first.reason.startswith("opening")
    running = node(first.name, 0.0, "baseline", status="running", move=first.move, order=1,
                   strategy=first.pipeline.strategy, encoder=first.pipeline.encoder, hparams=first.pipeline.hparams)
    assert first.move == "lexical"  # the cheapest move of the opening first
    second = pol.propose(state([base, running], opening=True))
    third = pol.propose(state([base, running, replace(running, name="second", move=second.move)], opening=True))
    assert second.kind == third.kind == "opening"
    assert [first.move, second.move, third.move] == list(OPENING["classification"])
    lex = node("lexical", 0.78, "baseline", strategy="lexical", move="lexical", order=1)
    ft = node("finetune", 0.83, "baseline", strategy="finetune", move="finetune", order=2,
              hparams=dict(iv.FINETUNE_DEFAULTS))
    big = node("larger-encoder", 0.84, "baseline", encoder=BIG, move="larger-encoder", order=3)
    last = pol.propose(state([base, lex, ft, big], opening=True))
    assert last.kind == "ensemble" and last.reason.startswith("opening, last move")
    # the best model of each kind: the n-gram model is a member although it scores lowest
    assert last.pipeline.hparams["member_names"] == ["larger-encoder", "finetune", "baseline", "lexical"]
    assert pol.propose(state([base])).kind != "opening"  # an improve cycle starts from its incumbent
    short = [base, lex]  # frozen mpnet's ~100 s and a fine-tune's do not fit: the opening is the n-gram model
    ens = pol.propose(state(short, opening=True, left=40.0))
    assert ens.kind == "ensemble" and ens.pipeline.hparams["member_names"] == ["baseline", "lexical"]


def test_a_model_too_slow_to_serve_must_leave_its_students_time():
    pol = DoctrinePolicy()
    base = replace(node("baseline", 0.80, findings=[PAIR]), texts_per_second=400.0)
    moves = {p.move for p in pol.candidates(base, state([base], min_throughput=150.0, student_s=3000.0))}
    assert "larger-encoder" not in moves and "finetune" in moves  # mpnet would need a student it has no time for
    assert "larger-encoder" in {p.move for p in pol.candidates(base, state([base], min_throughput=150.0))}
    ft = replace(node("ft", 0.82, "baseline", strategy="finetune", order=1), texts_per_second=200.0)
    s = state([base, ft], min_throughput=150.0)
    assert s.too_slow(Pipeline("raw", "ensemble", ENC, hparams={"member_names": ["baseline", "ft"]}))  # 133/s
    assert not s.too_slow(Pipeline("raw", "ensemble", ENC, hparams={"member_names": ["baseline"]}))
    assert s.too_slow(Pipeline("raw", "frozen", BIG)) and not s.too_slow(Pipeline("raw", "finetune", ENC))
    assert not state([base, ft]).too_slow(Pipeline("raw", "frozen", BIG))  # no limit set: nothing is too slow


def test_speeds_measured_beside_another_trial_count_as_timed_alone_for_what_to_build_for_serving():
    # banking77, 20m: a fine-tune measured at 154 texts/s beside another trial (195 alone) and the n-gram model
    # made a pair of 146 from the shared speeds; it was not built and a lone fine-tune served
    pol = DoctrinePolicy()
    base = replace(node("baseline", 0.80), texts_per_second=154.0)
    lex = replace(node("lexical", 0.78, "baseline", strategy="lexical", move="lexical", order=1),
                  texts_per_second=2846.0)
    ft = replace(node("finetune", 0.83, "baseline", strategy="finetune", move="finetune", order=2,
                      hparams=dict(iv.FINETUNE_DEFAULTS)), texts_per_second=154.0)
    big = replace(node("larger-encoder", 0.84, "baseline", encoder=BIG, move="larger-encoder", order=3),
                  texts_per_second=22.0)
    pair = Pipeline("raw", "ensemble", ENC, hparams={"member_names": ["finetune", "lexical"]})
    shared = state([base, lex, ft, big], min_throughput=150.0, workers=2)
    assert shared.too_slow(pair) and not shared.too_slow(pair, alone=True)
    assert state([base, lex, ft, big], min_throughput=150.0, workers=1).too_slow(pair, alone=True)  # timed alone
    assert shared.too_slow(Pipeline("raw", "ensemble", ENC, hparams={"member_names": ["finetune", "baseline"]}),
                           alone=True)  # two encoder passes stay too slow
    moves = [p for p in pol.graph_moves(shared) if p.kind == "ensemble"]
    assert [p.pipeline.hparams["member_names"] for p in moves] == [
        ["finetune", "lexical"], ["larger-encoder", "finetune", "baseline", "lexical"]]


# -- extraction -----------------------------------------------------------------------------
OVER = finding("over_prediction", 0.6, "'PER' is over-predicted", target={"label": "PER"},
               suggests=["negatives", "span-threshold", "clean"])


def test_extraction_starts_with_a_tagger_and_only_proposes_extraction_moves():
    first = DoctrinePolicy().propose(state([], family="extraction"))
    assert first.pipeline.strategy == "tagger" and first.pipeline.hparams["epochs"] > 0
    base = node("baseline", 0.80, strategy="tagger", findings=[OVER, PAIR], hparams=dict(iv.TAGGER_DEFAULTS))
    s = state([base], family="extraction", n_label_issues=5, trainable=(ENC,))
    moves = [p.move for p in DoctrinePolicy().candidates(base, s)]
    assert {"negatives", "span-threshold"} <= set(moves)
    assert not {"contrastive", "augment", "threshold", "finetune", "reweight"} & set(moves)
    assert "larger-encoder" not in moves  # a larger tagger is not trainable on this CPU
    # without that rule, a larger tagger competes on its size-scaled cost: affordable with time left ...
    roomy = state([base], family="extraction", left=3000.0)
    assert "larger-encoder" in [p.move for p in DoctrinePolicy().candidates(base, roomy)]
    # ... not with little
    tight = state([base], family="extraction", left=500.0)
    assert "larger-encoder" not in [p.move for p in DoctrinePolicy().candidates(base, tight)]
    top = DoctrinePolicy().propose(s)
    assert top.move in ("negatives", "span-threshold", "clean") and top.finding == "over_prediction"

    # taggers ensemble among themselves: the best of each encoder, each at least TAGGER_FLOOR of the best
    taggers = [base, node("b2", 0.81, "baseline", strategy="tagger-lora", order=1),
               node("cased", 0.72, "baseline", strategy="tagger", encoder=BIG, order=2),
               node("cased-2", 0.70, "baseline", strategy="tagger", encoder=BIG, order=3),
               node("broken", 0.30, "baseline", strategy="tagger", encoder="third-enc", order=4)]
    (ens,) = [m for m in DoctrinePolicy().graph_moves(state(taggers, family="extraction")) if m.kind == "ensemble"]
    assert ens.pipeline.hparams["member_names"] == ["b2", "cased"]  # one per encoder; 'broken' under the floor
    assert ens.pipeline.hparams["members"] == ["/models/b2", "/models/cased"]
    assert 0.72 >= TAGGER_FLOOR * 0.81 > 0.30
    # one that merely ranks lower alone is a candidate: the ensemble's fit keeps it if it raises dev F1
    weak = node("weak", 0.50, "baseline", strategy="tagger", encoder="third-enc", order=5)
    (ens,) = [m for m in DoctrinePolicy().graph_moves(state([*taggers, weak], family="extraction"))
              if m.kind == "ensemble"]
    assert ens.pipeline.hparams["member_names"] == ["b2", "cased", "weak"]
    assert not [m for m in DoctrinePolicy().graph_moves(state(taggers[:2], family="extraction"))
                if m.kind == "ensemble"]  # two taggers on one encoder mostly repeat each other


def test_extraction_transforms():
    tagger = Pipeline("raw", "tagger", ENC, dict(iv.TAGGER_DEFAULTS))
    ctx = iv.Context(ladder=(ENC, BIG), parent_model="/m/p", parent_name="p")
    assert iv.apply("negatives", tagger, None, ctx).recipe == "negatives"
    assert iv.apply("diversify", iv.apply("negatives", tagger, None, ctx), None, ctx).recipe == "diversify+negatives"
    thr = iv.apply("span-threshold", tagger, OVER, ctx)
    assert thr.strategy == "span-threshold" and thr.hparams["of"] == "/m/p"
    assert iv.apply("lora", tagger, None, ctx).strategy == "tagger-lora"
    big = iv.apply("larger-encoder", tagger, None, ctx)
    assert big.strategy == "tagger" and big.encoder == BIG
    assert iv.apply("more-epochs", tagger, None, ctx).hparams["epochs"] == 9.0
    assert set(iv.names("extraction")) >= {"negatives", "diversify", "span-threshold", "clean"}
    assert "contrastive" not in iv.names("extraction")


def test_a_frozen_tagger_reads_the_feature_encoder_opens_extraction_and_joins_the_tagger_ensemble():
    from adaptloop.agent.doctrine import OPENING

    tagger = Pipeline("raw", "tagger", ENC, dict(iv.TAGGER_DEFAULTS))
    ctx = iv.Context(ladder=(ENC, BIG), feature_encoder="mpnet")
    frozen = iv.apply("frozen-tagger", tagger, None, ctx)
    assert (frozen.strategy, frozen.encoder, frozen.recipe) == ("frozen-tagger", "mpnet", "raw")
    assert iv.apply("frozen-tagger", tagger, None, iv.Context(ladder=(ENC, BIG))) is None  # not installed: no move
    assert iv.apply("frozen-tagger", frozen, None, ctx) is None
    # no fine-tuning moves on it: its encoder stays frozen (a LoRA of it would be a classifier)
    assert all(iv.apply(m, frozen, None, ctx) is None for m in ("lora", "more-epochs", "lower-lr", "span-threshold"))
    assert iv.apply("clean", frozen, None, ctx).recipe == "clean"
    assert "frozen-tagger" in iv.names("extraction") and "frozen-tagger" not in iv.names("classification")

    base = node("baseline", 0.50, strategy="tagger", hparams=dict(iv.TAGGER_DEFAULTS))
    pol = DoctrinePolicy()
    s = dict(family="extraction", opening=True, feature_encoder="mpnet", n_train=3000)
    # the baseline is a tagger that trains for minutes: the opening starts beside it (it needs the pipeline,
    # not the model), the ensemble that closes it waits for it; an improve cycle (no opening) waits
    training = replace(base, score=0.0, status="running", model_path=None)
    beside = pol.propose(state([training], **s))
    assert beside.kind == "opening" and beside.move == "larger-encoder" and beside.parent == "baseline"
    assert "started while 'baseline' trains" in beside.reason and "regime" not in beside.reason
    both = [training, node("larger-encoder", 0.0, "baseline", strategy="tagger", encoder=BIG, status="running",
                           move="larger-encoder"),
            node("frozen-tagger", 0.52, "baseline", strategy="frozen-tagger", encoder="mpnet", move="frozen-tagger",
                 order=1)]
    assert pol.propose(state(both[:2], **s)).move == "frozen-tagger"
    meanwhile = pol.propose(state([both[0], replace(both[1], status="done", score=0.4, order=2), both[2]], **s))
    assert meanwhile.kind != "opening" and meanwhile.parent != "baseline"  # the other worker expands what finished
    assert pol.propose(state([training], family="extraction", feature_encoder="mpnet")) is WAIT
    first = pol.propose(state([base], **s))
    assert first.kind == "opening" and first.move == "larger-encoder" == OPENING["extraction"][0]
    running = node("larger-encoder", 0.0, "baseline", strategy="tagger", encoder=BIG, status="running",
                   move="larger-encoder", order=1)
    second = pol.propose(state([base, running], **s))
    assert second.kind == "opening" and second.move == "frozen-tagger" and second.pipeline.encoder == "mpnet"
    assert 30 < cost(second.pipeline, state([base], **s)) < 300  # a forward pass over 3,000 texts at ~35 a second
    # without the feature encoder the opening is the cased tagger alone, as before: the other worker expands
    other = pol.propose(state([base, running], family="extraction", opening=True))
    assert other.kind == "expand" and other.pipeline.strategy != "frozen-tagger"

    done = [base, replace(running, score=0.47, status="done"),
            node("frozen-tagger", 0.52, "baseline", strategy="frozen-tagger", encoder="mpnet", move="frozen-tagger",
                 order=2)]
    last = pol.propose(state(done, **s))
    assert last.kind == "ensemble" and last.pipeline.hparams["member_names"] == [
        "frozen-tagger", "baseline", "larger-encoder"]
    # once a frozen tagger ran, its features are in the run's store: another recipe of it costs the head
    ran = replace(done[2], seconds=180.0, chosen={"feature_seconds": 150.0})
    clean = Pipeline("clean", "frozen-tagger", "mpnet", {})
    assert cost(clean, state([*done[:2], ran], **s)) == 35.0
    assert cost(Pipeline("clean", "frozen-tagger", "other", {}), state([*done[:2], ran], **s)) > 30
    # an ensemble's trained members read dev once (the node's score reuses their probabilities), taggers and
    # classifiers alike: the same members cost the same to average either way, beyond 5 s of loading
    as_classes = {**s, "family": "classification"}
    assert cost(last.pipeline, state(done, **s)) == pytest.approx(cost(last.pipeline, state(done, **as_classes)))
    assert cost(last.pipeline, state(done, **s)) > 5


def test_precision_first_regime_only_for_entity_over_prediction():
    assert regime_of(0.8, [OVER]).name == "precision-first"
    cls_over = replace(OVER, suggests=("threshold", "reweight"))  # a classifier's over-predicted class
    assert regime_of(0.8, [cls_over]).name == "mid"
    assert regime_of(0.8, [replace(OVER, severity=0.1)]).name == "mid"


def test_one_large_tagger_at_a_time_with_a_lower_learning_rate():
    base = node("baseline", 0.60, strategy="tagger", hparams=dict(iv.TAGGER_DEFAULTS))
    big = iv.apply("larger-encoder", Pipeline.from_dict(base.pipeline), None, iv.Context(ladder=(ENC, BIG)))
    assert big.hparams["lr"] == iv.LARGER_TAGGER_LR < iv.TAGGER_DEFAULTS["lr"]
    cased = iv.apply("larger-encoder", Pipeline.from_dict(base.pipeline), None,
                     iv.Context(ladder=(ENC, "intfloat/multilingual-e5-small")))
    assert cased.encoder == "intfloat/multilingual-e5-small"  # as wide as MiniLM: its learning rate stays
    assert cased.hparams["lr"] == iv.TAGGER_DEFAULTS["lr"]
    running = node("big-1", 0.0, "baseline", strategy="tagger", encoder=BIG, status="running", order=1,
                   recipe="clean")
    s = state([base, running], family="extraction", left=3000.0)
    assert "larger-encoder" not in [p.move for p in DoctrinePolicy().candidates(base, s)]


def test_a_base_size_default_encoder_starts_its_tagger_at_the_base_size_learning_rate():
    for encoder, lr in ((ENC, iv.TAGGER_DEFAULTS["lr"]), ("all-mpnet-base-v2", iv.LARGER_TAGGER_LR),
                        ("intfloat/multilingual-e5-small", iv.TAGGER_DEFAULTS["lr"])):
        s = state([], family="extraction", encoder=encoder, ladder=(encoder,))
        first = DoctrinePolicy().propose(s)
        assert first.move == "baseline" and first.pipeline.hparams["lr"] == lr, (encoder, first.pipeline.hparams)


def test_a_baseline_whose_worker_died_is_tried_once_more_and_a_failed_one_stops_the_search():
    doctrine = DoctrinePolicy()
    crashed = replace(node("baseline", 0.0, status="failed"), crashed=True)
    again = doctrine.propose(state([crashed]))
    assert isinstance(again, Proposal) and again.name == "baseline-2" and again.move == "baseline"
    assert "died" in again.reason and again.pipeline.strategy == "frozen"
    twice = replace(node("baseline-2", 0.0, status="failed"), crashed=True)
    assert isinstance(doctrine.propose(state([crashed, twice])), Stop)  # not a third time
    assert isinstance(doctrine.propose(state([node("baseline", 0.0, status="failed")])), Stop)  # its code failed


def test_an_ensemble_with_no_time_for_its_student_keeps_the_members_that_serve_fast_enough_together():
    pol = DoctrinePolicy()
    base = replace(node("baseline", 0.80, findings=[PAIR], order=0), texts_per_second=170.0)
    lex = replace(node("lexical", 0.78, "baseline", strategy="lexical", move="lexical", order=1),
                  texts_per_second=3000.0)
    ft = replace(node("finetune", 0.82, "baseline", strategy="finetune", move="finetune", order=2,
                      hparams=dict(iv.FINETUNE_DEFAULTS)), texts_per_second=160.0)
    big = replace(node("big", 0.84, "baseline", encoder=BIG, order=3), texts_per_second=36.0)
    nodes = [base, lex, ft, big]
    roomy = [p for p in pol.graph_moves(state(nodes, min_throughput=150.0)) if p.move == "ensemble"]
    assert [p.pipeline.hparams["member_names"] for p in roomy] == [["finetune", "lexical"],  # what serves first
                                                                   ["big", "finetune", "baseline", "lexical"]]
    tight = [p for p in pol.graph_moves(state(nodes, min_throughput=150.0, student_s=3000.0)) if p.move == "ensemble"]
    assert tight[0].pipeline.hparams["member_names"] == ["finetune", "lexical"]  # 151 texts/s together
    trained = GraphNode(**{**node("ensemble", 0.85, "big", strategy="ensemble", order=4,
                                  hparams=roomy[1].pipeline.hparams).__dict__, "texts_per_second": 20.0})
    nxt = pol.propose(state([*nodes, trained], min_throughput=150.0))  # next: the fast pair, before anything else
    assert nxt.kind == "ensemble" and nxt.pipeline.hparams["member_names"] == ["finetune", "lexical"]
    assert "min_throughput" in nxt.reason


def test_an_ensemble_within_noise_of_the_best_node_is_preferred():
    """0.005 on dev accuracy; for an entity F1 over few gold entities, one standard error of the best's F1."""
    ens = node("ens", 0.844, strategy="ensemble", order=2)
    thr = replace(node("thr", 0.857, strategy="span-threshold", order=1), dev={"f1": 0.857, "n_gold": 240})
    assert graph.ensemble_slack(thr.dev) == pytest.approx((0.857 * 0.143 / 240) ** 0.5)
    assert graph.best([thr, ens]).name == "ens"  # 0.013 behind, a standard error is 0.023
    many = replace(thr, dev={"f1": 0.857, "n_gold": 24_000})
    assert graph.best([many, ens]).name == "thr"
    acc = replace(thr, dev={"accuracy": 0.857})
    assert graph.ensemble_slack(acc.dev) == graph.ENSEMBLE_SLACK and graph.best([acc, ens]).name == "thr"
