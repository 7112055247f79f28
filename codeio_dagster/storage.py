"""Where `data_dir` lives: a local folder (a `Path`) or object storage (`s3://bucket/prefix`).

Every function here takes either kind of location, so stage tables, landing and the published
folder read and write the same way on one machine and on a cluster. Object storage goes through
obstore (the Rust `object_store` crate): one small wheel without Python dependencies, one API for
S3 (and S3-compatible servers) whose puts are single atomic PUTs, with the conditional puts
(`If-None-Match: *`, `If-Match: <etag>`) that a lock shared by machines needs. fsspec/s3fs would
bring aiobotocore and botocore pins into every install; polars' own cloud IO reads and writes
Parquet but offers no conditional put, listing or delete.

Guarantees, for both kinds:
- a write is atomic: readers see the old object or the new one whole (locally a temp file of
  its own then `os.replace`; on object storage a single PUT);
- `exclusive(lock)` is held by one process at a time across every machine that reaches the
  location: locally `flock` (the folder is one machine's, or an NFS mount that honours it); on
  object storage a lease object taken with a conditional create and renewed by a conditional
  update, taken over only after it stayed unrenewed for `ttl_s` by the waiter's own clock.

Object storage is configured from the environment as the AWS tools are (`AWS_ENDPOINT_URL`,
`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, `AWS_ALLOW_HTTP=true` for a plain-http
endpoint): credentials never sit in the config file.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import io
import json
import os
import re
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Annotated, Any

import polars as pl
from pydantic import PlainSerializer, PlainValidator

from codeio_dagster.fsutil import atomic_path

SCHEMES = ("s3",)
_URL = re.compile(r"^(?P<scheme>[a-z][a-z0-9+.-]*)://(?P<bucket>[^/]+)(?P<key>(/[^/]+)*)/?$")
INSTALL_HINT = "object storage needs the cluster extra: pip install 'codeio-dagster[cluster]'"


class ObjectPath:
    """A key under an object-storage URL, with the few pathlib operations the pipeline uses."""

    __slots__ = ("bucket", "key", "scheme")

    def __init__(self, url: str) -> None:
        match = _URL.match(str(url))
        if not match:
            raise ValueError(f"{url!r} is not an object-storage URL like s3://bucket/prefix")
        if match["scheme"] not in SCHEMES:
            raise ValueError(
                f"{url!r}: unsupported scheme {match['scheme']!r}; supported: "
                + ", ".join(f"{s}://" for s in SCHEMES)
            )
        self.scheme, self.bucket = match["scheme"], match["bucket"]
        self.key = match["key"].strip("/")

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.bucket}/{self.key}".rstrip("/")

    def __truediv__(self, part: str | os.PathLike) -> ObjectPath:
        part = str(part).strip("/")
        if not part or ".." in part.split("/"):
            raise ValueError(f"cannot join {part!r} to {self.url}")
        return ObjectPath(f"{self.url}/{part}")

    @property
    def name(self) -> str:
        return self.key.rsplit("/", 1)[-1]

    @property
    def parent(self) -> ObjectPath:
        return ObjectPath(f"{self.scheme}://{self.bucket}/{self.key.rpartition('/')[0]}")

    def is_absolute(self) -> bool:
        # A URL never resolves against the config file's folder (config._resolve_paths).
        return True

    def expanduser(self) -> ObjectPath:
        return self

    def __str__(self) -> str:
        return self.url

    def __repr__(self) -> str:
        return f"ObjectPath({self.url!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ObjectPath) and other.url == self.url

    def __hash__(self) -> int:
        return hash(self.url)


Location = Path | ObjectPath


def is_url(value: object) -> bool:
    return isinstance(value, str) and "://" in value


def location(value: str | os.PathLike | ObjectPath) -> Location:
    """A `Path` for a local folder, an `ObjectPath` for `scheme://...`."""
    if isinstance(value, ObjectPath | Path):
        return value
    text = os.fspath(value)
    return ObjectPath(text) if is_url(text) else Path(text)


# A config field holding a folder or an object-storage URL; an unsupported scheme is an error
# (a plain `Path` would silently turn `gs://b` into the local folder `gs:/b`).
LocationField = Annotated[Location, PlainValidator(location), PlainSerializer(str, return_type=str)]


@functools.cache
def _store(scheme: str, bucket: str, pid: int, env: tuple) -> Any:
    # One client per bucket, process (a forked child builds its own connection pool) and AWS_*
    # environment (the store reads its endpoint and credentials from there).
    try:
        from obstore.store import S3Store
    except ImportError as err:
        raise ImportError(INSTALL_HINT) from err
    # Conditional updates by etag are what `exclusive` relies on.
    return S3Store(bucket, conditional_put="etag")


def _client(where: ObjectPath) -> Any:
    env = tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith("AWS_")))
    return _store(where.scheme, where.bucket, os.getpid(), env)


def exists(where: Location) -> bool:
    if isinstance(where, Path):
        return where.exists()
    import obstore

    try:
        obstore.head(_client(where), where.key)
    except FileNotFoundError:
        return False
    return True


def read_bytes(where: Location) -> bytes:
    """The whole object or file; `FileNotFoundError` naming `where` when there is none."""
    if isinstance(where, Path):
        return where.read_bytes()
    import obstore

    try:
        return bytes(obstore.get(_client(where), where.key).bytes())
    except FileNotFoundError:
        raise FileNotFoundError(f"no object at {where}") from None


def _version(where: ObjectPath) -> tuple[bytes, str | None] | None:
    import obstore

    try:
        got = obstore.get(_client(where), where.key)
    except FileNotFoundError:
        return None
    return bytes(got.bytes()), got.meta.get("e_tag")


def write_bytes(where: Location, data: bytes, *, if_absent: bool = False) -> bool:
    """Write `data` atomically; with `if_absent`, only if nothing is there yet (returns False)."""
    if isinstance(where, Path):
        try:
            with atomic_path(where, create_only=if_absent) as tmp:
                tmp.write_bytes(data)
        except FileExistsError:
            return False
        return True
    import obstore
    from obstore.exceptions import AlreadyExistsError

    try:
        obstore.put(
            _client(where),
            where.key,
            data,
            mode="create" if if_absent else "overwrite",
            use_multipart=False,
        )
    except AlreadyExistsError:
        return False
    return True


def delete(where: Location) -> None:
    """Remove the file or object; nothing there is fine."""
    if isinstance(where, Path):
        where.unlink(missing_ok=True)
        return
    import obstore

    with contextlib.suppress(FileNotFoundError):
        obstore.delete(_client(where), where.key)


def list_files(where: Location, suffix: str = "") -> list[str]:
    """Paths relative to `where` of every file below it ending with `suffix`, sorted."""
    if isinstance(where, Path):
        if not where.is_dir():
            return []
        return sorted(
            p.relative_to(where).as_posix()
            for p in where.rglob(f"*{suffix}")
            if p.is_file() and not p.name.startswith(".")
        )
    import obstore

    prefix = where.key + "/" if where.key else ""
    names = []
    for batch in obstore.list(_client(where), prefix or None):
        for meta in batch:
            rel = meta["path"][len(prefix) :]
            if rel.endswith(suffix) and not rel.rsplit("/", 1)[-1].startswith("."):
                names.append(rel)
    return sorted(names)


def read_parquet(where: Location, columns: list[str] | None = None) -> pl.DataFrame:
    if isinstance(where, Path):
        return pl.read_parquet(where, columns=columns)
    return pl.read_parquet(io.BytesIO(read_bytes(where)), columns=columns)


def write_parquet(frame: pl.DataFrame, where: Location) -> None:
    """Write `frame` as Parquet atomically: readers see the old table or the new one whole."""
    if isinstance(where, Path):
        with atomic_path(where) as tmp:
            frame.write_parquet(tmp)
        return
    buffer = io.BytesIO()
    frame.write_parquet(buffer)
    write_bytes(where, buffer.getvalue())


class LeaseLost(RuntimeError):
    """Another process took over a lease this one held (it stopped renewing for `ttl_s`)."""


@contextlib.contextmanager
def exclusive(where: Location, *, ttl_s: float = 120.0, poll_s: float = 0.5) -> Iterator[None]:
    """Hold the lock at `where` while the block runs; one holder at a time on every machine."""
    if isinstance(where, Path):
        where.parent.mkdir(parents=True, exist_ok=True)
        with open(where, "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
        return
    lease = _Lease(where, ttl_s=ttl_s, poll_s=poll_s)
    lease.acquire()
    try:
        yield
    finally:
        lease.release()


class _Lease:
    """A lock object on object storage: created if absent, renewed and released by its owner."""

    def __init__(self, where: ObjectPath, *, ttl_s: float, poll_s: float) -> None:
        self.where, self.ttl_s, self.poll_s = where, ttl_s, poll_s
        self.owner = f"{os.uname().nodename}:{os.getpid()}:{uuid.uuid4().hex}"
        self.etag: str | None = None
        self.lost = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _body(self) -> bytes:
        return json.dumps({"owner": self.owner, "at": time.time()}).encode()

    def _put(self, mode: Any) -> str | None:
        import obstore

        return obstore.put(_client(self.where), self.where.key, self._body(), mode=mode)["e_tag"]

    def acquire(self) -> None:
        from obstore.exceptions import AlreadyExistsError, PreconditionError

        seen: tuple[str | None, float] | None = None  # (etag, when first seen unchanged)
        while True:
            try:
                self.etag = self._put("create")
                break
            except AlreadyExistsError:
                pass
            current = _version(self.where)
            if current is None:
                continue  # released between our create and our read: try again at once
            etag = current[1]
            now = time.monotonic()
            if seen is None or seen[0] != etag:
                seen = (etag, now)
            elif now - seen[1] >= self.ttl_s:
                # Unrenewed for a whole ttl by our own clock: its holder is gone. Only one
                # waiter's conditional update on that etag succeeds.
                try:
                    self.etag = self._put({"e_tag": etag})
                    break
                except (PreconditionError, FileNotFoundError):
                    seen = None
                    continue
            time.sleep(self.poll_s)
        self._thread = threading.Thread(target=self._renew, daemon=True)
        self._thread.start()

    def _renew(self) -> None:
        from obstore.exceptions import PreconditionError

        while not self._stop.wait(self.ttl_s / 4):
            try:
                self.etag = self._put({"e_tag": self.etag})
            except (PreconditionError, FileNotFoundError):
                self.lost = True
                return
            except Exception:  # a network hiccup: the next renewal tries again
                continue

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self.lost:
            raise LeaseLost(f"the lock {self.where} was taken over while held by {self.owner}")
        current = _version(self.where)
        if current is not None and current[1] == self.etag:
            delete(self.where)


def stage_tables_dir(data_dir: str | Path | ObjectPath) -> Location:
    """Where the stage tables of a config's `data_dir` live (the IO manager's base_dir)."""
    return location(data_dir) / "assets"


def partition_path(
    base_dir: str | Path | ObjectPath, asset: str | Sequence[str], partition: str
) -> Location:
    """`<base_dir>/<asset key>/<partition>.parquet`: the one place that knows the layout."""
    where = location(base_dir)
    for part in [asset] if isinstance(asset, str) else list(asset):
        where = where / part
    return where / f"{partition}.parquet"
