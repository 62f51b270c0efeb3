"""Job spec validation: every problem names its field."""

from __future__ import annotations

import pytest

from scheduler.errors import InvalidSpec
from scheduler.spec import parse_spec


@pytest.mark.parametrize("data,field,words", [
    ({"entrypoint": "nope"}, "entrypoint", "package.module:function"),
    ({"entrypoint": "m:f", "num_workers": 0}, "num_workers", "a whole number from 1 to 4096"),
    ({"entrypoint": "m:f", "num_workers": {"min": 3, "max": 2}}, "num_workers", "max (2) must be at least min (3)"),
    ({"entrypoint": "m:f", "num_workers": {"min": 0, "max": 2}}, "num_workers", "min: Input should be greater than"),
    ({"entrypoint": "m:f", "num_workers": {"min": 1}}, "num_workers", "max: Field required"),
    ({"entrypoint": "m:f", "num_workers": "2-4"}, "num_workers", '{"min": m, "max": n}'),
    ({"entrypoint": "m:f", "colour": "red"}, "colour", "unknown field"),
    ({"entrypoint": "m:f", "resources_per_worker": {"GPU": -1}}, "resources_per_worker", "finite number >= 0"),
    ({"entrypoint": "m:f", "runtime_env": {"container": {}}}, "runtime_env", "unsupported keys"),
    ({"entrypoint": "m:f", "storage_path": "relative/dir"}, "storage_path", "absolute"),
    ({"entrypoint": "m:f", "max_failures": -2}, "max_failures", "greater than or equal to -1"),
    ({}, "spec", "exactly one of entrypoint or workload"),
    ({"entrypoint": "m:f", "workload": "w"}, "spec", "exactly one of entrypoint or workload"),
])
def test_bad_specs_name_the_field(data: dict, field: str, words: str) -> None:
    with pytest.raises(InvalidSpec) as err:
        parse_spec(data)
    assert err.value.fields["field"] == field
    assert words in err.value.message and field in err.value.message


def test_not_an_object() -> None:
    with pytest.raises(InvalidSpec, match="must be a JSON object"):
        parse_spec(["entrypoint"])


def test_defaults_and_demand() -> None:
    s = parse_spec({"entrypoint": "pkg.mod:train", "num_workers": 4})
    assert s.display_name == "train" and s.demand() == {"CPU": 4.0}
    g = parse_spec({"entrypoint": "m:f", "num_workers": 2, "use_gpu": True,
                    "resources_per_worker": {"CPU": 2, "GPU": 0}})
    assert g.demand() == {"CPU": 4.0, "GPU": 2.0}


def test_the_backend_is_torch_unless_a_job_says_none() -> None:
    assert parse_spec({"entrypoint": "m:f"}).backend == "torch"
    assert parse_spec({"entrypoint": "m:f", "backend": "none"}).backend == "none"
    with pytest.raises(InvalidSpec, match="backend"):
        parse_spec({"entrypoint": "m:f", "backend": "jax"})


def test_an_elastic_spec_counts_its_fewest_workers_until_it_is_given_a_size() -> None:
    spec = parse_spec({"entrypoint": "m:f", "num_workers": {"min": 2, "max": 8}, "resources_per_worker": {"CPU": 2}})
    assert (spec.min_workers, spec.max_workers, spec.elastic) == (2, 8, True)
    assert spec.demand() == {"CPU": 4.0} and spec.demand(5) == {"CPU": 10.0}
    assert spec.model_dump()["num_workers"] == {"min": 2, "max": 8}  # stored as given
    fixed = parse_spec({"entrypoint": "m:f", "num_workers": {"min": 3, "max": 3}})
    assert not fixed.elastic and fixed.demand() == {"CPU": 3.0}
    assert not parse_spec({"entrypoint": "m:f", "num_workers": 4.0}).elastic
