"""Validation primitives the job spec and the workloads' configs share (a leaf: imports no model).

``spec`` and ``workloads.hf_config`` both build on these; keeping them here is what lets the spec
import the workloads without the workloads importing the spec back.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BeforeValidator


def whole_number(v: Any) -> Any:
    # JSON Schema's "integer" includes 3.0 (the value, not the spelling), so it is one; the
    # models are strict otherwise, so true and "3" stay refused.
    if isinstance(v, float) and v.is_integer():
        return int(v)
    return v


#: the validator of ``JsonInt``. A bounded one that may be null is ``Annotated[int, Field(ge=1),
#: WholeNumber] | None``: the bounds sit inside, before the validator; outside, pydantic writes them into
#: the JSON schema as invalid ``ge``/``le`` keywords. (Spelled out where used: a type checker accepts no
#: function call in an annotation.)
WholeNumber = BeforeValidator(whole_number)
#: an integer as JSON Schema means it: 3 or 3.0, not true or "3" (use in strict models)
JsonInt = Annotated[int, WholeNumber]


def describe_errors(errors: list[Any], default_loc: str = "spec") -> tuple[str | None, list[str]]:
    """Pydantic's errors as ``(first field, ["field: problem", ...])`` in words people read."""
    problems = []
    first_field = None
    for err in errors:
        loc = ".".join(str(p) for p in err["loc"]) or default_loc
        first_field = first_field or loc
        msg = "unknown field" if err["type"] == "extra_forbidden" else str(err["msg"]).removeprefix("Value error, ")
        problems.append(f"{loc}: {msg}")
    return first_field, problems
