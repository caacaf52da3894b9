"""pytest fixtures for the Salesforce stand-in (registered by tests/conftest.py).

- ``salesforce_standin``: a started :class:`~tests.standins.salesforce.SalesforceStandin`,
  stopped after the test. Its search-index lag is on: records created through the API stay
  invisible to SOSL for ``INDEX_LAG_SECONDS``, as a busy real org's may for minutes; the
  index clock stands still, so they stay invisible however slowly a test runs.
- ``salesforce_ca_env``: points ``REQUESTS_CA_BUNDLE`` and ``SSL_CERT_FILE`` at the
  stand-in's test CA for the test's duration; yields the stand-in.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.standins.salesforce import SalesforceStandin

INDEX_LAG_SECONDS = 600.0


@pytest.fixture
def salesforce_standin() -> Iterator[SalesforceStandin]:
    standin = SalesforceStandin(index_lag_seconds=INDEX_LAG_SECONDS)
    standin.org.clock = lambda: 0.0  # the index never catches up during a test
    standin.start()
    try:
        yield standin
    finally:
        standin.stop()


@pytest.fixture
def salesforce_ca_env(
    salesforce_standin: SalesforceStandin, monkeypatch: pytest.MonkeyPatch
) -> SalesforceStandin:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", salesforce_standin.ca_bundle)
    monkeypatch.setenv("SSL_CERT_FILE", salesforce_standin.ca_bundle)
    return salesforce_standin
