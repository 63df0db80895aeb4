"""The model registry: ``models/registry.json`` records every trained model and which one is current.

Each pipeline role (``spert``, ``coref``, ``docred``) has at most one current
version. A newly trained model is registered with its dev metrics and the data
they were measured on, and becomes current only if it beats the current one on
the role's key metric over the same data, so a bad training run never silently
replaces a good model (scores over other data do not compare: then the newer
model wins). Registrations from parallel training tasks are serialized by a file
lock. Extraction runs record the versions they used.
"""

from __future__ import annotations

import fcntl
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
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

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """One writer at a time (two training tasks may finish together); readers need no lock."""
        self.root.mkdir(parents=True, exist_ok=True)
        with (self.root / "registry.lock").open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
            yield

    def _write(self, data: dict[str, Any]) -> None:
        with tempfile.NamedTemporaryFile("w", dir=self.root, suffix=".tmp", delete=False) as f:
            f.write(json.dumps(data, indent=2, sort_keys=True) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(f.name, self.path)  # atomic: a reader never sees half a registry

    def register(
        self,
        role: str,
        name: str,
        metrics: dict[str, float],
        promote: str = "if-better",
        evaluated_on: str = "",
    ) -> bool:
        """Record model ``root/name`` for ``role``; make it current per ``promote``
        ("if-better", "always" or "never"). ``evaluated_on`` names the data ``metrics`` were
        measured on: "if-better" compares only with a current model scored on the same data.
        Returns whether it became current."""
        if role not in KEY_METRIC:
            raise ValueError(f"unknown role {role!r}; roles: {', '.join(ROLES)}")
        if not (self.root / name).is_dir():
            raise FileNotFoundError(f"no model directory {self.root / name}")
        key = KEY_METRIC[role]
        if key not in metrics:
            raise ValueError(f"metrics of a {role} model need {key!r}; got {sorted(metrics)}")
        with self._locked():
            data = self.read()
            data["models"][name] = {
                "role": role,
                "metrics": metrics,
                "evaluated_on": evaluated_on,
                "registered_at": datetime.now(UTC).isoformat(timespec="seconds"),
            }
            current = data["models"].get(data["current"].get(role, ""))
            comparable = current is not None and current.get("evaluated_on", "") == evaluated_on
            best = current["metrics"].get(key, float("-inf")) if comparable else float("-inf")
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
