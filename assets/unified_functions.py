import hashlib

import dagster as dg
import polars as pl

from codeio_dagster.assets.checks import check_specs, checked
from codeio_dagster.dedup import DedupIndexStore, drop_near_duplicates
from codeio_dagster.imported import IMPORT_VERSION, import_function
from codeio_dagster.llm import ChatRequest, LLMResource, LLMStats
from codeio_dagster.metadata import example_errors, funnel, llm_metadata, stage_metadata
from codeio_dagster.models import IOPairRecord, UnifiedFunctionRecord, to_frame
from codeio_dagster.partitions import shards
from codeio_dagster.refactor import build_refactor_messages, parse_refactor_reply
from codeio_dagster.request_failures import fail_if_too_many_failed
from codeio_dagster.resources import CodeioResource
from codeio_dagster.sources.base import FORMAT_KEY, UNIFIED


@dg.asset(
    partitions_def=shards,
    group_name="refactor",
    kinds={"openai"},
    check_specs=check_specs("unified_functions"),
)
def unified_functions(
    context: dg.AssetExecutionContext,
    codeio: CodeioResource,
    llm: LLMResource,
    raw_code: pl.DataFrame,
):
    """Raw files refactored by the LLM into the unified format (code, I/O, generator, query);
    rows of a `unified` source are imported as they are, without an LLM request."""
    readable = raw_code.filter(pl.col("status") == "ok")
    # Marked by the source that landed them (sources/unified.py), so a row's text alone never
    # decides that it skips the refactor.
    is_imported = pl.col("origin").str.json_path_match(f"$.{FORMAT_KEY}") == UNIFIED
    imported = readable.filter(is_imported.fill_null(False))
    files = readable.filter(~is_imported.fill_null(False))
    records = [
        _imported_record(row, context.partition_key) for row in imported.iter_rows(named=True)
    ]
    params = codeio.config.stages.refactor
    requests = [
        ChatRequest(
            key=row["file_id"], messages=build_refactor_messages(row["content"]), params=params
        )
        for row in files.iter_rows(named=True)
    ]
    if requests:
        outcomes, stats = llm.complete_many(
            requests, progress=context.asset_key.to_user_string(), log=context.log
        )
    else:  # a shard of imported functions sends no request (and starts no local model)
        outcomes, stats = [], LLMStats()
    failures = fail_if_too_many_failed(
        context.asset_key.to_user_string(), outcomes, codeio.config.llm.max_failure_rate
    )
    for row, outcome in zip(files.iter_rows(named=True), outcomes, strict=True):
        function_id = hashlib.sha256(
            f"{row['file_id']}:{outcome.request_hash}".encode()
        ).hexdigest()[:16]
        if outcome.status != "ok":
            parsed = None
            status, detail = outcome.status, outcome.error or outcome.finish_reason
        else:
            try:
                parsed = parse_refactor_reply(outcome.content)
                status, detail = parsed.status, parsed.detail
            except Exception as exc:  # noqa: BLE001 - one reply's fault is that row's status
                parsed = None
                status, detail = "parse_error", f"{type(exc).__name__}: {str(exc)[:300]}"
        ok = parsed is not None and status == "ok"
        records.append(
            UnifiedFunctionRecord(
                function_id=function_id,
                file_id=row["file_id"],
                shard=context.partition_key,
                status=status,
                detail=detail,
                reference_code=parsed.reference_code if ok else None,
                io_description=parsed.io_description if ok else None,
                input_generator=parsed.input_generator if ok else None,
                problem_statement=parsed.problem_statement if ok else None,
                request_hash=outcome.request_hash,
                model=outcome.model,
            )
        )
    frame = to_frame(records, UnifiedFunctionRecord)
    dedup = codeio.config.dedup
    if dedup.enabled:
        # Here, not in a step of its own: a drop is a status on this stage's rows like the
        # refactor's rejections, so the graph and every reader of this table stay as they are.
        landing = codeio.landing()
        order = landing.shards().get_column("shard").unique(maintain_order=True).to_list()
        frame = drop_near_duplicates(
            frame,
            DedupIndexStore(landing.root / "_dedup"),
            context.partition_key,
            order,
            threshold=dedup.threshold,
            num_perm=dedup.num_perm,
        )
    llm_meta = (
        llm_metadata(llm, frame.filter(~pl.col("imported")))
        if requests
        else {"model": "none (imported functions)", "backend": "none"}
    )
    yield from checked(
        context,
        frame,
        stage_metadata(
            funnel(readable.height, frame),
            sample=frame.filter(pl.col("status") == "ok"),
            sample_columns=["function_id", "problem_statement"],
            examples=example_errors(frame, "detail"),
            extra={
                "imported": imported.height,
                **llm_meta,
                **stats.as_metadata(),
                **failures,
            },
        ),
        codeio.config,
    )


def _imported_record(row: dict, shard: str) -> UnifiedFunctionRecord:
    """The record of one row a `unified` source landed: checked and normalised, no LLM."""
    result = import_function(row["content"])
    function_id = hashlib.sha256(f"{row['file_id']}:{IMPORT_VERSION}".encode()).hexdigest()[:16]
    return UnifiedFunctionRecord(
        function_id=function_id,
        file_id=row["file_id"],
        shard=shard,
        status=result.status,
        detail=result.detail,
        reference_code=result.reference_code,
        io_description=result.io_description,
        input_generator=result.input_generator,
        problem_statement=result.problem_statement,
        request_hash=None,
        model=None,
        imported=True,
        ios=[IOPairRecord(**pair) for pair in result.ios] if result.status == "ok" else [],
    )
