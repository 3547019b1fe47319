"""Config validation (config.py) against the workflow's JSON schema, and its documentation."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import yaml

from imexport.config import SCHEMA_PATH, ConfigError, load, load_schema, validate
from imexport.workflow_plan import plan_for_config

REPO = Path(__file__).resolve().parents[1]
WORKFLOW_SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"
DEFAULT_CONFIG = REPO / "config" / "config.yaml"
CONFIG_README = REPO / "config" / "README.md"


def schema() -> dict:
    with open(WORKFLOW_SCHEMA) as fh:
        return yaml.safe_load(fh)


def walk_properties(props: dict, prefix: str = ""):
    """Every property of the schema, nested ones as ``parent.child``."""
    for key, sub in props.items():
        yield prefix + key, sub
        if "properties" in sub:
            yield from walk_properties(sub["properties"], prefix + key + ".")


def expected_defaults(props: dict) -> dict:
    """What validate({}) must produce: each default, objects filled with their children's."""
    out = {}
    for key, sub in props.items():
        if "default" not in sub:
            continue
        value = copy.deepcopy(sub["default"])
        if "properties" in sub and isinstance(value, dict):
            value = {**expected_defaults(sub["properties"]), **value}
        out[key] = value
    return out


# --------------------------------------------------------------------------- the schema itself


def test_package_and_workflow_use_the_same_schema():
    assert yaml.safe_load(Path(SCHEMA_PATH).read_text()) == schema()
    assert load_schema() == schema()


def test_every_property_has_a_description_and_a_default():
    missing = [
        (name, field)
        for name, sub in walk_properties(schema()["properties"])
        for field in ("description", "default")
        if field not in sub or (field == "description" and not str(sub[field]).strip())
    ]
    assert missing == []


def test_every_default_is_valid():
    resolved = validate({})
    assert validate(resolved) == resolved  # defaults pass their own schema, idempotent


def test_top_level_keys_are_documented_in_the_readme():
    if not CONFIG_README.exists():
        pytest.skip("config/README.md does not exist yet")
    readme = CONFIG_README.read_text()
    missing = [key for key in schema()["properties"] if not re.search(rf"`{re.escape(key)}[`.]", readme)]
    assert missing == [], f"config/README.md does not document {missing}"


# --------------------------------------------------------------------------- validate


def test_validate_fills_every_default():
    resolved = validate({})
    assert resolved == expected_defaults(schema()["properties"])
    # spot checks against the documented defaults
    assert resolved["format"] == "tiff" and resolved["roi_mode"] == "concat_y"
    assert resolved["planes"] is None and resolved["overwrite"] is False
    assert resolved["tiff"]["bigtiff"] == "auto"
    assert resolved["target_chunk_mb"] == 100


def test_validate_keeps_given_values_and_does_not_mutate_its_argument():
    config = {"planes": [1, 3], "frames": "2:12:2", "tiff": {"bigtiff": False}, "metadata": {"dz": 5}}
    snapshot = copy.deepcopy(config)
    resolved = validate(config)
    assert config == snapshot
    assert resolved["planes"] == [1, 3] and resolved["frames"] == "2:12:2"
    assert resolved["tiff"]["bigtiff"] is False
    assert resolved["tiff"] == {**expected_defaults(schema()["properties"])["tiff"], "bigtiff": False}
    assert resolved["metadata"] == {"dz": 5, "fs": None, "dx": None, "dy": None}  # typed physical keys default to null


@pytest.mark.parametrize(
    "config, key",
    [
        ({"bogus_key": 1}, "bogus_key"),
        ({"plane": [1]}, "plane"),  # a typo of planes
        ({"tiff": {"big_tiff": True}}, "big_tiff"),
        ({"zarr": {"shard": True}}, "shard"),
        ({"h5": {"dataset": "mov"}}, "dataset"),
        ({"bin": {"output_name": "x.bin"}}, "output_name"),
    ],
)
def test_unknown_keys_are_rejected_naming_them(config, key):
    with pytest.raises(ConfigError, match=re.escape(key)):
        validate(config)


def test_unknown_demo_key_is_rejected():
    with pytest.raises(ConfigError, match="n_frame"):
        validate({"demo": {"n_frame": 10}})


@pytest.mark.parametrize(
    "config, key",
    [
        ({"overwrite": "yes"}, "overwrite"),
        ({"planes": 0}, "planes"),
        ({"planes": [0, 1]}, "planes"),
        ({"planes": []}, "planes"),
        ({"frames": "1-3"}, "frames"),
        ({"frames": 1.5}, "frames"),
        ({"channels": [True]}, "channels"),
        ({"num_frames": 0}, "num_frames"),
        ({"num_frames": "10"}, "num_frames"),
        ({"order": [-1, 0]}, "order"),
        ({"format": "png"}, "format"),
        ({"format": []}, "format"),
        ({"format": ["tiff", "tiff"]}, "format"),
        ({"roi_mode": "bogus"}, "roi_mode"),
        ({"target_chunk_mb": 0}, "target_chunk_mb"),
        ({"output_suffix": 5}, "output_suffix"),
        ({"metadata": [1, 2]}, "metadata"),
        ({"input": None}, "input"),
        ({"tiff": {"bigtiff": "no"}}, "tiff.bigtiff"),
        ({"zarr": {"compressor": "lz77"}}, "zarr.compressor"),
        ({"h5": {"compression_level": 12}}, "h5.compression_level"),
        ({"demo": {"n_colors": 3}}, "demo.n_colors"),
    ],
)
def test_wrong_types_are_rejected_naming_the_key(config, key):
    with pytest.raises(ConfigError) as err:
        validate(config)
    assert re.match(rf"config key {re.escape(key)}[:.]", str(err.value)), str(err.value)


def test_shipped_config_validates():
    resolved = load(DEFAULT_CONFIG)
    with open(DEFAULT_CONFIG) as fh:
        raw = yaml.safe_load(fh)

    def stated_part(resolved_value, stated):
        """The resolved value cut down to the keys the file states, at every depth."""
        if isinstance(stated, dict):
            return {k: stated_part(resolved_value[k], v) for k, v in stated.items()}
        return resolved_value

    for key, value in raw.items():
        assert stated_part(resolved[key], value) == value
    assert set(resolved) == set(schema()["properties"])


# --------------------------------------------------------------------------- values checked at planning


@pytest.mark.parametrize("key", ["fs", "dz"])
def test_non_numeric_physical_metadata_names_the_key(tmp_path, make_acquisition, key):
    spec, paths = make_acquisition(tmp_path, n_frames=3, frames_per_file=3)
    config = {"input": str(paths[0].parent), "outdir": str(tmp_path / "out"), "metadata": {key: "fast"}}
    with pytest.raises(ValueError, match=rf"metadata\.{key}|metadata: {key}|\b{key}\b"):
        plan_for_config(config)
