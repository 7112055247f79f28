"""A bad codeio.yaml fails before any work, naming the key, the value and what is expected."""

import textwrap

import pytest

from codeio_dagster.config import ConfigError, load_config, parse_config

GOOD = """
sources:
  - {name: demo, kind: folder, options: {path: corpus}}
"""


def write(tmp_path, text):
    (tmp_path / "corpus").mkdir(exist_ok=True)  # GOOD's source folder
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
    assert config.publish.local_dir == str(tmp_path / "published")


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
            "colour = (value not shown): Extra inputs are not permitted",
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


# Built at run time so that no credential-shaped string sits in the repository.
FAKE_KEY = "sk-" + "not-a-real-key-" * 3


@pytest.mark.parametrize(
    ("text", "key"),
    [
        (GOOD + f"llm: {{api_key_env: {FAKE_KEY}}}\n", "llm.api_key_env"),
        (GOOD + f"llm: {{api_key: {FAKE_KEY}}}\n", "llm.api_key"),
        (GOOD + f"publish: {{hf_token: {FAKE_KEY}}}\n", "publish.hf_token"),
    ],
)
def test_errors_name_the_key_but_never_echo_a_pasted_credential(tmp_path, text, key):
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, text))
    assert f"{key} = (value not shown)" in str(err.value)
    assert "not-a-real-key" not in str(err.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            GOOD + "revison: {turns: 2}\n",
            "revison = (value not shown): Extra inputs are not permitted; did you mean 'revision'?",
        ),
        (
            GOOD + "llm: {base_ulr: http://x}\n",
            "llm.base_ulr = (value not shown): Extra inputs "
            "are not permitted; did you mean 'base_url'?",
        ),
        (GOOD + "revision: {turn: 2}\n", "did you mean 'turns'?"),
        (
            GOOD + "zzzz: 1\n",
            "zzzz = (value not shown): Extra inputs are not permitted; "
            "expected one of: data_dir, sources,",
        ),
    ],
)
def test_unknown_key_suggests_the_nearest_one(tmp_path, text, expected):
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, text))
    assert expected in str(err.value)


@pytest.mark.parametrize("text", ["", "# only a comment\n"])
def test_empty_file_says_it_is_empty(tmp_path, text):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(err.value).startswith(f"{path}: the file is empty")
    assert "NoneType" not in str(err.value)


def test_unsafe_sandbox_shorthand(tmp_path):
    config = load_config(write(tmp_path, GOOD + "sandbox: unsafe_subprocess\n"))
    assert config.sandbox.mode == "unsafe_subprocess"


def test_not_yaml_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(write(tmp_path, "sources: [\n"))
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "absent.yaml")


SOURCE = "sources:\n  - {{name: demo, kind: {kind}, options: {options}}}\n"


@pytest.mark.parametrize(
    ("kind", "options", "problems"),
    [
        (
            "folder",
            "{path: corpus, globb: '*.py'}",
            [
                "sources[0].options.globb = (value not shown): Extra inputs are not permitted; "
                "folder options are: path, glob"
            ],
        ),
        (
            "folder",
            "{path: corpus, glob: 5}",
            ["sources[0].options.glob = 5: Input should be a valid string"],
        ),
        (
            "folder",
            "{glob: /abs/*.py}",
            [
                "sources[0].options.path = (missing): Field required",
                "sources[0].options.glob = '/abs/*.py': Value error, glob must be relative to "
                "`path`, got '/abs/*.py'",
            ],
        ),
        (
            "foldr",
            "{path: corpus}",
            [
                "sources[0].kind = 'foldr': unknown source kind; expected one of: "
                "folder, hub, jsonl, parquet, unified, unified_hub"
            ],
        ),
        (
            "jsonl",
            "{path: raw.jsonl, content_column: [a, b]}",
            ["sources[0].options.content_column = ['a', 'b']: Input should be a valid string"],
        ),
        (
            "hub",
            "{repo_id: raw, files: '*.csv'}",
            [
                "sources[0].options.repo_id = 'raw': Value error, hub source repo_id 'raw' "
                "must look like 'owner/name'",
                "sources[0].options.files = '*.csv': Value error, hub source files '*.csv' "
                "must match .parquet, .jsonl, .ndjson files",
            ],
        ),
    ],
)
def test_bad_source_options_fail_at_load(tmp_path, kind, options, problems):
    path = write(tmp_path, SOURCE.format(kind=kind, options=options))
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(err.value).splitlines() == [
        f"{path}: {len(problems)} problem(s)",
        *(f"  {p}" for p in problems),
    ]


