"""The local cloud: a moto server with the synthesized stack deployed on it.

    cloud = LocalCloud(); outputs = cloud.start()   # moto on 127.0.0.1:4566, API on :3000

Everything a client needs is in `outputs` (and in .mlops/outputs.json, and in the outputs file
of `home` when given): the same names the deployed stack outputs, plus the endpoint, region, API
key value and local API URL. The files go when the cloud stops.
"""

import contextlib
import json
import logging
import os
import socket
import threading
from collections.abc import Sequence
from pathlib import Path

import boto3
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import BaseWSGIServer, make_server

from local import patches
from local.alarms import AlarmEvaluator
from local.deploy import Deployer
from local.gateway import Gateway
from local.logs import LogShipper
from local.runtime import LOCAL_RETRY_DELAYS_S, LambdaRuntime
from local.schedules import Scheduler
from local.template import StackTemplate

HOST = "127.0.0.1"
STATE_DIR = Path(".mlops")
FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
}
log = logging.getLogger("mlops.local")


class Destinations:
    """Where Lambda sends an asynchronous event it gave up on (an on-failure destination): its invocation
    record, as the message of an SQS queue or an SNS topic."""

    def __init__(self, session: boto3.Session, endpoint: str) -> None:
        self.sqs = session.client("sqs", endpoint_url=endpoint)
        self.sns = session.client("sns", endpoint_url=endpoint)

    def __call__(self, arn: str, record: dict) -> None:
        _, _, service, _, account, name = arn.split(":", 5)
        if service == "sqs":
            url = self.sqs.get_queue_url(QueueName=name, QueueOwnerAWSAccountId=account)["QueueUrl"]
            self.sqs.send_message(QueueUrl=url, MessageBody=json.dumps(record))
        elif service == "sns":
            self.sns.publish(TopicArn=arn, Message=json.dumps(record))
        else:
            raise NotImplementedError(f"the local cloud sends no failed event to {service} ({arn})")


def synthesize(outdir: str = "cdk.out") -> tuple[Path, str]:
    """Synthesize the CDK app (the same app `cdk deploy` uses) and return its template."""
    # jsii's Node.js end-of-life banner would bury the progress of `mlops up` and `mlops demo`;
    # `npx cdk` still shows it.
    os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "18,20")  # majors to silence
    from app import build_app

    app, stack = build_app(outdir=outdir)
    assembly = app.synth()
    return Path(assembly.directory, stack.template_file), stack.stack_name


class MotoServer:
    """moto's server (as moto.server.ThreadedMotoServer runs it), on a thread.

    A port in use is an OSError from start() (ThreadedMotoServer's thread exits and its start
    waits forever), and stop() returns within a short poll (werkzeug's default is half a second).
    """

    POLL_S = 0.05

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._server: BaseWSGIServer | None = None

    def start(self) -> None:
        with socket.create_server((self.host, self.port)) as bound:  # OSError here when the port is taken
            # werkzeug serves on a copy of the bound socket (its own bind would sys.exit() on an error).
            self._server = make_server(self.host, self.port, DomainDispatcherApplication(create_backend_app),
                                       threaded=True, request_handler=MotoRequestHandler, fd=bound.fileno())
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": self.POLL_S}, daemon=True,
                         name="moto-server").start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


