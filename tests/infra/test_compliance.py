"""cdk-nag (AwsSolutions), cfn-lint and the real CDK CLI on the synthesized app."""

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from cfnlint.api import lint_all

ROOT = Path(__file__).resolve().parents[2]


def test_cdk_nag_fails_the_synth_on_an_unacknowledged_finding(tmp_path):
    """The control: the same plugin set-up rejects a stack with a finding (so a green synth means zero findings)."""
    import aws_cdk as cdk
    from aws_cdk import aws_s3 as s3
    from cdk_nag import AwsSolutionsChecks

    app = cdk.App(outdir=str(tmp_path))
    stack = cdk.Stack(app, "Control")
    s3.Bucket(stack, "Unlogged")
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    with pytest.raises(Exception, match="AwsSolutions-S1"):
        app.synth()
    report = json.loads((tmp_path / "validation-report.json").read_text())
    rules = {v["ruleName"] for r in report["pluginReports"] for v in r["violations"]}
    assert {"AwsSolutions-S1", "AwsSolutions-S10"} <= rules


def test_platform_synthesizes_with_every_acknowledgement_recorded_with_a_reason(template_dict):
    acknowledged = {}
    for logical_id, resource in template_dict["Resources"].items():
        for rule in resource.get("Metadata", {}).get("cdk_nag", {}).get("rules_to_suppress", []):
            acknowledged.setdefault(rule["id"], []).append(logical_id)
            assert len(rule["reason"]) > 20, (logical_id, rule)
    assert "AwsSolutions-APIG4" in acknowledged
    # IAM5 is acknowledged per wildcard, never for a whole rule.
    assert "AwsSolutions-IAM5" not in acknowledged
    assert any(rule.startswith("AwsSolutions-IAM5[Resource::") for rule in acknowledged)


def test_cfn_lint_finds_no_errors(cloud_assembly):
    assembly, stack = cloud_assembly
    template = Path(assembly.directory, stack.template_file).read_text()
    matches = lint_all(template)
    errors = [str(m) for m in matches if m.rule.id.startswith("E")]
    assert errors == []


def test_cdk_cli_synthesizes_from_cdk_json(tmp_path):
    npx = shutil.which("npx")
    assert npx, "Node.js/npm are required (make install runs npm ci)"
    env = {**os.environ, "CDK_DISABLE_VERSION_CHECK": "1", "CI": "true"}
    result = subprocess.run(
        [npx, "--no-install", "cdk", "synth", "--quiet", "--no-notices", "-o", str(tmp_path / "out")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    template = json.loads((tmp_path / "out" / "MlopsPlatform.template.json").read_text())
    assert "AWS::StepFunctions::StateMachine" in {r["Type"] for r in template["Resources"].values()}
