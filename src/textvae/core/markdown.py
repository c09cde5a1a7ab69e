"""Markdown helpers shared by every layer that writes markdown (probe tables, reports)."""
from __future__ import annotations

# what a markdown table cell must not hold raw: the cell separator, HTML (``<unk>`` is not a tag), emphasis,
# code, links, headings, and the escape character itself
_MD_SPECIAL = {"\\": "\\\\", "|": "\\|", "<": "&lt;", ">": "&gt;", "*": "\\*", "_": "\\_", "`": "\\`",
               "[": "\\[", "]": "\\]", "#": "\\#"}


def md_escape(text: str) -> str:
    """Escape a sentence for a markdown table cell (an empty one shows as ∅, not as a missing cell)."""
    return "".join(_MD_SPECIAL.get(c, c) for c in text) if text else "∅"
