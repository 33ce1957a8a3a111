"""Fixtures shared by the engine, binding and page tests of the instances app."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from brokers.models import Broker
from devtools.sample_broker import SampleBroker
from tests.instances.helpers import mirrored_broker


@pytest.fixture
def broker_knobs(osb_broker: SampleBroker) -> Iterator[SampleBroker]:
    """Asynchronous operations finish at once unless a test says otherwise; knobs restored afterwards."""
    saved = (osb_broker.async_seconds, osb_broker.async_mode, osb_broker.async_outcome)
    osb_broker.async_seconds = 0.0
    yield osb_broker
    osb_broker.async_seconds, osb_broker.async_mode, osb_broker.async_outcome = saved


@pytest.fixture
def no_cluster(monkeypatch: pytest.MonkeyPatch) -> None:
    """No cluster unless a test asks for the `kube` fixture (which sets KUBECONFIG after this runs)."""
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)


@pytest.fixture
def broker(osb_url: str, osb_broker: SampleBroker) -> Broker:
    """The portal's mirror of the test broker (through the contract proxy when installed)."""
    mirrored = mirrored_broker(osb_url)
    osb_broker.clear_requests()
    return mirrored


@pytest.fixture
def direct(osb_broker: SampleBroker) -> Broker:
    """The mirror talking to the test broker directly: for scripted answers a contract proxy would refuse."""
    mirrored = mirrored_broker(osb_broker.url, name="direct-broker")
    osb_broker.clear_requests()
    return mirrored