class LocalCloud:
    def __init__(
        self,
        template: Path | None = None,
        stack_name: str = "MlopsPlatform",
        aws_port: int = 4566,
        api_port: int = 3000,
        state_dir: Path = STATE_DIR,
        home: Path | None = None,
        warm: bool = False,
    ):
        """`state_dir` and `home` (where any client finds a running cloud, e.g. ~/.mlops) get its outputs file."""
        self.template_path, self.stack_name = template, stack_name
        self.aws_port, self.api_port = aws_port, api_port
        self.warm = warm  # one initialized environment per function from the start, as provisioned concurrency
        self.state_dir = Path(state_dir)
        self.state_dirs: Sequence[Path] = [self.state_dir, *([Path(home)] if home else [])]
        self.endpoint = f"http://{HOST}:{aws_port}"
        self.outputs: dict = {}
        self.outputs_files: list[Path] = []  # where start() wrote the outputs

    def start(self) -> dict:
        # moto's state machine interpreter calls Lambda through this server's port.
        os.environ["MOTO_PORT"] = str(self.aws_port)
        for name, value in FAKE_CREDENTIALS.items():
            os.environ.setdefault(name, value)
        if self.template_path is None:
            self.template_path, self.stack_name = synthesize()
        template = StackTemplate.load(self.template_path, self.stack_name)

        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        self.server = MotoServer(HOST, self.aws_port)
        self.server.start()
        session = boto3.Session(aws_access_key_id=FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"],
                                aws_secret_access_key=FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
                                aws_session_token=FAKE_CREDENTIALS["AWS_SESSION_TOKEN"], region_name=template.region)
        self.shipper = LogShipper(session.client("logs", endpoint_url=self.endpoint),
                                  session.client("cloudwatch", endpoint_url=self.endpoint))
        self.shipper.start()
        self.runtime = LambdaRuntime(self._function_environment(template), log_sink=self.shipper,
                                     failure_sink=Destinations(session, self.endpoint),
                                     retry_delays_s=LOCAL_RETRY_DELAYS_S)
        patches.apply(self.runtime)
        deployer = Deployer(template, session, self.endpoint, self.runtime)
        outputs = deployer.deploy()
        if self.warm:
            threading.Thread(target=self._provision, daemon=True, name="provision").start()

        self.gateway = Gateway(template, self.runtime, deployer.client("apigateway"), HOST, self.api_port)
        self.gateway.start()
        self.scheduler = Scheduler(deployer.client("events"), template.account, template.region)
        self.scheduler.start()
        # The template's alarms, evaluated on the metrics the functions emit (MLOPS_ALARM_PERIOD_SCALE shortens them).
        self.alarms = AlarmEvaluator(deployer.client("cloudwatch"), deployer.client("sns"), template.account,
                                     template.region)
        self.alarms.start()

        api_key = deployer.client("apigateway").get_api_key(apiKey=outputs["ApiKeyId"], includeValue=True)["value"]
        self.outputs = {
            # The API's URLs point at the local gateway instead of execute-api.
            **{k: self.gateway.url if ".execute-api." in str(v) else v for k, v in outputs.items()},
            "ApiKey": api_key,
            "Endpoint": self.endpoint,
            "Region": template.region,
            "StackName": self.stack_name,
        }
        # Written last and atomically: a client that sees the file sees all of it, and a cloud that is up.
        for directory in dict.fromkeys(d.expanduser().resolve() for d in self.state_dirs):
            directory.mkdir(parents=True, exist_ok=True)
            partial = directory / f"outputs.json.{os.getpid()}.partial"
            partial.write_text(json.dumps(self.outputs, indent=2) + "\n")
            partial.replace(directory / "outputs.json")
            self.outputs_files.append(directory / "outputs.json")
        return self.outputs

    def stop(self) -> None:
        # The outputs go first (a client that reads them finds a cloud that is up), and only where
        # they are still this cloud's: another one may have been started since with the same home.
        for path in self.outputs_files:
            with contextlib.suppress(OSError, ValueError):
                if json.loads(path.read_text()) == self.outputs:
                    path.unlink()
        self.outputs_files = []
        # Whatever start() got to before it failed is stopped, in reverse order (the workers
        # before the shipper, so that their last lines are shipped).
        for part in ("alarms", "scheduler", "gateway", "runtime", "shipper", "server"):
            if hasattr(self, part):
                getattr(self, part).stop()
        patches.remove()

    def _provision(self) -> None:
        for name in self.runtime.functions:
            try:
                self.runtime.provision(name)
            except (OSError, RuntimeError):  # stopped meanwhile: nothing left to warm
                return

    def _function_environment(self, template: StackTemplate) -> dict[str, str]:
        """What Lambda adds to every function's environment, pointed at the local cloud.

        Nothing else of this process's environment: a function sees what it would see on AWS.
        """
        return {
            "PATH": os.environ.get("PATH", os.defpath),  # Lambda sets one; the machine's programs are elsewhere
            **FAKE_CREDENTIALS,
            "AWS_REGION": template.region,
            "AWS_DEFAULT_REGION": template.region,
            "AWS_ENDPOINT_URL": self.endpoint,
            # No X-Ray daemon runs locally.
            "POWERTOOLS_TRACE_DISABLED": "true",
            "AWS_XRAY_SDK_ENABLED": "false",
        }
