"""Generate the JSON Schemas in ``schemas/`` from the pydantic models.

``orchestrator schemas`` writes them; ``orchestrator schemas --check`` (and a unit
test) reports any committed file that has drifted from the models.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from orchestrator.events import FAMILIES, family_json_schema
from orchestrator.records import OUTBOUND_MODELS

ROOT = Path(__file__).resolve().parents[2] / "schemas"


def _outbound(model: Any) -> Callable[[], dict[str, Any]]:
    def make() -> dict[str, Any]:
        schema = model.model_json_schema()
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        return schema

    return make


def all_schemas() -> dict[str, Callable[[], dict[str, Any]]]:
    """Relative path under schemas/ -> function producing the schema."""
    from orchestrator.designer.simulate import record_json_schema
    from orchestrator.journey.facts import facts_json_schema
    from orchestrator.journey.model import journey_json_schema
    from orchestrator.journey.scores import scores_json_schema
    from orchestrator.pressure.policy import policy_json_schema

    out: dict[str, Callable[[], dict[str, Any]]] = {f"events/{family}.json": partial(family_json_schema, family) for family in FAMILIES}
    out.update({f"outbound/{name}.json": _outbound(model) for name, model in OUTBOUND_MODELS.items()})
    out["journey.json"] = journey_json_schema
    out["pressure.json"] = policy_json_schema
    out["profile.json"] = facts_json_schema
    out["scores.json"] = scores_json_schema
    out["simulate-record.json"] = record_json_schema
    return out


def render(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def write_schemas(check: bool = False, root: Path = ROOT) -> list[Path]:
    """Write (or with ``check`` only compare) every schema; returns the files that differed."""
    differing: list[Path] = []
    for rel, make in all_schemas().items():
        path = root / rel
        text = render(make())
        if not path.exists() or path.read_text() != text:
            differing.append(path)
            if not check:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text)
    return differing
