"""How presidio_pii annotates a street address, per split and template (no training).

    .venv/bin/python benchmarks/presidio_conventions.py

Faker's addresses begin with a building number before the street ("28245 Puruntie 82 Apt.
595 …"). Some templates annotate the whole address as one ``STREET_ADDRESS`` span, others cut
it into pieces — the leading number alone, the street, the flat, then ``GPE`` for the city and
country and ``ZIP_CODE`` or ``STREET_ADDRESS`` for the postcode. The same surface, two
annotations: which one a template uses cannot be learned from the text. This counts, per
split, the templates and entities of each convention, and the share of each split's entities
that sit in "pieces" templates. Writes benchmarks/results/presidio-conventions.json.
"""

from __future__ import annotations

import json
import os
import re
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATASETS = Path(os.environ.get("ADAPTLOOP_DATASETS", REPO.parent / "shared" / "datasets"))
NUMBER_ALONE = re.compile(r"^\d+$")  # "28245": the building number as its own span
NUMBER_STREET = re.compile(r"^\d+[ ,]+[^\d\W]")  # "6750 Koskikatu 25 …": one span from the number on


def convention(spans: list[dict]) -> str | None:
    addresses = [s["value"] for s in spans if s["label"] == "STREET_ADDRESS"]
    if any(NUMBER_ALONE.match(v) for v in addresses):
        return "pieces"
    if any(NUMBER_STREET.match(v) for v in addresses):
        return "whole"
    return None


def main() -> None:
    report = {}
    for split in ("train", "validation", "test"):
        rows = [json.loads(line) for line in (DATASETS / "presidio_pii" / f"{split}.jsonl").open(encoding="utf-8")]
        templates: dict[str, set] = defaultdict(set)
        entities: dict[str, int] = defaultdict(int)
        for r in rows:
            c = convention(r["spans"])
            if c:
                templates[c].add(r["template_id"])
                entities[c] += len(r["spans"])
        total = sum(len(r["spans"]) for r in rows)
        report[split] = {"rows": len(rows), "templates": len({r["template_id"] for r in rows}), "entities": total,
                         **{f"{c}_templates": len(templates[c]) for c in ("pieces", "whole")},
                         **{f"{c}_entities": entities[c] for c in ("pieces", "whole")},
                         "share_of_entities_in_pieces_templates": round(entities["pieces"] / max(1, total), 3)}
        print(f"{split:10s} {report[split]}")
    out = REPO / "benchmarks" / "results" / "presidio-conventions.json"
    out.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
