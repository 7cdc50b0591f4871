"""Span triage's pure pieces: the main error of a prediction against the feedback, and mentions.
(The rules on planted presidio traces: tests/integration/test_span_triage.py.)"""

from adaptloop.diagnose.span_triage import main_error, mention


def test_main_error_and_mentions():
    gold = [(0, 4, "PERSON"), (10, 15, "GPE")]
    assert main_error([], gold) == "missed"
    assert main_error([(0, 4, "GPE"), (10, 15, "GPE")], gold) == "wrong_type"
    assert main_error([(0, 6, "PERSON"), (10, 15, "GPE")], gold) == "boundary"
    assert main_error(gold + [(20, 25, "PERSON"), (30, 33, "GPE")], gold) == "spurious"
    text = "word " * 10 + "Anna Berg" + " lives" * 10
    m = mention(text, (50, 59, "PERSON"))
    assert "[Anna Berg]" in m and len(m) < 80 and not m.startswith("ord")


def test_type_conflicts_judge_a_correction_against_the_mentions_of_its_own_type():
    """A clear type ('loc') and six the mention classifier cannot tell apart ('work', 'prod', ...): a loc
    tagged work is doubted; works and prods tagged work are not, however unlikely the classifier finds
    them (its own work mentions look that way out of fold); a type with too few mentions to rank is
    judged by the stricter bar."""
    import re

    import numpy as np

    from adaptloop.diagnose.span_triage import SpanView, type_conflicts

    rng = np.random.default_rng(0)
    blob = ("work", "prod", "song", "show", "game", "book")
    centre = {"loc": np.eye(8)[0] * 4, "rare": np.eye(8)[3] * 4, **{k: np.eye(8)[1] for k in blob}}
    noise = {}

    def embed(texts):
        out = []
        for t in texts:
            m = re.search(r"([a-z]+)(\d+)", t)
            key = m.group(0)
            if key not in noise:
                noise[key] = rng.normal(scale=0.6, size=8)
            out.append(centre[m.group(1)] + noise[key])
        return np.array(out)

    def row(word, typ):
        text = f"we saw {word} there"
        return text, ((7, 7 + len(word), typ),)

    train = [row(f"{k}{i}", k) for k in ("loc", *blob) for i in range(30)] + [row(f"rare{i}", "rare") for i in range(5)]
    asked = [row("loc900", "work"), row("loc901", "rare"), row("rare900", "rare")] + \
            [row(f"{k}9{i}", "work") for k in ("work", "prod") for i in range(10)]
    views = [SpanView(f"v{i}", text, (), spans) for i, (text, spans) in enumerate(asked)]
    found = type_conflicts(views, train, embed)
    assert set(found) == {0, 1}, found
    assert "lower than" in found[0] and "loc" in found[0]
