"""cdk-nag (AwsSolutions), cfn-lint and the real CDK CLI on the synthesized app (run in tests/background.py)."""

import json

from tests.background import background


def test_cdk_nag_fails_the_synth_on_an_unacknowledged_finding():
    """The control: the same plugin set-up rejects a stack with a finding (so a green synth means zero findings)."""
    background.start(synth=True)
    control = background.nag_control
    assert control is not None
    assert control.wait() != 0 and "AwsSolutions-S1" in control.output()
    report = json.loads((background.root / "control" / "validation-report.json").read_text())
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


def test_cfn_lint_finds_no_errors(synthesized_template):
    """cfn-lint ran on the CLI's template in the background; its errors (not its warnings) fail the build."""
    assert background.lint is not None
    background.lint.wait()
    findings = json.loads(background.lint.output() or "[]")
    errors = [f"{f['Rule']['Id']} {f['Message']}" for f in findings if f["Level"] == "Error"]
    assert errors == []


def test_cdk_cli_synthesizes_from_cdk_json(synthesized_template):
    """The template every infrastructure test reads is the CDK CLI's, from cdk.json (what `cdk deploy` runs)."""
    template = json.loads(synthesized_template.read_text())
    assert "AWS::StepFunctions::StateMachine" in {r["Type"] for r in template["Resources"].values()}
    manifest = json.loads((synthesized_template.parent / "manifest.json").read_text())
    assert manifest["artifacts"]["MlopsPlatform"]["type"] == "aws:cloudformation:stack"


def test_each_acknowledgement_is_on_exactly_the_resources_its_finding_is_on(template_dict):
    """The platform synthesized with no acknowledgement (tests/infra/nag_control.py) reports each finding
    on its resource; the template acknowledges exactly those findings, on exactly those resources."""
    background.start(synth=True)
    control = background.nag_control
    assert control is not None
    control.wait()
    report = json.loads((background.root / "control" / "unacknowledged" / "validation-report.json").read_text())
    findings = {(v["ruleName"], c["constructPath"]) for r in report["pluginReports"] for v in r["violations"]
                for c in v["violatingConstructs"] if v["ruleName"].startswith("AwsSolutions-")}
    acknowledged = {(rule["id"], resource["Metadata"]["aws:cdk:path"])
                    for resource in template_dict["Resources"].values()
                    for rule in resource.get("Metadata", {}).get("cdk_nag", {}).get("rules_to_suppress", [])
                    if rule["id"].startswith("AwsSolutions-")}
    assert findings, "the unacknowledged synth reported nothing: the control did not run"
    assert sorted(acknowledged - findings) == [], "acknowledged where there is no such finding"
    assert sorted(findings - acknowledged) == [], "a finding not acknowledged (the synth would have failed)"
