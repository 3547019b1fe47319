"""Load and validate a run configuration with the workflow's own JSON schema.

The one validator of both runners: the workflow calls it while it builds the DAG
(``workflow_plan.plan_for_config``) and the Python API before it plans, so both fill
the same defaults and reject the same values with the same message, naming the key.
"""

from __future__ import annotations

import copy
import functools
from pathlib import Path
from typing import Any

import jsonschema
import yaml

SCHEMA_PATH = Path(__file__).with_name("schema") / "config.schema.yaml"


class ConfigError(ValueError):
    """A config value the schema rejects; the message names the key."""


# libyaml's loader where PyYAML was built with it: the schema is parsed whenever Snakemake
# builds the DAG, and the pure-Python loader takes 60 ms of that
_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_schema() -> dict[str, Any]:
    return copy.deepcopy(_parsed_schema())


@functools.cache
def _parsed_schema() -> dict[str, Any]:
    """The schema parsed once per process: a run over a sessions sheet validates every session."""
    with open(SCHEMA_PATH) as fh:
        return yaml.load(fh, Loader=_SAFE_LOADER)


def _with_defaults(validator_class):
    validate_properties = validator_class.VALIDATORS["properties"]

    def fill_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for key, sub in properties.items():
                if "default" in sub and key not in instance:
                    instance[key] = copy.deepcopy(sub["default"])
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": fill_defaults})


def validate(config: dict[str, Any]) -> dict[str, Any]:
    """A validated copy of ``config`` with every default filled in."""
    resolved = copy.deepcopy(config)
    validator = _with_defaults(jsonschema.Draft7Validator)(_parsed_schema())  # read only
    errors = sorted(validator.iter_errors(resolved), key=lambda e: list(e.path))
    if errors:
        error = _clearest(errors[0])
        key = ".".join(str(p) for p in error.absolute_path) or "(top level)"
        raise ConfigError(f"config key {key}: {error.message}")
    return resolved


def _clearest(error: jsonschema.ValidationError) -> jsonschema.ValidationError:
    """For a value no alternative of a ``oneOf`` accepts (``format: avi``), the complaint of
    the alternative of the value's own type, which lists the valid values ("'avi' is not
    one of ['tiff', ...]"), rather than "not valid under any of the given schemas"."""
    own_type = [e for e in error.context or [] if e.validator != "type"]
    return max(own_type, key=lambda e: len(e.absolute_path)) if own_type else error


def load(path: str | Path) -> dict[str, Any]:
    with open(path) as fh:
        return validate(yaml.load(fh, Loader=_SAFE_LOADER) or {})
