"""Shared test configuration: Hypothesis profiles (`ci` in `make test`, `long` on demand).

The `-rest` profiles are for runs with CRMSYNC_WORLD_CRM=rest, where every CRM call of
a cycle goes over HTTP to the reference CRM: the same properties, fewer examples.

Google's Firestore and Pub/Sub emulators are session fixtures (`firestore_emulator`,
`pubsub_emulator`); `firestore_client` gives each test an emptied Firestore.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import pytest
from hypothesis import HealthCheck, settings

from sandbox.local.emulators import Emulator, EmulatorUnavailable, start_firestore, start_pubsub

# A real browser (Debian's Chromium through Playwright) for the tests that ask for
# `browser` or `page`.
pytest_plugins = ["tests.browser"]

if TYPE_CHECKING:
    from google.cloud import firestore

settings.register_profile(
    "ci", max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "long", max_examples=5000, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("dev", max_examples=50, deadline=None)
settings.register_profile(
    "ci-rest", max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "long-rest", max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("dev-rest", max_examples=10, deadline=None)
# The unit suite over a provider's sandbox (Google's, Graph's): each machine step crosses
# http(s) to the sandbox and back through the real adapters, so these passes draw the
# fewest examples: the rules themselves get 500 a test in the memory pass; these prove
# that the adapters carry them over the wire.
settings.register_profile(
    "ci-sandbox", max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "long-sandbox", max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("dev-sandbox", max_examples=5, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))


# -- Google's emulators (sandbox/local/emulators.py) --------------------------------------
# Started once per test session, on free ports, and stopped at its end. A missing
# emulator fails the tests that need it, with the way to install it: never a skip.


@pytest.fixture(scope="session")
def firestore_emulator() -> Iterator[Emulator]:
    emulator = _started(start_firestore)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FIRESTORE_EMULATOR_HOST", emulator.host)
        yield emulator
    emulator.stop()


@pytest.fixture(scope="session")
def pubsub_emulator() -> Iterator[Emulator]:
    emulator = _started(start_pubsub)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PUBSUB_EMULATOR_HOST", emulator.host)
        yield emulator
    emulator.stop()


@pytest.fixture
def firestore_client(firestore_emulator: Emulator) -> Iterator[firestore.Client]:
    """A client of the session's Firestore emulator, which holds no documents yet."""
    from google.cloud import firestore

    firestore_emulator.reset()
    client = firestore.Client(project=firestore_emulator.project)
    yield client
    client.close()


def _started(start: Callable[[], Emulator]) -> Emulator:
    try:
        return start()
    except EmulatorUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(autouse=True)
def _worlds_stop_serving() -> Iterator[None]:
    """The reference CRMs the test's worlds served stop with the test (SyncWorld with
    crm="rest"): a world something else keeps alive must not keep its server's thread."""
    yield
    from crmsync.testing.serving import stop_served

    stop_served()
