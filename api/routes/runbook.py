"""``GET /runbook``: the alert runbooks (``docs/runbook.md``) as a page.

Grafana's alert rules link to its sections (``/runbook#stale-feed-during-market-hours``),
so the runbook is one click away from a firing alert, wherever the stack runs.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

from fastapi import APIRouter, HTTPException
from fastapi.responses import HTMLResponse
from markdown_it import MarkdownIt

from api.errors import responses

router = APIRouter(tags=["docs"])

# The repository's docs/ beside the packages, or where the app image copies it.
CANDIDATES = (
    Path(__file__).resolve().parents[2] / "docs" / "runbook.md",
    Path("/opt/sentinel/docs/runbook.md"),
)
_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>Stock Sentinel runbook</title>
<style>body{{font-family:sans-serif;max-width:52rem;margin:2rem auto;padding:0 1rem;
line-height:1.5}}code,pre{{background:#f4f4f4}}pre{{padding:.5rem;overflow:auto}}</style>
</head><body>{body}</body></html>"""


def anchor(title: str) -> str:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to dashes."""
    return re.sub(r"[^\w\- ]", "", title.strip().lower()).replace(" ", "-")


@lru_cache(maxsize=1)
def render(path: Path) -> str:
    md = MarkdownIt("commonmark", {"html": False})
    tokens = md.parse(path.read_text(encoding="utf-8"))
    for i, token in enumerate(tokens):
        if token.type == "heading_open" and i + 1 < len(tokens):
            token.attrSet("id", anchor(tokens[i + 1].content))
    return _PAGE.format(body=md.renderer.render(tokens, md.options, {}))


@router.get("/runbook", response_class=HTMLResponse, responses=responses(404))
def runbook() -> HTMLResponse:
    """The alert runbooks: what each Grafana alert means and what to do about it."""
    for path in CANDIDATES:
        if path.is_file():
            return HTMLResponse(render(path))
    raise HTTPException(status_code=404, detail="the runbook is not installed with this API")
