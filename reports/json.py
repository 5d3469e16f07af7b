"""The JSON contract: {"db": ..., "runs": [ {id, name, status, energy_j, sources, ...}, ... ]}."""

from __future__ import annotations

import json
import math
from typing import Any

from footprint.core.model import Report

from .base import Renderer


def _clean(value: Any) -> Any:
    # NaN/inf are not JSON; an unknown figure is null, never a made-up number
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


class JsonRenderer(Renderer):
    name = "json"
    extensions = (".json",)

    def render(self, report: Report) -> str:
        return json.dumps(_clean(report.to_dict()), indent=2) + "\n"


RENDERERS = (JsonRenderer,)
