"""cloudbuild.yaml delivers what `make test` checked: test, then package, then
terraform init (state bucket as a substitution), plan to a file, apply that plan."""

from __future__ import annotations

import yaml

from tests.infra.terraform_config import ROOT

PIPELINE = ROOT / "cloudbuild.yaml"


def test_cloud_build_tests_packages_then_plans_and_applies_that_plan() -> None:
    build = yaml.safe_load(PIPELINE.read_text())
    steps = {step["id"]: step for step in build["steps"]}
    assert list(steps) == ["test", "package", "init", "plan", "apply"]
    assert "make test" in steps["test"]["args"][-1]
    assert steps["package"]["args"] == ["package"]
    assert "-backend-config=bucket=${_STATE_BUCKET}" in steps["init"]["args"]
    assert "-out=tfplan" in steps["plan"]["args"]
    assert "-var=project_id=$PROJECT_ID" in steps["plan"]["args"]
    assert steps["apply"]["args"][-1] == "tfplan"
    assert {"_STATE_BUCKET", "_REGION"} <= set(build["substitutions"])
