"""Answers render as sanitised Markdown; their raw HTML stays text; code is highlighted."""

from __future__ import annotations

from config.rendering import render_answer, render_markdown


def test_it_renders_markdown_lists_emphasis_and_tables_in_answers() -> None:
    html = render_answer("Steps:\n\n1. **mix**\n2. *bake*\n\n| a | b |\n|---|---|\n| 1 | 2 |")
    assert "<ol>" in html and "<strong>mix</strong>" in html and "<em>bake</em>" in html
    assert "<table>" in html and "<td>2</td>" in html


def test_it_highlights_a_fenced_code_block_with_prefixed_classes() -> None:
    html = render_answer("```python\ndef f(x):\n    return x < 1\n```")
    assert '<div class="codehilite"><pre>' in html
    assert '<span class="hl-k">def</span>' in html
    assert '<span class="hl-o">&lt;</span>' in html  # code stays escaped inside the block


def test_it_shows_raw_html_in_an_answer_as_text() -> None:
    html = render_answer('<script>alert("x")</script><img src=x onerror=alert(1)> <b>bold?</b>')
    assert "<script" not in html and "<img" not in html and "<b>" not in html
    assert "&lt;script&gt;" in html and "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "&lt;b&gt;bold?&lt;/b&gt;" in html


def test_it_keeps_no_class_of_the_page_and_no_script_url() -> None:
    html = render_answer("[click](javascript:alert(1)) and [ok](https://example.org)")
    assert "javascript:" not in html and 'href="https://example.org"' in html
    # Guidelines may hold HTML, but not the page's classes or handlers.
    guide = render_markdown(
        '<span class="btn btn-danger" onclick="x()">Hi</span> <div class="hl-k">x</div>'
    )
    assert 'class="btn' not in guide and "onclick" not in guide
    assert ">Hi</span>" in guide and 'class="">x</div>' in guide  # kept, without the class


def test_it_renders_empty_text_as_nothing() -> None:
    assert render_answer("") == "" and render_markdown("") == ""


def test_it_keeps_an_indented_answer_as_prose_not_code() -> None:
    # Markdown drops a paragraph's leading spaces; the page's "Show raw text" shows them.
    html = render_answer("    indented first line\nsecond")
    assert "<pre>" not in html and "<code>" not in html
    assert "<p>indented first line\nsecond</p>" in html
