"""``GET /openapi.json``: the OpenAPI 3.1 document of the HTTP API (``bridge/openapi.yml``).

Public: it describes routes, never data, and holds no secret. The version and the names of the
configured sources (the values ``/deliveries?source=`` accepts) are filled in from this process.
"""

from __future__ import annotations

import copy
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from flask import Blueprint, jsonify

from bridge import __version__
from bridge.app import current
from bridge.views.auth import public
from bridge.views.deliveries import UNKNOWN

bp = Blueprint("openapi", __name__)
DOCUMENT = Path(__file__).parent.parent / "openapi.yml"


@cache
def template() -> dict[str, Any]:
    return yaml.safe_load(DOCUMENT.read_text(encoding="utf-8"))


def build(sources: list[str]) -> dict[str, Any]:
    """The document for a bridge whose config has ``sources``."""
    filled = copy.deepcopy(template())
    filled["info"]["version"] = __version__
    filled["components"]["schemas"]["SourceFilter"] = {"enum": ["", *sources, UNKNOWN]}
    return filled


@bp.get("/openapi.json")
@public
def document():
    return jsonify(build(list(current().config.sources)))