def test_source_problems_are_reported_with_the_others(tmp_path):
    text = SOURCE.format(kind="folder", options="{path: corpus, glob: 5}") + "shards: {size: 0}\n"
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(err.value).splitlines() == [
        f"{path}: 2 problem(s)",
        "  shards.size = 0: Input should be greater than or equal to 1",
        "  sources[0].options.glob = 5: Input should be a valid string",
    ]


PLUGIN = """
from codeio_dagster.sources import Source, SourceOptions


class LinesOptions(SourceOptions):
    path: str
    min_lines: int = 1


class LinesSource(Source):
    name = "lines_for_config_test"
    Options = LinesOptions

    def files(self):
        return iter(())
"""


def test_local_plugin_options_are_checked_relative_to_the_config(tmp_path):
    (tmp_path / "my_source.py").write_text(PLUGIN)
    head = "source_plugin_modules: [my_source.py]\n"
    kind = "lines_for_config_test"
    good = load_config(write(tmp_path, head + SOURCE.format(kind=kind, options="{path: x}")))
    assert good.source_plugin_modules == [str(tmp_path / "my_source.py")]

    bad = write(tmp_path, head + SOURCE.format(kind=kind, options="{path: x, min_lines: few}"))
    with pytest.raises(ConfigError) as err:
        load_config(bad)
    assert str(err.value).splitlines()[1:] == [
        "  sources[0].options.min_lines = 'few': Input should be a valid integer, unable to "
        "parse string as an integer"
    ]

    missing = write(tmp_path, "source_plugin_modules: [absent.py]\n" + GOOD)
    with pytest.raises(ConfigError) as err:
        load_config(missing)
    assert str(err.value).splitlines()[1:] == [
        f"  source_plugin_modules[0] = 'absent.py': plugin module file "
        f"'{tmp_path / 'absent.py'}' does not exist"
    ]


def test_unknown_task_kind_fails_at_load_and_plugin_kinds_are_found(tmp_path, project_root):
    bad = write(tmp_path, GOOD + "tasks: {kinds: {output_predicton: 1}}\n")
    with pytest.raises(ConfigError) as err:
        load_config(bad)
    (line,) = str(err.value).splitlines()[1:]
    assert line.startswith(
        "  tasks.kinds.output_predicton = 'output_predicton': unknown task kind; expected one of: "
    )
    assert "input_prediction, output_prediction" in line

    plugin = project_root / "examples" / "plugins" / "output_type_task.py"
    (tmp_path / "output_type_task.py").write_text(plugin.read_text())
    good = write(
        tmp_path,
        GOOD + "tasks:\n  plugin_modules: [output_type_task.py]\n"
        "  kinds: {output_type_prediction: 2}\n",
    )
    assert load_config(good).tasks.kinds == {"output_type_prediction": 2}


def test_missing_local_paths_fail_at_load_each_named(tmp_path):
    (tmp_path / "a_file").write_text("not a folder")
    text = (
        "sources:\n"
        "  - {name: here, kind: folder, options: {path: corpus}}\n"
        "  - {name: gone, kind: folder, options: {path: no_such_folder}}\n"
        "  - {name: rows, kind: jsonl, options: {path: rows.jsonl}}\n"
        "decontamination: {benchmarks: [bench/humaneval.jsonl]}\n"
        "data_dir: a_file/data\n"
    )
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, text))
    lines = str(err.value).splitlines()
    assert lines[0].endswith("codeio.yaml: 4 problem(s)")
    assert lines[1:] == [
        f"  sources[1].options.path = '{tmp_path / 'no_such_folder'}': no such file or folder",
        f"  sources[2].options.path = '{tmp_path / 'rows.jsonl'}': no such file or folder",
        f"  decontamination.benchmarks[0] = '{tmp_path / 'bench/humaneval.jsonl'}': no such file",
        f"  data_dir = '{tmp_path / 'a_file/data'}': {tmp_path / 'a_file'} is not a folder",
    ]


def test_a_data_dir_that_cannot_be_written_fails_at_load(tmp_path):
    # /proc refuses new files even to root, for whom permission bits would not.
    with pytest.raises(ConfigError, match=r"data_dir = '/proc/codeio-data': cannot write in /proc"):
        load_config(write(tmp_path, GOOD + "data_dir: /proc/codeio-data\n"))


def test_data_dir_that_does_not_exist_yet_and_object_storage_urls_load(tmp_path):
    assert load_config(write(tmp_path, GOOD + "data_dir: new/deeper\n")).data_dir == (
        tmp_path / "new" / "deeper"
    )
    assert not (tmp_path / "new").exists()  # checked, not created
    load_config(write(tmp_path, GOOD + "data_dir: s3://bucket/codeio\n"))


