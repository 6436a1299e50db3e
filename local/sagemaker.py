"""SageMaker training jobs on the local cloud: Step Functions' `sagemaker:createTrainingJob.sync`, run in-process.

moto records a CreateTrainingJob (and says it Completed at once) but runs nothing, and its state
machine interpreter refuses the `.sync` integration for SageMaker. This patch implements the task as
Step Functions does for the pipeline's template:

- CreateTrainingJob is called (moto records the job, InProgress), and the job runs: its channels
  (S3Prefix) are downloaded from the local S3 into a job directory, and the training entry point the
  job's `sagemaker_program` names (train_entry.py: functions.training.train_entry.main, the code the
  source directory holds on AWS) runs in-process with SageMaker's environment (SM_CHANNEL_<NAME>,
  SM_MODEL_DIR, SM_OUTPUT_DIR, SM_HPS); the model directory is uploaded as
  <S3OutputPath>/<job>/output/model.tar.gz.
- The task waits for the job's end (DescribeTrainingJob, as `.sync` polls it). Completed: its output
  is the job's description. Failed: the task fails with States.TaskFailed and the description as its
  cause, FailureReason being what the entry point wrote to SM_OUTPUT_DIR/failure (as SageMaker reads it).
- A SageMaker API error (an invalid request; a job name already taken, which moto would reuse) is
  SageMaker.AmazonSageMakerException.

Not modelled: instances, the image and its pip install of the source directory's requirements (the
local cloud's own packages run the entry point), MaxRuntimeInSeconds, and stopping a running job.
"""

import io
import json
import logging
import tarfile
import tempfile
import threading
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final, cast

from botocore.exceptions import ClientError
from moto.sagemaker.models import sagemaker_backends
from moto.stepfunctions.parser.api import HistoryEventType, TaskFailedEventDetails
from moto.stepfunctions.parser.asl.component.common.error_name.custom_error_name import CustomErrorName
from moto.stepfunctions.parser.asl.component.common.error_name.failure_event import (
    FailureEvent,
    FailureEventException,
)
from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name import StatesErrorName
from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name_type import StatesErrorNameType
from moto.stepfunctions.parser.asl.component.state.exec.state_task.credentials import StateCredentials
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.resource import (
    ResourceCondition,
    ResourceRuntimePart,
)
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service import StateTaskService
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_callback import (
    StateTaskServiceCallback,
)
from moto.stepfunctions.parser.asl.eval.environment import Environment
from moto.stepfunctions.parser.asl.eval.event.event_detail import EventDetails
from moto.stepfunctions.parser.asl.utils.boto_client import boto_client_for
from moto.stepfunctions.parser.asl.utils.encoding import to_json_str

log = logging.getLogger("mlops.local")

ENTRY_POINT = "train_entry.py"  # the program the template's jobs run (infra/training.py's source directory)
MAX_FAILURE_REASON = 1024
_CREATE_TRAINING_JOB_PARAMETERS: Final[set[str]] = {
    "AlgorithmSpecification", "HyperParameters", "InputDataConfig", "OutputDataConfig", "ResourceConfig",
    "RoleArn", "StoppingCondition", "Tags", "TrainingJobName", "VpcConfig", "EnableNetworkIsolation",
    "Environment", "CheckpointConfig", "DebugHookConfig", "ExperimentConfig",
}


def run_entry_point(environ: dict[str, str]) -> int:
    """The job's program, as the scikit-learn container runs `sagemaker_program` (train_entry.py's main)."""
    from functions.training.train_entry import main

    return main(environ)


