"""pytest fixtures for the Salesforce stand-in (registered by tests/conftest.py).

- ``salesforce_standin``: a started :class:`~tests.standins.salesforce.SalesforceStandin`
  (default settings), stopped after the test.
- ``salesforce_ca_env``: points ``REQUESTS_CA_BUNDLE`` and ``SSL_CERT_FILE`` at the
  stand-in's test CA for the test's duration; yields the stand-in.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.standins.salesforce import SalesforceStandin


@pytest.fixture
def salesforce_standin() -> Iterator[SalesforceStandin]:
    standin = SalesforceStandin()
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
