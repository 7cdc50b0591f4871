"""Reading an input in parts: its sentences and clauses, the sides of a coordinator, the cue of a
writer taking the request back, the discourse marker that adds a second request, and the label
names written into it. Pure functions over text; the triage rules (``diagnose.steering``,
``diagnose.triage``) read each part with the reference model."""

from __future__ import annotations

import re
from collections.abc import Sequence

STOP = frozenset("""a an the i me my we our you your it its is are was were be been being am do does did
have has had to of in on at for from by with and or so that this these those there here what which who
how when where why can could would should will shall may might must just also already still yet even
please any some all very really""".split())
MIN_REST_WORDS = 3  # what a retraction or an added request leaves on either side keeps this many words
# coordinators that join two requests in one sentence ("... and ...", "... plus ..."): a part of the input
# is also each side of one, for the contradiction rule only
COORDINATOR = re.compile(r"\s*,?\s+(?:and|plus|also|as well as)\s+", re.IGNORECASE)
# the writer takes the request back or says it no longer stands: cancelling or disowning a message,
# saying the problem went away, or that no answer is needed. A linguistic category (retraction and
# resolution), not the wording of one generator; it only counts in a part of the input that does not
# itself carry the label (see ``steering.steering``), so "I don't need this card any more, cancel it" is a request
CANCEL_CUE = re.compile(
    r"\b(never ?mind|nvm|scratch (that|this)|forget (it|that|this|about (it|this|that)|(what )?i (said|asked|wrote))"
    r"|(ignore|disregard|withdraw|retract|cancel|drop|skip|close|delete|dismiss) (this|that|my|the)( (above|previous|"
    r"earlier|last|other|original|first))? ?(one|request|question|message|ticket|query|note|e-?mail|post)\b"
    r"|(ignore|disregard) (this|that|it)\b"
    r"|take (it|that) back|(skip|drop) (this|that|it)\W*$"
    r"|(no longer|do not|don't|dont) (need|want|require) (an? |any )?(answer|reply|response|help|assistance|action)"
    r"|no longer (relevant|applies|apply|an issue|a problem|necessary)"
    r"|not (relevant|applicable|an issue|a problem) (any ?more|now)|(doesn't|does not|no longer) apply"
    r"|no (reply|answer|response|action|help) (is )?(needed|necessary|required)"
    r"|(please )?(do not|don't|dont) (action|process|reply|respond|answer|bother)\b"
    r"|(is|are|was|got|all|it's|its|been) (resolved|solved|sorted)|(resolved|solved|sorted|fixed) (it|itself|now)\b"
    r"|(resolved|solved|sorted( out)?|fixed) (on|at) (my|our|your) (end|side)\b"
    r"|figured (it )?out|worked it out|all good( now)?|false alarm|my (mistake|bad)"
    r"|(sent|posted|wrote|written|typed|submitted) (this |it )?(by (mistake|accident)|in error)"
    r"|but i (do not|don't|dont|didn't)\W*$)",
    re.IGNORECASE)
# a sentence (or clause after a comma) that opens with an additive discourse marker adds a request of its
# own ("... Also, ...", "... Plus ...", "... In addition, ..."): when what comes before it and what comes
# after read as different classes (``steering.ADDED_ODDS``), the input makes two requests and one label
# cannot describe it
ADDITIVE = re.compile(
    r"(?:(?<=[.!?;:])\s+|,\s+)(?=(?:oh,? and|and also|also|plus|at the same time|in addition|additionally|besides"
    r"|moreover|furthermore|on top of that|another thing|one more thing|separately|while i'?m at it|p\.?s\.?)\b)",
    re.IGNORECASE)
SEGMENT_SPLIT = re.compile(r"[.!?;:\n]+|[<>\[\]{}|#\"`()=*]+|\s[-—–]+\s|(?:(?<=\s)|^)'|'(?=\s|$|[.,!?;:])")
CAMEL = re.compile(r"(?<=[a-z])(?=[A-Z])")


def words(text: str) -> list[str]:
    return re.findall(r"[a-z']+", text.lower())


def segments(text: str) -> list[str]:
    """The parts of an input: sentences, clauses set off by dashes, and text between markup."""
    return [p.strip() for p in SEGMENT_SPLIT.split(text) if p and re.search(r"[^\W\d_]{2,}", p)]


def label_parts(label: str) -> list[str]:
    """A label name split into its parts (``card_arrival``, ``AddToPlaylist``, ``card-arrival``)."""
    return [p for p in re.split(r"[_\-\s/.]+", CAMEL.sub(" ", label)) if p]


def label_words(label: str) -> set[str]:
    """The words of a label name (``card_arrival``, ``AddToPlaylist``, ``card-arrival``)."""
    ws = set(words(" ".join(label_parts(label))))
    return {w for w in ws if w not in STOP and len(w) > 2} or ws


def names_label(text: str, label: str) -> bool:
    """Whether ``text`` spells out the label: all of its words, or the name itself."""
    lw = label_words(label)
    return bool(lw) and (lw <= set(words(text)) or label.lower() in text.lower())


def parts(text: str) -> list[str]:
    """The segments of an input and, where a segment joins two requests with a coordinator, each side."""
    out = segments(text)
    for sg in list(out):
        sides = [p.strip(" ,") for p in COORDINATOR.split(sg)]
        if len(sides) > 1:
            out += [p for p in sides if re.search(r"[^\W\d_]{2,}", p) and p not in out]
    return out


def retraction_cue(text: str) -> str | None:
    m = CANCEL_CUE.search(text)
    return m.group(0).strip() if m else None


def taken_back(segs: Sequence[str]) -> tuple[str, list[tuple[str, str]]]:
    """The input without what takes it back, and each (part that takes it back, cue). A part runs
    from its cue to the end of its segment; what precedes the cue in the segment ("... Oh wait,
    false alarm") stays with the input, unless the cue is a "but" clause, which denies its own
    sentence ("they say I made a withdrawal, but I didn't") rather than take the message back."""
    kept, cued = [], []
    for sg in segs:
        m = CANCEL_CUE.search(sg)
        if m is None:
            kept.append(sg)
            continue
        before, part = sg[:m.start()].strip(" ,;-—–'\""), sg[m.start():]
        if len(words(before)) >= MIN_REST_WORDS and not part.lower().startswith("but"):
            kept.append(before)
        else:
            part = sg
        cued.append((part, m.group(0).strip()))
    return " ".join(kept), cued


def added_request(text: str) -> tuple[str, str] | None:
    """(what precedes, what follows) the first additive discourse marker that opens a sentence or
    clause of the input (``ADDITIVE``), when both sides are requests of their own."""
    for m in ADDITIVE.finditer(text):
        a, b = text[:m.start()].strip(), text[m.end():].strip()
        if len(words(a)) >= MIN_REST_WORDS and len(words(b)) >= MIN_REST_WORDS:
            return a, b
    return None

