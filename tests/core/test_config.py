"""A bad codeio.yaml fails before any work, naming the key, the value and what is expected."""

import textwrap

import pytest

from codeio_dagster.config import ConfigError, load_config

GOOD = """
sources:
  - {name: demo, kind: folder, options: {path: corpus}}
"""


def write(tmp_path, text):
    path = tmp_path / "codeio.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def test_shipped_config_is_valid(project_root):
    config = load_config(project_root / "codeio.yaml")
    assert config.sources[0].kind == "folder"
    assert config.revision.turns == 1


def test_relative_paths_resolve_against_the_file(tmp_path):
    config = load_config(write(tmp_path, GOOD))
    assert config.sources[0].options["path"] == str(tmp_path / "corpus")
    assert config.data_dir == tmp_path / "data"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            GOOD + "shards: {size: 0}\n",
            "shards.size = 0: Input should be greater than or equal to 1",
        ),
        (
            GOOD + "revision: {turns: many}\n",
            "revision.turns = 'many': Input should be a valid integer",
        ),
        (
            GOOD + "colour: blue\n",
            "colour = 'blue': Extra inputs are not permitted",
        ),
        (
            "shards: {size: 10}\n",
            "sources = (missing): Field required",
        ),
        (
            GOOD + "tasks: {kinds: {output_prediction: -1}}\n",
            "tasks.kinds = {'output_prediction': -1}: Value error, task counts must be >= 0",
        ),
        (
            GOOD + "sandbox: {mode: docker}\n",
            "sandbox.mode = 'docker'",
        ),
    ],
)
def test_bad_config_names_key_value_and_expectation(tmp_path, text, expected):
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, text))
    assert expected in str(err.value)


def test_unsafe_sandbox_shorthand(tmp_path):
    config = load_config(write(tmp_path, GOOD + "sandbox: unsafe_subprocess\n"))
    assert config.sandbox.mode == "unsafe_subprocess"


def test_not_yaml_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(write(tmp_path, "sources: [\n"))
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "absent.yaml")
