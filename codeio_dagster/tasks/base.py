"""The prediction task kind plugin family: a task kind builds a prompt and a check; the base
class owns the loop (pair choice, ids, counters, timing)."""

from __future__ import annotations

import hashlib
import json
import logging
import random
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

from codeio_dagster.models import IOPairRecord, PredictionTaskRecord
from codeio_dagster.prompt_templates import load_template, text_hash

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FunctionView:
    """What a task prompt needs of a unified function."""

    function_id: str
    problem_statement: str
    io_description: str
    reference_code: str


class TaskPrompt(NamedTuple):
    given: str  # JSON shown in the prompt
    expected: str  # JSON of the true answer value
    prompt: str


@dataclass(frozen=True)
class Check:
    """The judgement of an extracted answer value.

    `status`: correct, wrong, missing_key (answer of the wrong shape) or needs_execution (the
    caller runs `run_input` as keyword arguments in the sandbox, then calls `check_execution`).
    """

    status: str
    run_input: dict[str, Any] | None = None
    detail: str | None = None


class TaskBuildError(ValueError):
    """A pair cannot become a task of this kind; `reason` becomes a `dropped_<reason>` counter."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


def task_id_for(function_id: str, kind: str, pair_index: int) -> str:
    """Deterministic task id: the same function, kind and pair always give the same id."""
    return hashlib.sha256(f"{function_id}\0{kind}\0{pair_index}".encode()).hexdigest()[:32]


def choose_pairs(function_id: str, kind: str, n_pairs: int, k: int) -> list[int]:
    """`k` distinct pair indices out of `n_pairs`, seeded by function id and kind (so the two
    kinds of one function usually look at different pairs), in ascending order."""
    if k >= n_pairs:
        return list(range(n_pairs))
    seed = int.from_bytes(hashlib.sha256(f"{function_id}\0{kind}".encode()).digest()[:8], "big")
    return sorted(random.Random(seed).sample(range(n_pairs), k))


def field_of(task: Any, name: str) -> Any:
    """A field of a PredictionTaskRecord or of a row dict."""
    return task[name] if isinstance(task, Mapping) else getattr(task, name)


class TaskKind(ABC):
    """A plugin implements `build_prompt` and `check_answer`; `make_tasks` adds the rest.

    A kind owns its whole behaviour: its prompt (`build_prompt`), its judgement of an answer
    (`check_answer`, and `check_execution` for kinds that run the answer), and the feedback a
    wrong answer gets (`feedback`). Class attributes: `name` (the config and entry-point name),
    `answer_key` (the key of the final JSON answer), `template_version` and `template_files`
    (prompt files under `codeio_dagster/prompts/`). `templates()` returns every text the kind
    words its prompts and feedback with; a kind that writes its own (a plugin) overrides it, so
    `prompt_hash()`, which the dataset card lists, changes whenever one of those texts does.
    """

    name: ClassVar[str]
    answer_key: ClassVar[str]
    template_version: ClassVar[str] = "1"
    template_files: ClassVar[tuple[str, ...]] = ()

    def __init__(self) -> None:
        self.counters: dict[str, int] = {}
        self.seconds = 0.0

    @abstractmethod
    def build_prompt(
        self, fn: FunctionView, pair: IOPairRecord, *, include_code: bool
    ) -> TaskPrompt:
        """(given JSON, expected JSON, prompt text) for one pair; raise TaskBuildError to skip."""

    @abstractmethod
    def check_answer(self, answer_value: Any, task: Any) -> Check:
        """Judge the value extracted under `answer_key` against a task (record or row dict)."""

    def check_execution(self, actual_value: Any, task: Any) -> Check:
        """Judge the output that running `Check.run_input` produced (kinds that execute)."""
        raise NotImplementedError(f"task kind {self.name!r} does not verify by execution")

    def feedback(
        self,
        status: str,
        *,
        answer_json: str | None = None,
        actual_json: str | None = None,
        error: str | None = None,
    ) -> str:
        """What was wrong with a reply of this kind, in words for the model (never `correct`).

        The default words it with the shared feedback texts (`feedback.FEEDBACK_TEMPLATES`,
        those for this kind's name first); a kind with wording of its own overrides this and
        lists its texts in `templates()`.
        """
        from codeio_dagster.feedback import feedback_text

        return feedback_text(
            status,
            kind=self.name,
            answer_json=answer_json,
            actual_json=actual_json,
            error=error,
            key=self.answer_key,
        )

    @classmethod
    def templates(cls) -> list[str]:
        """Every text this kind's prompts and own feedback are made from: its template files."""
        return [load_template(name) for name in cls.template_files]

    @classmethod
    def prompt_hash(cls) -> str:
        """sha256 over this kind's name, template version and `templates()`."""
        return text_hash(cls.name, cls.template_version, *cls.templates())

    def make_tasks(
        self,
        functions: Iterable[FunctionView],
        pairs_by_function: Mapping[str, Iterable[IOPairRecord | Mapping[str, str]]],
        *,
        per_function: int,
        include_code: bool = True,
        shard: str,
    ) -> list[PredictionTaskRecord]:
        """Up to `per_function` tasks per function, from deterministically chosen pairs.

        Counters: `rows_in` (functions), `kept` (tasks made), `dropped_no_pairs` (functions
        without pairs), `dropped_<reason>` (pairs a TaskBuildError rejected), `dropped_build_error`
        (pairs whose build raised anything else: a plugin's bug is that pair's, not the stage's).
        """
        if per_function < 0:
            raise ValueError(f"per_function must be >= 0, got {per_function}")
        start = time.perf_counter()
        counters = {"rows_in": 0, "kept": 0, "dropped_no_pairs": 0}
        tasks: list[PredictionTaskRecord] = []
        for fn in functions:
            counters["rows_in"] += 1
            pairs = [_as_pair(p) for p in pairs_by_function.get(fn.function_id) or ()]
            if not pairs:
                counters["dropped_no_pairs"] += 1
                continue
            for index in choose_pairs(fn.function_id, self.name, len(pairs), per_function):
                try:
                    built = self.build_prompt(fn, pairs[index], include_code=include_code)
                except TaskBuildError as exc:
                    key = f"dropped_{exc.reason}"
                    counters[key] = counters.get(key, 0) + 1
                    continue
                except Exception as exc:  # noqa: BLE001 - a plugin's bug drops its pair only
                    counters["dropped_build_error"] = counters.get("dropped_build_error", 0) + 1
                    log.warning(
                        "task kind %s could not build a task of function %s, pair %d: %s: %.300s",
                        self.name, fn.function_id, index, type(exc).__name__, exc,
                    )  # fmt: skip
                    continue
                tasks.append(
                    PredictionTaskRecord(
                        task_id=task_id_for(fn.function_id, self.name, index),
                        function_id=fn.function_id,
                        shard=shard,
                        kind=self.name,
                        pair_index=index,
                        given=built.given,
                        expected=built.expected,
                        prompt=built.prompt,
                        status="ok",
                        detail=None,
                    )
                )
                counters["kept"] += 1
        self.counters = counters
        self.seconds = time.perf_counter() - start
        return tasks


def _as_pair(pair: IOPairRecord | Mapping[str, str]) -> IOPairRecord:
    return pair if isinstance(pair, IOPairRecord) else IOPairRecord.model_validate(dict(pair))


def parse_json_field(text: str, what: str) -> Any:
    """json.loads with a TaskBuildError naming the field when the text is not JSON."""
    try:
        return json.loads(text)
    except (TypeError, ValueError, RecursionError, MemoryError) as exc:
        # A pair's text reaches here from elsewhere too (stored I/O pairs): one unreadable
        # pair is that pair's drop, never the stage's failure.
        reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)[:200]
        raise TaskBuildError("invalid_pair", f"{what} is not JSON: {reason}: {text!r:.80}") from exc
