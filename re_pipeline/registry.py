"""The model registry: ``models/registry.json`` records every trained model and which one is current.

Each pipeline role (``spert``, ``coref``, ``docred``) has at most one current
version. A newly trained model is registered with its dev metrics and becomes
current only if it beats the current one on the role's key metric, so a bad
training run never silently replaces a good model. Extraction runs record the
versions they used.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

#: The dev metric that decides promotion, per role (higher is better).
KEY_METRIC = {"spert": "relation_f1", "coref": "conll_f1", "docred": "f1"}
ROLES = tuple(KEY_METRIC)


@dataclass
class Registry:
    root: Path

    @property
    def path(self) -> Path:
        return self.root / "registry.json"

    def read(self) -> dict[str, Any]:
        if not self.path.exists():
            return {"current": {}, "models": {}}
        return json.loads(self.path.read_text())

    def _write(self, data: dict[str, Any]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
        os.replace(tmp, self.path)  # atomic: a reader never sees half a registry

    def register(self, role: str, name: str, metrics: dict[str, float], promote: str = "if-better") -> bool:
        """Record model ``root/name`` for ``role``; make it current per ``promote``
        ("if-better", "always" or "never"). Returns whether it became current."""
        if role not in KEY_METRIC:
            raise ValueError(f"unknown role {role!r}; roles: {', '.join(ROLES)}")
        if not (self.root / name).is_dir():
            raise FileNotFoundError(f"no model directory {self.root / name}")
        data = self.read()
        key = KEY_METRIC[role]
        if key not in metrics:
            raise ValueError(f"metrics of a {role} model need {key!r}; got {sorted(metrics)}")
        data["models"][name] = {
            "role": role,
            "metrics": metrics,
            "registered_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        current = data["current"].get(role)
        best = data["models"].get(current, {}).get("metrics", {}).get(key, float("-inf")) if current else float("-inf")
        promoted = promote == "always" or (promote == "if-better" and metrics[key] > best)
        if promoted:
            data["current"][role] = name
        self._write(data)
        return promoted

    def current(self, role: str) -> Path | None:
        name = self.read()["current"].get(role)
        return self.root / name if name else None

    def versions(self, pinned: tuple[str, ...] = ()) -> dict[str, str]:
        """Role -> model name: the current ones, with ``pinned`` names replacing their role's."""
        data = self.read()
        chosen = dict(data["current"])
        for name in pinned:
            if name not in data["models"]:
                raise KeyError(f"model {name!r} is not in {self.path}; known: {', '.join(sorted(data['models']))}")
            chosen[data["models"][name]["role"]] = name
        return chosen
