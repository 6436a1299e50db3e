"""The local cloud: a moto server with the synthesized stack deployed on it.

    cloud = LocalCloud(); outputs = cloud.start()   # moto on 127.0.0.1:4566, API on :3000

Everything a client needs is in `outputs` (and in .mlops/outputs.json): the same names the
deployed stack outputs, plus the endpoint, region, API key value and local API URL.
"""

import json
import logging
import os
from pathlib import Path

import boto3
from moto.server import ThreadedMotoServer

from local import patches
from local.deploy import Deployer
from local.gateway import Gateway
from local.logs import LogShipper
from local.runtime import LambdaRuntime
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


def synthesize(outdir: str = "cdk.out") -> tuple[Path, str]:
    """Synthesize the CDK app (the same app `cdk deploy` uses) and return its template."""
    # jsii's Node.js end-of-life banner would bury the progress of `mlops up` and `mlops demo`;
    # `npx cdk` still shows it.
    os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "18,20")  # majors to silence
    from app import build_app

    app, stack = build_app(outdir=outdir)
    assembly = app.synth()
    return Path(assembly.directory, stack.template_file), stack.stack_name


class LocalCloud:
    def __init__(
        self,
        template: Path | None = None,
        stack_name: str = "MlopsPlatform",
        aws_port: int = 4566,
        api_port: int = 3000,
        state_dir: Path = STATE_DIR,
    ):
        self.template_path, self.stack_name = template, stack_name
        self.aws_port, self.api_port = aws_port, api_port
        self.state_dir = Path(state_dir)
        self.endpoint = f"http://{HOST}:{aws_port}"
        self.outputs: dict = {}

    def start(self) -> dict:
        # moto's state machine interpreter calls Lambda through this server's port.
        os.environ["MOTO_PORT"] = str(self.aws_port)
        for name, value in FAKE_CREDENTIALS.items():
            os.environ.setdefault(name, value)
        if self.template_path is None:
            self.template_path, self.stack_name = synthesize()
        template = StackTemplate.load(self.template_path, self.stack_name)

        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        self.server = ThreadedMotoServer(ip_address=HOST, port=self.aws_port, verbose=False)
        self.server.start()
        session = boto3.Session(aws_access_key_id=FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"],
                                aws_secret_access_key=FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
                                aws_session_token=FAKE_CREDENTIALS["AWS_SESSION_TOKEN"], region_name=template.region)
        self.shipper = LogShipper(session.client("logs", endpoint_url=self.endpoint),
                                  session.client("cloudwatch", endpoint_url=self.endpoint))
        self.shipper.start()
        self.runtime = LambdaRuntime(self._function_environment(template), log_sink=self.shipper)
        patches.apply(self.runtime)
        deployer = Deployer(template, session, self.endpoint, self.runtime)
        outputs = deployer.deploy()

        self.gateway = Gateway(template, self.runtime, deployer.client("apigateway"), HOST, self.api_port)
        self.gateway.start()
        self.scheduler = Scheduler(deployer.client("events"), template.account, template.region)
        self.scheduler.start()

        api_key = deployer.client("apigateway").get_api_key(apiKey=outputs["ApiKeyId"], includeValue=True)["value"]
        self.outputs = {
            # The API's URLs point at the local gateway instead of execute-api.
            **{k: self.gateway.url if ".execute-api." in str(v) else v for k, v in outputs.items()},
            "ApiKey": api_key,
            "Endpoint": self.endpoint,
            "Region": template.region,
            "StackName": self.stack_name,
        }
        self.state_dir.mkdir(parents=True, exist_ok=True)
        # Written last and atomically: a client that sees the file sees all of it, and a cloud that is up.
        partial = self.state_dir / "outputs.json.partial"
        partial.write_text(json.dumps(self.outputs, indent=2) + "\n")
        partial.replace(self.state_dir / "outputs.json")
        return self.outputs

    def stop(self) -> None:
        # Whatever start() got to before it failed is stopped, in reverse order (the workers
        # before the shipper, so that their last lines are shipped).
        for part in ("scheduler", "gateway", "runtime", "shipper", "server"):
            if hasattr(self, part):
                getattr(self, part).stop()
        patches.remove()

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