def test_max_failure_rate_is_validated(tmp_path):
    assert load_config(write(tmp_path, GOOD)).llm.max_failure_rate == 0.5
    with pytest.raises(ConfigError, match=r"llm.max_failure_rate = 1.5: Input should be less"):
        load_config(write(tmp_path, GOOD + "llm: {max_failure_rate: 1.5}\n"))


# Built at run time so no file holds a credential-shaped string; the shapes of an HF token and
# an OpenAI key.
HF_TOKEN = "hf_" + "Xy7" * 12
OPENAI_KEY = "sk-proj-" + "Q9w" * 16


def test_a_yaml_error_next_to_a_pasted_key_does_not_print_the_key(tmp_path):
    # PyYAML's own message quotes the line around the mistake, and so printed the key.
    path = write(tmp_path, GOOD + f"llm:\n  api_key_env: OPENAI_API_KEY\n  key: {OPENAI_KEY}: x\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    message = str(err.value)
    assert "not valid YAML: mapping values are not allowed here at line 6, column" in message
    assert "Q9w" not in message


@pytest.mark.parametrize(
    ("text", "line"),
    [
        (
            f"publish: {{target: hub, repo_id: {HF_TOKEN}}}\n",
            "  publish.repo_id = (value not shown): Value error, publish.repo_id '***' must look",
        ),
        (
            f"llm: {{base_url: {OPENAI_KEY}}}\n",
            "  llm.base_url = (value not shown): Value error, base_url must start with http",
        ),
    ],
)
def test_a_token_pasted_as_a_value_is_never_printed_back(tmp_path, text, line):
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, GOOD + text))
    message = str(err.value)
    assert line in message
    assert "Xy7Xy7" not in message and "Q9wQ9w" not in message


def test_paths_and_plain_values_are_still_shown(tmp_path):
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, GOOD + "shards: {size: many_files_per_shard_2024}\n"))
    assert "shards.size = 'many_files_per_shard_2024'" in str(err.value)


def test_neither_codeio_nor_dagster_prints_a_key_from_a_broken_config(tmp_path, project_root):
    import os
    import subprocess
    import sys

    path = write(tmp_path, GOOD + f"llm:\n  key: {OPENAI_KEY}: x\n")
    env = {**os.environ, "CODEIO_CONFIG": str(path), "DAGSTER_HOME": str(tmp_path)}
    bin_dir = os.path.dirname(sys.executable)
    commands = [
        [os.path.join(bin_dir, "codeio"), "demo", "--config", str(path)],
        [
            os.path.join(bin_dir, "dagster"),
            "definitions",
            "validate",
            "-m",
            "codeio_dagster.definitions",
        ],
    ]
    for command in commands:
        done = subprocess.run(
            command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300
        )
        output = done.stdout + done.stderr
        assert done.returncode != 0, command
        assert "not valid YAML" in output, (command, output[-2000:])
        assert "Q9w" not in output, command


def test_config_publish_local_dir_url(tmp_path):
    base = {"sources": [{"name": "a", "kind": "folder", "options": {"path": "."}}]}
    config = parse_config({**base, "publish": {"local_dir": "s3://bkt/pub/"}}, base_dir=tmp_path)
    assert config.publish.local_dir == "s3://bkt/pub"
    local = parse_config({**base, "publish": {"local_dir": "pub"}}, base_dir=tmp_path)
    assert local.publish.local_dir == str(tmp_path / "pub")
    # A ConfigError naming the key, with the other problems, not a bare ValueError at load.
    with pytest.raises(ConfigError, match=r"publish\.local_dir = 'gs://bkt/p'.*unsupported scheme"):
        parse_config({**base, "publish": {"local_dir": "gs://bkt/p"}}, base_dir=tmp_path)


def test_the_job_is_the_same_whether_the_config_path_is_given_absolute_or_not(
    project_root, monkeypatch
):
    """`codeio build` hands the code location an absolute path, `make dev` the default: the job
    snapshots must match, or the UI shows each run the build launched as made from another job."""
    from dagster._core.definitions.reconstruct import repository_def_from_target_def

    from codeio_dagster.config import CONFIG_ENV
    from codeio_dagster.definitions import defs

    def snapshot_id(config_path: str | None) -> str:
        if config_path is None:
            monkeypatch.delenv(CONFIG_ENV, raising=False)
        else:
            monkeypatch.setenv(CONFIG_ENV, config_path)
        job = repository_def_from_target_def(defs).get_job("codeio_job")
        return job.get_job_snapshot_id()

    monkeypatch.chdir(project_root)
    assert snapshot_id(str(project_root / "codeio.yaml")) == snapshot_id(None)
