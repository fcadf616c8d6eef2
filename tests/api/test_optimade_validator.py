"""The OPTIMADE consortium's own validator, run against the live test server."""

from __future__ import annotations

import pytest
from optimade.validator import ImplementationValidator

from tests.api.conftest import Api


@pytest.mark.slow
def test_the_optimade_validator_passes(api: Api) -> None:
    validator = ImplementationValidator(base_url=f"{api.url}/optimade/v1", verbosity=-1)
    validator.validate_implementation()
    results = validator.results
    assert results.failure_count == 0, results.failure_messages
    assert results.internal_failure_count == 0, results.internal_failure_messages
    assert results.optional_failure_count == 0, results.optional_failure_messages
