from adaptloop.agent.doctrine import RULES, DoctrinePolicy, Facts, Proposal
from adaptloop.data.augment import augment, truncate, typo
from adaptloop.types import Example


def test_augment_is_deterministic_and_label_preserving():
    ex = [Example("I am still waiting on my card to arrive", "card_arrival"),
          Example("How do I top up with a cheque?", "top_up")]
    a, b = augment(ex, seed=0), augment(ex, seed=0)
    assert [e.text for e in a] == [e.text for e in b]
    assert a[:2] == ex and len(a) == 4
    assert all(v.label == o.label and v.source.startswith("augment:") for v, o in zip(a[2:], ex))
    assert truncate("one two three four five six seven eight nine ten") == \
        "one two three four five six seven"


def test_typo_changes_one_spot():
    import random

    t = typo("waiting for delivery", random.Random(1))
    assert t != "waiting for delivery" and abs(len(t) - len("waiting for delivery")) <= 1


def _facts(nodes=(), n_train=1000, issues=0, left=3600.0):
    return Facts(nodes=tuple(nodes), n_train=n_train, n_label_issues=issues, n_classes=10,
                 seconds_left=left, encoder="enc")


def _done(name, recipe, strategy, score):
    return {"name": name, "pipeline": {"recipe": recipe, "strategy": strategy},
            "status": "done", "score": score}


def test_doctrine_walks_its_table_in_order():
    pol = DoctrinePolicy()
    first = pol.propose(_facts())
    assert isinstance(first, Proposal) and first.name == "baseline"
    nxt = pol.propose(_facts([_done("baseline", "raw", "frozen", 0.8)], issues=12))
    assert nxt.name == "clean-data" and "12" in nxt.reason and nxt.parent == "baseline"
    nxt = pol.propose(_facts([_done("baseline", "raw", "frozen", 0.8),
                              _done("clean-data", "curated", "frozen", 0.85)], issues=12))
    assert nxt.name == "finetune" and nxt.pipeline.recipe == "curated"
    assert nxt.parent == "clean-data"
    small = pol.propose(_facts([_done("baseline", "raw", "frozen", 0.8)], n_train=200))
    assert small.name == "augment" and small.pipeline.recipe == "augmented"


def test_doctrine_stops_on_plateau_and_budget():
    pol = DoctrinePolicy(plateau_rounds=2)
    nodes = [_done("baseline", "raw", "frozen", 0.9), _done("clean-data", "curated", "frozen", 0.9),
             _done("augment", "augmented", "frozen", 0.85)]
    # no gain for two nodes, but fine-tuning is a lever not yet pulled
    assert pol.propose(_facts(nodes, n_train=200, issues=3)).name == "finetune"
    nodes += [_done("finetune", "raw", "finetune", 0.85), _done("lora", "raw", "lora", 0.8),
              _done("ensemble", "raw", "ensemble", 0.9)]
    assert pol.propose(_facts(nodes, n_train=200, issues=3)).startswith("plateau")
    out = pol.propose(_facts([_done("baseline", "raw", "frozen", 0.9)], left=5))
    assert out == "budget spent"


def test_failed_nodes_are_not_retried_but_interrupted_ones_are():
    pol = DoctrinePolicy()
    base = _done("baseline", "raw", "frozen", 0.9)
    failed = {**_done("finetune", "raw", "finetune", 0.0), "status": "failed"}
    assert pol.propose(_facts([base, failed])).name == "lora"
    interrupted = {**failed, "status": "interrupted"}
    assert pol.propose(_facts([base, interrupted])).name == "finetune"


def test_rule_names_are_unique():
    names = [r.name for r in RULES]
    assert len(names) == len(set(names))


def test_ensemble_comes_before_refit_and_lora():
    pol = DoctrinePolicy(plateau_rounds=9)
    nodes = [{**_done("baseline", "raw", "frozen", 0.90), "model_path": "a"},
             {**_done("finetune", "raw", "finetune", 0.92), "model_path": "b"},
             {**_done("larger-encoder", "raw", "frozen", 0.93), "model_path": "c"}]
    facts = Facts(nodes=tuple(nodes), n_train=1000, n_label_issues=0, n_classes=10,
                  seconds_left=3000.0, encoder="enc", refit_seconds=100.0)
    nxt = pol.propose(facts)
    assert nxt.name == "ensemble"
    assert nxt.pipeline.hparams["member_names"] == ["larger-encoder", "finetune", "baseline"]
    nodes.append({**_done("ensemble", "raw", "ensemble", 0.94), "model_path": "d"})
    facts = Facts(nodes=tuple(nodes), n_train=1000, n_label_issues=0, n_classes=10,
                  seconds_left=3000.0, encoder="enc", refit_seconds=100.0)
    assert pol.propose(facts).name == "refit"
