"""A JSON parser that refuses text no database can store: NUL characters (PostgreSQL) and
lone UTF-16 surrogates (valid JSON escapes, but not encodable as UTF-8), naming the field."""

from __future__ import annotations

import re
from typing import Any

from rest_framework.exceptions import ParseError, ValidationError
from rest_framework.parsers import JSONParser

_INVALID = re.compile("[\x00\ud800-\udfff]")


def _check(value: Any, path: str) -> None:
    if isinstance(value, str):
        if found := _INVALID.search(value):
            problem = "a NUL character" if found.group() == "\x00" else "a lone surrogate"
            field = path or "body"
            # The field's own key, as DRF names bad fields, and a sentence in ``detail``.
            raise ValidationError(
                {field: [f"contains {problem}"], "detail": f"{field!r} contains {problem}"}
            )
    elif isinstance(value, dict):
        for key, item in value.items():
            _check(key, path or "body")
            _check(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check(item, f"{path}[{index}]" if path else f"[{index}]")


class StrictJSONParser(JSONParser):
    def parse(self, stream: Any, media_type: Any = None, parser_context: Any = None) -> Any:
        data = super().parse(stream, media_type, parser_context)
        try:
            _check(data, "")
        except ValidationError:
            raise
        except RecursionError:
            raise ParseError("JSON nested too deeply") from None
        return data