class TrainingJobRunner:
    """Runs a recorded training job on a thread, and moves its status in moto as SageMaker would."""

    def __init__(self, account: str, region: str, s3: Any, entry_point: Callable[[dict[str, str]], int]):
        self.account, self.region, self.s3, self.entry_point = account, region, s3, entry_point

    def job(self, name: str) -> Any:
        return sagemaker_backends[self.account][self.region].training_jobs[name]

    def start(self, name: str) -> threading.Thread:
        job = self.job(name)
        job.training_job_status, job.secondary_status = "InProgress", "Starting"
        thread = threading.Thread(target=self.run, args=(name,), daemon=True, name=f"training-job-{name}")
        thread.start()
        return thread

    def run(self, name: str) -> None:
        job = self.job(name)
        try:
            failure = self._train(job)
        except Exception as error:  # what the container reports for a program that crashed
            log.exception("training job %s failed", name)
            failure = f"AlgorithmError: {type(error).__name__}: {error}\n{traceback.format_exc(limit=3)}"
        if failure is None:
            job.training_job_status = job.secondary_status = "Completed"
        else:
            job.training_job_status, job.secondary_status = "Failed", "Failed"
            job.failure_reason = failure[:MAX_FAILURE_REASON]

    def _train(self, job: Any) -> str | None:
        """Run the job's program on its channels; None when it succeeded, else its FailureReason."""
        program = json.loads(job.hyper_parameters.get("sagemaker_program", '""'))
        if program != ENTRY_POINT:
            return f"ClientError: the local cloud runs the platform's {ENTRY_POINT}, not {program!r}"
        with tempfile.TemporaryDirectory(prefix="sagemaker-job-") as root:
            base = Path(root)
            environ = {"SM_MODEL_DIR": str(base / "model"), "SM_OUTPUT_DIR": str(base / "output"),
                       "SM_OUTPUT_DATA_DIR": str(base / "output" / "data"), "SM_CURRENT_HOST": "algo-1",
                       "SM_HOSTS": json.dumps(["algo-1"]), "SM_HPS": json.dumps(job.hyper_parameters),
                       "SM_CHANNELS": json.dumps([c["ChannelName"] for c in job.input_data_config])}
            for channel in job.input_data_config:
                target = base / "input" / "data" / channel["ChannelName"]
                self._download(channel["DataSource"]["S3DataSource"]["S3Uri"], target)
                environ[f"SM_CHANNEL_{channel['ChannelName'].upper()}"] = str(target)
            (base / "model").mkdir()
            if self.entry_point(environ) != 0:
                failure = base / "output" / "failure"
                return failure.read_text() if failure.exists() else "AlgorithmError: the program exited with 1"
            bucket, prefix = _split(job.output_data_config["S3OutputPath"])
            key = f"{prefix.rstrip('/')}/{job.training_job_name}/output/model.tar.gz".lstrip("/")
            self.s3.put_object(Bucket=bucket, Key=key, Body=_tar_gz(base / "model"))
        return None

    def _download(self, uri: str, target: Path) -> None:
        """Every object under an S3Prefix channel's URI, by its key relative to the prefix's folder."""
        bucket, prefix = _split(uri)
        folder = prefix.rsplit("/", 1)[0] + "/" if "/" in prefix else ""
        target.mkdir(parents=True, exist_ok=True)
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                path = target / item["Key"][len(folder):]
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(self.s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read())


def _split(uri: str) -> tuple[str, str]:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return bucket, key


def _tar_gz(directory: Path) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for path in sorted(directory.rglob("*")):
            if path.is_file():
                tar.add(path, arcname=path.relative_to(directory).as_posix())
    return buffer.getvalue()


