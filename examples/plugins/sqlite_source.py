"""Example source plugin: raw code stored in a SQLite table, one file per row.

Use it from codeio.yaml with

    source_plugin_modules: [examples/plugins/sqlite_source.py]
    sources:
      - name: snippets
        kind: sqlite
        options: {path: snippets.db, table: snippets}
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from codeio_dagster.sources.base import RawFile, Source, SourceOptions, raw_file


class SqliteOptions(SourceOptions):
    path: Path
    table: str
    content_column: str = "content"
    id_column: str = "rowid"


class SqliteSource(Source):
    """Rows of one SQLite table, in id order; the text is in `content_column`."""

    name = "sqlite"
    Options = SqliteOptions
    options: SqliteOptions

    def files(self) -> Iterator[RawFile]:
        opts = self.options
        if not opts.path.is_file():
            raise FileNotFoundError(f"sqlite source: {opts.path} does not exist")
        # Identifiers cannot be bound as parameters; quoting them keeps odd names working.
        table, content, ident = (
            f'"{n}"' for n in (opts.table, opts.content_column, opts.id_column)
        )
        # closing(): a connection's own `with` ends a transaction but leaves it open.
        with contextlib.closing(sqlite3.connect(f"file:{opts.path}?mode=ro", uri=True)) as db:
            rows = db.execute(f"SELECT {ident}, {content} FROM {table} ORDER BY {ident}")
            for row_id, text in rows:
                # raw_file: text as UTF-8, bytes as they are, any other value a rejected row.
                yield raw_file(f"{opts.table}:{row_id}", text, {"row": row_id})
