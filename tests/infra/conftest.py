from __future__ import annotations

import pytest

from tests.infra.terraform_config import Terraform, load


@pytest.fixture(scope="session")
def terraform() -> Terraform:
    return load()