class StateTaskServiceSageMaker(StateTaskServiceCallback):
    """`arn:aws:states:::sagemaker:createTrainingJob(.sync)`; other SageMaker actions stay moto's (unsupported)."""

    entry_point: Callable[[dict[str, str]], int] = staticmethod(run_entry_point)

    def __init__(self) -> None:
        # moto's callback machinery needs a task token's endpoint to wait on; .waitForTaskToken itself is refused.
        super().__init__(supported_integration_patterns=cast(Any, {ResourceCondition.Sync,
                                                                   ResourceCondition.WaitForTaskToken}))

    def _get_supported_parameters(self) -> set[str] | None:
        return _CREATE_TRAINING_JOB_PARAMETERS if self.resource.api_action.lower() == "createtrainingjob" else None

    def _validate_service_integration_is_supported(self) -> None:
        super()._validate_service_integration_is_supported()
        if self.resource.condition == ResourceCondition.WaitForTaskToken:
            raise ValueError(f"SageMaker does not support .waitForTaskToken ({self.resource.resource_arn})")

    def _from_error(self, env: Environment, ex: Exception) -> FailureEvent:
        if isinstance(ex, ClientError):  # Step Functions' name for the SageMaker API's errors
            error = ex.response["Error"]
            cause = (f"{error.get('Message', '')} (Service: AmazonSageMaker; Status Code: "
                     f"{ex.response['ResponseMetadata'].get('HTTPStatusCode')}; Error Code: {error.get('Code')})")
            return FailureEvent(env=env, error_name=CustomErrorName("SageMaker.AmazonSageMakerException"),
                                event_type=HistoryEventType.TaskFailed,
                                event_details=cast(EventDetails, {"taskFailedEventDetails": TaskFailedEventDetails(
                                    error="SageMaker.AmazonSageMakerException", cause=cause,
                                    resource=self._get_sfn_resource(), resourceType=self._get_sfn_resource_type())}))
        return super()._from_error(env=env, ex=ex)

    def _eval_service_task(self, env: Environment, resource_runtime_part: ResourceRuntimePart,
                           normalised_parameters: dict, state_credentials: StateCredentials) -> None:
        name = normalised_parameters["TrainingJobName"]
        if name in sagemaker_backends[resource_runtime_part.account][resource_runtime_part.region].training_jobs:
            refused = {"Error": {"Code": "ResourceInUse", "Message": "Training job names must be unique within an "
                                 f"AWS account and region, and {name} already exists."},
                       "ResponseMetadata": {"HTTPStatusCode": 400}}
            raise ClientError(cast(Any, refused), "CreateTrainingJob")  # moto would reuse the name
        sagemaker: Any = boto_client_for(region=resource_runtime_part.region, service="sagemaker",
                                         state_credentials=state_credentials)
        response = sagemaker.create_training_job(**normalised_parameters)
        response.pop("ResponseMetadata", None)
        s3 = boto_client_for(region=resource_runtime_part.region, service="s3", state_credentials=state_credentials)
        TrainingJobRunner(resource_runtime_part.account, resource_runtime_part.region, s3,
                          type(self).entry_point).start(normalised_parameters["TrainingJobName"])
        env.stack.append(response)

    def _build_sync_resolver(self, env: Environment, resource_runtime_part: ResourceRuntimePart,
                             normalised_parameters: dict, state_credentials: StateCredentials) -> Callable[[], Any]:
        sagemaker: Any = boto_client_for(region=resource_runtime_part.region, service="sagemaker",
                                         state_credentials=state_credentials)
        env.stack.pop()  # CreateTrainingJob's answer
        name = normalised_parameters["TrainingJobName"]

        def resolve() -> dict | None:
            described = sagemaker.describe_training_job(TrainingJobName=name)
            described.pop("ResponseMetadata", None)
            status = described["TrainingJobStatus"]
            if status == "Completed":
                return json.loads(to_json_str(described))  # times as JSON gives them
            if status in {"Failed", "Stopped"}:
                raise FailureEventException(FailureEvent(
                    env=env, error_name=StatesErrorName(typ=StatesErrorNameType.StatesTaskFailed),
                    event_type=HistoryEventType.TaskFailed,
                    event_details=cast(EventDetails, {"taskFailedEventDetails": TaskFailedEventDetails(
                        resource=self._get_sfn_resource(), resourceType=self._get_sfn_resource_type(),
                        error=StatesErrorNameType.StatesTaskFailed.to_name(), cause=to_json_str(described))})))
            return None

        return resolve


def state_task_service_for(moto_factory: Callable[..., StateTaskService]) -> Callable[..., StateTaskService]:
    """moto's factory of service tasks, with SageMaker's createTrainingJob served here."""

    def factory(service_name: str) -> StateTaskService:
        return StateTaskServiceSageMaker() if service_name == "sagemaker" else moto_factory(service_name=service_name)

    return factory
