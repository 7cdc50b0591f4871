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


def test_probes_are_new_texts_made_of_the_originals_words_and_deterministic():
    from adaptloop.data.augment import probes

    texts = ["I am still waiting on my card to arrive", "How do I top up with a cheque?",
             "my transfer to a friend has not gone through yet", "hi"]
    a, b = probes(texts, seed=0, n=12), probes(texts, seed=0, n=12)
    assert a == b and 0 < len(a) <= 12
    assert not set(a) & set(texts)
    vocab = {w for t in texts for w in t.split()}
    assert all(set(p.split()) <= vocab and len(p.split()) >= 2 for p in a)
    assert probes(texts, seed=1, n=12) != a
    assert probes(["hi", "ok"], seed=0, n=5) == []
