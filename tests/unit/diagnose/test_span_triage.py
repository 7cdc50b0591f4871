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
