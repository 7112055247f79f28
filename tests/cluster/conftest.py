"""Fixtures for the cluster tests: a real S3 API (moto in server mode) on 127.0.0.1."""

from __future__ import annotations

import pytest

from codeio_dagster.cluster.local import S3Server, moto_s3


@pytest.fixture(scope="module")
def s3_server(tmp_path_factory) -> S3Server:
    with moto_s3(tmp_path_factory.mktemp("moto")) as server:
        yield server


@pytest.fixture
def s3(s3_server: S3Server, monkeypatch) -> S3Server:
    """The server's variables set for this test, as a worker node would have them."""
    for key, value in s3_server.env().items():
        monkeypatch.setenv(key, value)
    return s3_server
