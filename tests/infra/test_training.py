"""Infrastructure: the training section of the synthesized pipeline. The search's Choice and Maps (inline and
Distributed, reading and writing under runs/), the backend's Choice, and the SageMaker training job: its .sync
task, S3 paths, instance, volume and longest run from the settings, its least-privilege role, and its source."""

import io
import json
import tarfile
from pathlib import Path

import pytest

from infra.settings import PlatformSettings, step_timeout_seconds
from infra.training import SKLEARN_REPOSITORY, TRIAL_INPUT, sagemaker_source
from tests.infra.test_stack import _definition, pipeline_machine, resources

SETTINGS = PlatformSettings()


def statements(template_dict, role_prefix: str) -> list[dict]:
    """The statements of the policies attached to the one role whose logical id starts with `role_prefix`."""
    (role,) = [k for k in resources(template_dict, "AWS::IAM::Role") if k.startswith(role_prefix)]
    return [s for p in resources(template_dict, "AWS::IAM::Policy").values()
            if {"Ref": role} in p["Properties"]["Roles"] for s in p["Properties"]["PolicyDocument"]["Statement"]]


def actions(statement: dict) -> set[str]:
    return set(statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]])


def text(value) -> str:
    return json.dumps(value, sort_keys=True)


def test_the_backend_is_a_choice_between_the_train_step_and_a_sagemaker_training_job(template_dict):
    states = _definition(template_dict)["States"]
    assert states["PlanTraining"]["Next"] == "SearchStrategy"
    assert states["SearchStrategy"]["Default"] == "TrainingBackend"
    backend = states["TrainingBackend"]
    assert backend["Choices"] == [{"Variable": "$.plan.backend", "StringEquals": "sagemaker",
                                   "Next": "TrainOnSageMaker"}]
    assert backend["Default"] == "Train"
    assert states["TrainOnSageMaker"]["Next"] == "CollectTraining" and states["CollectTraining"]["Next"] == "Evaluate"
    assert states["Train"]["Next"] == "Evaluate"


def test_the_sagemaker_task_runs_the_entry_point_on_the_runs_paths_with_the_settings_limits(template_dict):
    task = _definition(template_dict)["States"]["TrainOnSageMaker"]
    assert task["Resource"].endswith(":states:::sagemaker:createTrainingJob.sync")  # waits for the job's end
    assert task["TimeoutSeconds"] == step_timeout_seconds(SETTINGS, "TrainOnSageMaker")
    assert task["ResultPath"] == "$.training_job" and task["ResultSelector"] == {
        "job_name.$": "$.TrainingJobName", "status.$": "$.TrainingJobStatus",
        "model_artifacts.$": "$.ModelArtifacts.S3ModelArtifacts"}
    assert task["Retry"] == [{"ErrorEquals": ["SageMaker.AmazonSageMakerException"], "IntervalSeconds": 10,
                              "MaxAttempts": 3, "BackoffRate": 2}]
    job = task["Parameters"]
    # a retried task creates a job of its own name: job names are unique per account and region
    assert job["TrainingJobName.$"] == "States.Format('{}-{}', $.plan.job.name, $$.State.RetryCount)"
    assert job["InputDataConfig"] == [
        {"ChannelName": channel, "DataSource": {"S3DataSource": {"S3Uri.$": f"$.plan.job.{channel}_uri",
                                                                 "S3DataType": "S3Prefix"}}}
        for channel in ("features", "config")]
    assert job["OutputDataConfig"] == {"S3OutputPath.$": "$.plan.job.output_uri"}
    assert job["ResourceConfig"] == {"InstanceCount": 1, "InstanceType": SETTINGS.sagemaker_instance_type,
                                     "VolumeSizeInGB": SETTINGS.sagemaker_volume_gb}
    assert job["StoppingCondition"] == {"MaxRuntimeInSeconds": SETTINGS.sagemaker_max_runtime_minutes * 60}
    assert job["AlgorithmSpecification"]["TrainingInputMode"] == "File"
    assert job["AlgorithmSpecification"]["TrainingImage"].endswith(
        f"/{SKLEARN_REPOSITORY}:{SETTINGS.sagemaker_framework_version}-cpu-py3")
    hyper = job["HyperParameters"]
    assert json.loads(hyper["sagemaker_program"]) == "train_entry.py"
    assert json.loads(hyper["sagemaker_submit_directory"]).startswith("s3://")


