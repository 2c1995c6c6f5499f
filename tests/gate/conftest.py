"""Fixtures for the gate tests: a varied meetings store and one local[2] SparkSession."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from gate_support import meetings_store

from consentry import Store


@pytest.fixture
def mstore(make_store: Callable[..., Store]) -> Store:
    return meetings_store(make_store)


@pytest.fixture(scope="session")
def spark() -> Iterator[Any]:
    """One SparkSession on local[2] for the whole run (tests marked ``spark``)."""
    pytest.importorskip("pyspark")
    from pyspark.sql import SparkSession

    session = (
        SparkSession.builder.master("local[2]")
        .appName("consentry-gate-tests")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.default.parallelism", "2")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()
