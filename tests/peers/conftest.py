"""Fixtures shared by the peers tests: one Kubernetes control plane per session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.kubernetes import Cluster


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """etcd and kube-apiserver on loopback (started once: it takes seconds)."""
    started = Cluster(tmp_path_factory.mktemp("kubernetes")).start()
    yield started
    started.stop()
