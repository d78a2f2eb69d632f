"""Text as pages show it: Markdown through the nh3 sanitiser.

Two kinds of text, two rules:
- :func:`render_markdown` is for text admins write (queue guidelines): Markdown, raw HTML
  allowed, then sanitised.
- :func:`render_answer` is for model output and imported text: Markdown syntax renders
  (lists, emphasis, tables, fenced code with Pygments highlighting), but any raw HTML in the
  text is shown as text, escaped, never interpreted; the result is sanitised as well.
"""

from __future__ import annotations

import markdown as md
import nh3
from django.utils.safestring import SafeString, mark_safe
from pygments.token import STANDARD_TYPES

# Pygments' token classes carry this prefix, so a class in an answer can never be one of the
# page's own (``btn``, ``row``...): the sanitiser keeps only these.
CODE_CLASS_PREFIX = "hl-"
CODE_BLOCK_CLASS = "codehilite"

_ALLOWED_TAGS = {
    "p",
    "br",
    "strong",
    "em",
    "code",
    "pre",
    "ul",
    "ol",
    "li",
    "blockquote",
    "h1",
    "h2",
    "h3",
    "h4",
    "a",
    "hr",
    "table",
    "thead",
    "tbody",
    "tr",
    "th",
    "td",
    "div",
    "span",
}
_ALLOWED_CLASSES = {
    "div": {CODE_BLOCK_CLASS},
    "span": {CODE_CLASS_PREFIX + short for short in STANDARD_TYPES.values() if short},
}
_URL_SCHEMES = {"http", "https", "mailto"}


def _converter(*, raw_html: bool) -> md.Markdown:
    # A new converter per call: Markdown instances keep state and are not thread-safe.
    converter = md.Markdown(
        extensions=["fenced_code", "codehilite", "tables", "sane_lists"],
        extension_configs={
            "codehilite": {
                "css_class": CODE_BLOCK_CLASS,
                "guess_lang": False,
                "classprefix": CODE_CLASS_PREFIX,
            }
        },
    )
    if not raw_html:
        # Without these, "<b>" in the text stays the four characters "<b>" (escaped).
        converter.preprocessors.deregister("html_block")
        converter.inlinePatterns.deregister("html")
        # Models write code in fences; an answer that merely starts with four spaces is
        # prose with its indentation (kept by white-space: pre-wrap), not a code block.
        converter.parser.blockprocessors.deregister("code")
    return converter


def _sanitise(html: str) -> SafeString:
    clean = nh3.clean(
        html, tags=_ALLOWED_TAGS, allowed_classes=_ALLOWED_CLASSES, url_schemes=_URL_SCHEMES
    )
    return mark_safe(clean)


def render_markdown(text: str) -> SafeString:
    """Admin-written Markdown (guidelines): scripts, handlers and odd URLs never survive."""
    return _sanitise(_converter(raw_html=True).convert(text or ""))


def render_answer(text: str) -> SafeString:
    """Model output or imported text as Markdown, with any raw HTML in it shown as text."""
    return _sanitise(_converter(raw_html=False).convert(text or ""))