def test_the_image_is_the_scikit_learn_framework_image_of_the_stacks_region(template_dict):
    _, machine = pipeline_machine(template_dict)
    parts = text(machine["Properties"]["DefinitionString"])
    (mapping,) = [m for name, m in template_dict["Mappings"].items() if name.startswith("TrainingSklearnImageAccounts")]
    assert mapping["us-east-1"] == {"account": "683313688378"} and mapping["eu-west-1"] == {"account": "141502667606"}
    assert "Fn::FindInMap" in parts and '"Ref": "AWS::Region"' in parts


def test_the_training_job_role_reaches_the_runs_prefix_the_image_the_source_and_its_logs_only(template_dict):
    (role,) = [r for k, r in resources(template_dict, "AWS::IAM::Role").items()
               if k.startswith("TrainingTrainingJobRole")]
    assert role["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {
        "Service": "sagemaker.amazonaws.com"}
    granted = statements(template_dict, "TrainingTrainingJobRole")
    by_action = {action: statement for statement in granted for action in actions(statement)}
    assert set(by_action) == {"s3:GetObject", "s3:PutObject", "s3:ListBucket", "ecr:BatchCheckLayerAvailability",
                              "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:GetAuthorizationToken",
                              "logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents",
                              "logs:DescribeLogStreams"}
    s3 = [s for s in granted if actions(s) & {"s3:GetObject", "s3:PutObject", "s3:ListBucket"}]
    on_bucket = [s for s in s3 if "DataBucket" in text(s["Resource"])]
    assert all(text(s["Resource"]).count("/runs/*") == 1 or s.get("Condition") == {
        "StringLike": {"s3:prefix": ["runs/*"]}} for s in on_bucket)  # runs/ only: not datasets/, not models/
    (source,) = [s for s in s3 if "DataBucket" not in text(s["Resource"])]
    assert actions(source) == {"s3:GetObject"} and "cdk-hnb659fds-assets" in text(source["Resource"])
    assert ".gz" in text(source["Resource"]) and "*" not in text(source["Resource"])  # the one object
    assert all(s["Resource"] != "*" for s in granted if actions(s) != {"ecr:GetAuthorizationToken"})
    (ecr,) = [s for s in granted if "ecr:BatchGetImage" in actions(s)]
    assert f"repository/{SKLEARN_REPOSITORY}" in text(ecr["Resource"])
    (logs,) = [s for s in granted if "logs:PutLogEvents" in actions(s)]
    assert "/aws/sagemaker/TrainingJobs" in text(logs["Resource"])
    assert not any(a.startswith(("dynamodb:", "states:", "iam:")) for s in granted for a in actions(s))


def test_the_pipeline_may_start_and_follow_training_jobs_and_pass_their_role_only_to_sagemaker(template_dict):
    granted = statements(template_dict, "TrainingPipelineRole")
    (jobs,) = [s for s in granted if "sagemaker:CreateTrainingJob" in actions(s)]
    assert {"sagemaker:CreateTrainingJob", "sagemaker:DescribeTrainingJob", "sagemaker:StopTrainingJob"} <= actions(
        jobs) <= {"sagemaker:CreateTrainingJob", "sagemaker:DescribeTrainingJob", "sagemaker:StopTrainingJob",
                  "sagemaker:AddTags"} and "training-job/*" in text(jobs["Resource"])
    (passing,) = [s for s in granted if "iam:PassRole" in actions(s)]
    assert passing["Condition"] == {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}}
    assert "TrainingTrainingJobRole" in text(passing["Resource"])
    # the Distributed Map's ItemReader and ResultWriter: objects under runs/ only
    s3 = [s for s in granted if any(a.startswith("s3:") for a in actions(s))]
    assert s3 and all(text(s["Resource"]).endswith('"/runs/*"]]}') for s in s3), s3


