"""Request bodies, read on the event loop and parsed in the thread pool.

A 15 MiB run create takes a CPU for tens of milliseconds to parse, check and validate (and to
mask and serialize afterwards); done on the event loop, that stalls every other client, the
``/health`` probe included. So an endpoint reads the raw bytes (I/O, on the loop) and hands
them to :func:`decode` in the thread pool, which does what FastAPI would have done, and more:

- the JSON nesting depth is bounded before parsing (:mod:`raydrive.service.limits`);
- a NUL character or a lone surrogate anywhere is refused with 422 naming where
  (:mod:`raydrive.service.text`);
- an unknown field is refused with 422 naming it, as Stripe answers "Received unknown parameter"
  (the request models forbid extra fields), with the closest known name when there is one;
- every error is FastAPI's 422 shape ``{"detail": [{"loc", "msg", "type"}]}``, without the input.
"""

from __future__ import annotations

import difflib
import json
from typing import Any, TypeVar

from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError

from raydrive.service.limits import Limits, check_json_depth
from raydrive.service.models import MAX_REPORTS, Report, ReportBatch
from raydrive.service.text import BAD_TEXT_MSG, find_bad_text

__all__ = ["decode", "decode_batch", "decode_json", "validate"]

_M = TypeVar("_M", bound=BaseModel)


def _error(loc: tuple[Any, ...] | list[Any], msg: str, kind: str) -> RequestValidationError:
    return RequestValidationError([{"loc": tuple(loc), "msg": msg, "type": kind}])


def _parse(raw: bytes, limits: Limits) -> Any:
    check_json_depth(raw, limits)
    try:
        return json.loads(raw)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        position = getattr(exc, "pos", 0)
        raise _error(("body", position), "JSON decode error", "json_invalid") from None


def _check_text(value: Any, loc: tuple[Any, ...]) -> None:
    where = find_bad_text(value, loc)
    if where is not None:
        raise _error(where, BAD_TEXT_MSG, "string_invalid")


def decode_json(raw: bytes, limits: Limits) -> Any:
    """The JSON value of ``raw``; 422 for bad JSON, nesting over the limit, or bad text."""
    value = _parse(raw, limits)
    _check_text(value, ("body",))
    return value


def _unknown_field_msg(model: type[BaseModel], loc: tuple[Any, ...]) -> str:
    # Stripe: "Received unknown parameter: parms. Did you mean params?"
    name = str(loc[-1]) if loc else ""
    owner: Any = model
    for part in loc[:-1]:  # the model the field was found in, where it is one
        field = getattr(owner, "model_fields", {}).get(part) if isinstance(part, str) else None
        annotation = getattr(field, "annotation", None)
        owner = next(
            (a for a in getattr(annotation, "__args__", (annotation,)) if hasattr(a, "model_fields")), None
        )
        if owner is None:
            break
    known = list(getattr(owner, "model_fields", {})) if owner is not None else []
    close = difflib.get_close_matches(name, known, n=1)
    hint = (
        f"; did you mean {close[0]!r}?" if close else (f"; known fields: {', '.join(known)}" if known else "")
    )
    return f"unknown field {name!r}{hint}"


def validate(model: type[_M], value: Any, loc: tuple[Any, ...] = ("body",)) -> _M:
    """``value`` validated as ``model``; 422 naming each bad or unknown field (input not echoed)."""
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        errors = []
        for item in exc.errors(include_input=False, include_url=False):
            where = tuple(item["loc"])
            msg = _unknown_field_msg(model, where) if item["type"] == "extra_forbidden" else item["msg"]
            errors.append({"loc": (*loc, *where), "msg": msg, "type": item["type"]})
        raise RequestValidationError(errors) from None


def decode(raw: bytes, model: type[_M], limits: Limits, *, optional: bool = False) -> _M | None:
    """Parse and validate a request body (see the module docs). Blocks: call it in a thread.

    :param optional: an empty body is None rather than a 422.
    """
    if not raw.strip():
        if optional:
            return None
        raise _error(("body",), "Field required", "missing")
    return validate(model, decode_json(raw, limits))


def decode_batch(raw: bytes, limits: Limits) -> list[Report | RequestValidationError]:
    """The reports of a ``/reports`` batch, each validated on its own: a bad report (a NUL in
    one log line, a misspelt field) is its own 422, in its place, and the others still apply
    (Elasticsearch's ``_bulk``). The envelope itself (not an object, unknown fields, no list,
    too many reports) fails the whole request. Blocks: call it in a thread."""
    value = _parse(raw, limits)
    reports = value.get("reports") if isinstance(value, dict) else None
    if not isinstance(reports, list) or len(reports) > MAX_REPORTS or set(value) != {"reports"}:
        _check_text(value, ("body",))
        validate(ReportBatch, value)  # raises, naming what is wrong with the envelope
        raise _error(("body", "reports"), "a list of reports is required", "list_type")
    items: list[Report | RequestValidationError] = []
    for index, item in enumerate(reports):
        loc = ("body", "reports", index)
        try:
            _check_text(item, loc)
            items.append(validate(Report, item, loc))
        except RequestValidationError as exc:
            items.append(exc)
    return items
