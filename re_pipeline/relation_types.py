"""The relation schemas the product ships: DocRED's 96 Wikidata relations and CoNLL04's 5.

One source for names, symmetry and inverses: the store seeds ``relation_types``
from here, and the merge stage folds symmetric and inverse duplicates with it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache

from re_pipeline.config import DATA_DIR

#: Wikidata relations that hold in both directions, and pairs that are each other's inverse
#: (from Wikidata's property constraints), keyed by the id that folds into the value.
WIKIDATA_SYMMETRIC = frozenset({"P26", "P3373", "P190"})
WIKIDATA_INVERSES = {"P150": "P131", "P527": "P361", "P1376": "P36", "P355": "P749", "P1366": "P1365", "P156": "P155"}


@dataclass(frozen=True)
class RelationType:
    id: str
    schema: str
    name: str
    description: str
    symmetric: bool
    inverse_of: str | None  # a relation that states the same fact with head and tail swapped


@lru_cache(maxsize=1)
def relation_types() -> dict[str, RelationType]:
    types = {}
    for pid, name in json.loads((DATA_DIR / "rel_info.json").read_text()).items():
        types[pid] = RelationType(
            pid, "wikidata", name, f"Wikidata property {pid}", pid in WIKIDATA_SYMMETRIC, WIKIDATA_INVERSES.get(pid)
        )
    for rid, info in json.loads((DATA_DIR / "conll04_types.json").read_text())["relations"].items():
        types[rid] = RelationType(rid, "conll04", info["verbose"], "", bool(info["symmetric"]), None)
    return types


def docred_relations() -> list[str]:
    """DocRED's relation ids in the order of rel_info.json (the label order of the DocRED models)."""
    return [t.id for t in relation_types().values() if t.schema == "wikidata"]