def test_the_search_runs_inline_or_in_a_distributed_map_within_the_settings(template_dict):
    states = _definition(template_dict)["States"]
    assert states["SearchStrategy"]["Choices"] == [
        {"Variable": "$.plan.search", "StringEquals": "inline", "Next": "TrialsInline"},
        {"Variable": "$.plan.search", "StringEquals": "distributed", "Next": "TrialsDistributed"}]
    selector = {f"{field}.$": path for field, path in TRIAL_INPUT.items()}
    inline, distributed = states["TrialsInline"], states["TrialsDistributed"]
    assert inline["ItemsPath"] == "$.plan.items" and inline["ItemSelector"] == selector
    assert inline["MaxConcurrency"] == distributed["MaxConcurrency"] == SETTINGS.search_max_concurrency
    assert distributed["ItemProcessor"]["ProcessorConfig"] == {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"}
    assert distributed["ItemReader"] == {"Resource": distributed["ItemReader"]["Resource"],
                                         "ReaderConfig": {"InputType": "JSON"},
                                         "Parameters": {"Bucket.$": "$.bucket", "Key.$": "$.plan.trials_key"}}
    assert distributed["ItemReader"]["Resource"].endswith(":states:::s3:getObject")
    assert distributed["ResultWriter"]["Parameters"] == {
        "Bucket.$": "$.bucket", "Prefix.$": "States.Format('runs/{}/{}/search/map', $.model, $.run_id)"}
    assert distributed["ToleratedFailurePercentage"] == SETTINGS.search_tolerated_failure_percentage
    for search_map in (inline, distributed):  # the Map's output never grows the state: the trials are in S3
        assert search_map["ResultPath"] is None and search_map["Next"] == "SelectBest"


def test_plan_training_gets_its_thresholds_from_the_settings(template_dict):
    from tests.infra.test_operations import functions_by_handler

    _, props = functions_by_handler(template_dict)["training.handler.plan_training"]
    variables = props["Environment"]["Variables"]
    assert variables["SAGEMAKER_THRESHOLD_CELLS"] == str(SETTINGS.sagemaker_threshold_cells)
    assert variables["DISTRIBUTED_SEARCH_THRESHOLD"] == str(SETTINGS.search_distributed_threshold)


def test_the_source_directory_holds_the_entry_point_the_functions_package_and_pinned_requirements():
    functions_dir = Path(__file__).resolve().parents[2] / "functions"
    archive = sagemaker_source(functions_dir).read_bytes()
    assert sagemaker_source(functions_dir).read_bytes() == archive  # the same files: the same asset
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        names = set(tar.getnames())
        shim = tar.extractfile("train_entry.py").read().decode()
        requirements = tar.extractfile("requirements.txt").read().decode().split()
    assert {"train_entry.py", "requirements.txt", "functions/training/train_entry.py", "functions/spec.py"} <= names
    assert not any("__pycache__" in name for name in names)
    assert "from functions.training.train_entry import main" in shim
    pinned = dict(line.split("==") for line in (functions_dir / "requirements.txt").read_text().split()
                  if "==" in line)
    assert {r.split("==")[0]: r.split("==")[1] for r in requirements} == {
        name: pinned[name] for name in ("numpy", "pandas", "pyarrow", "pydantic", "scikit-learn", "scipy", "skops")}


@pytest.mark.parametrize("settings, message", [
    ({"sagemaker_instance_type": "m5.xlarge"}, "sagemaker_instance_type"),
    ({"search_tolerated_failure_percentage": 101}, "search_tolerated_failure_percentage"),
    ({"search_distributed_threshold": 0}, "search_distributed_threshold"),
    ({"sagemaker_max_runtime_minutes": 600, "pipeline_timeout_minutes": 240}, "less than its steps' timeouts"),
])
def test_training_settings_are_validated(settings, message):
    with pytest.raises(ValueError, match=message):
        PlatformSettings.from_context(settings)
