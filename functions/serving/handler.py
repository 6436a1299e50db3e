"""The predict API (API Gateway REST proxy): health, model description, predictions.

Routes are thin: read the body (size checked before it is parsed), call one domain
function, shape the answer. Errors are mapped in one place: a domain error becomes its
status with {"error": {"code", "message"}}; anything else is a 500 that says nothing more.
Every body is serialized refusing NaN and infinity (not JSON), so no path can send them.
(GET /health is answered by API Gateway itself, a mock integration; its route here stays
for a direct invocation and the document.) The routes carry the contract's models
(functions/serving/contract.py), so GET /v1/openapi.json is generated from them: the request body
is declared in a route's signature and filled by our own size-checked parser (a route middleware),
not by the resolver's validation, which would parse it again on every request.
"""

import base64
import binascii
import functools
import json
import os
import sys
import time
import uuid
from functools import partial
from typing import Annotated, Any

from aws_lambda_powertools import Logger, Metrics, single_metric
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
from aws_lambda_powertools.event_handler.api_gateway import Encoder
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.event_handler.middlewares import NextMiddleware
from aws_lambda_powertools.event_handler.openapi.params import Body, Path
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.metrics.functions import is_metrics_disabled
from aws_lambda_powertools.shared.functions import resolve_truthy_env_var_choice
from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEvent
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from functions.errors import InvalidInput, MlopsError, PayloadTooLarge, RetryableError
from functions.features.dynamo import online_store
from functions.feedback.labels import LabelBatch, parse_labels, record_labels
from functions.feedback.store import FeedbackStore
from functions.registry.dynamo import registry_store
from functions.serving.capture import emit_capture
from functions.serving.contract import (
    API_KEY_HEADER,
    DESCRIBE_RESPONSES,
    FEEDBACK_RESPONSES,
    HEALTH_RESPONSES,
    MODEL_NAME_RULE,
    OPENAPI_RESPONSES,
    PREDICT_RESPONSES,
    SECURITY_SCHEME,
    FeedbackRequest,
    FeedbackResponse,
    Health,
    ModelDescription,
    PredictRequest,
    PredictResponse,
)
from functions.serving.enrich import enrich
from functions.serving.model_cache import ModelCache, describe_model
from functions.serving.predict import predict
from functions.serving.rollout import Rollouts, emit_metrics, routing_key, serve
from functions.settings import Settings, settings
from functions.spec import NAME_PATTERN
from functions.storage.s3 import data_objects

# Strict JSON: NaN and infinity raise here (a 500 that says nothing) instead of reaching a client.
dumps = partial(json.dumps, separators=(",", ":"), cls=Encoder, allow_nan=False)

logger = Logger()
metrics = Metrics()
_METRICS_OFF = is_metrics_disabled()  # POWERTOOLS_METRICS_DISABLED (or POWERTOOLS_DEV), as Powertools reads it
_DIMENSIONS = [["service"], ["model"]]
_REQUEST_METRICS = [{"Name": "Predictions", "Unit": "Count"}, {"Name": "PredictLatency", "Unit": "Milliseconds"}]
app = APIGatewayRestResolver(serializer=dumps)
# Lives as long as the container: a warm invocation predicts without reading the model again.
models = ModelCache()
rollouts = Rollouts()  # each model's running roll-out, read with the champion on the TTL

MAX_SHOWN_CHARS = 64
KEYED: list[dict[str, list[str]]] = [{SECURITY_SCHEME: []}]
ModelName = Annotated[str, Path(pattern=NAME_PATTERN, max_length=63, description=f"The model: {MODEL_NAME_RULE}.",
                                examples=["churn"])]
FEEDBACK_EXAMPLE = {"labels": [{"request_id": "c0ffee00-0000-4000-8000-000000000001", "label": "yes"},
                              {"request_id": "c0ffee00-0000-4000-8000-000000000002", "index": 1, "label": "no"}]}
EXAMPLE = {"instances": [{"tenure_months": 3, "monthly_charges": 90.5, "support_calls": 4, "plan": "basic"}]}


def _json(status: int, body: Any, headers: dict | None = None) -> Response:
    """A JSON response, serialized within the route: a value JSON cannot hold becomes the 500 below, where
    the resolver's own serializer (after the route) would fail the whole invocation instead."""
    return Response(status_code=status, content_type=content_types.APPLICATION_JSON, body=dumps(body),
                    headers=headers)


def _error(status: int, code: str, message: str, headers: dict | None = None) -> Response:
    return _json(status, {"error": {"code": code, "message": message}}, headers)


@app.exception_handler(MlopsError)
def _domain_error(error: MlopsError) -> Response:
    if error.status >= 500 and not isinstance(error, RetryableError):
        logger.error("request failed", extra={"code": error.code, "reason": error.message})
        return _error(error.status, error.code, error.public_message)
    logger.info("request refused", extra={"status": error.status, "code": error.code, "reason": error.message})
    headers = {"Retry-After": "1"} if isinstance(error, RetryableError) else None
    return _error(error.status, error.code, error.message, headers)


@app.not_found
def _no_route(_: NotFoundError) -> Response:
    return _error(404, "NotFound", "no such route")


@app.exception_handler(Exception)
def _unexpected(_: Exception) -> Response:
    logger.exception("unexpected error")  # the trace goes to the logs, never to the client
    return _error(500, "InternalError", "internal error")


def read_json_body(event: APIGatewayProxyEvent, max_bytes: int) -> Any:
    """The request body as JSON; its size is checked first, so an oversized body is never parsed."""
    body = event.body
    if body is None or body == "":
        raise InvalidInput('the request has no body; send {"instances": [...]}')
    if event.is_base64_encoded:
        if len(body) > (max_bytes + 2) // 3 * 4 + 4:  # base64 of max_bytes is at most this long
            raise PayloadTooLarge(f"the request body is larger than {max_bytes} bytes")
        try:
            raw = base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError) as error:
            raise InvalidInput("the request body is not valid base64") from error
    else:
        if len(body) > max_bytes:  # a character is at least one byte: no need to encode to know
            raise PayloadTooLarge(f"the request body is larger than {max_bytes} bytes")
        raw = body.encode("utf-8", errors="surrogatepass")
    if len(raw) > max_bytes:
        raise PayloadTooLarge(f"the request body is larger than {max_bytes} bytes")
    try:
        return json.loads(raw)
    except (ValueError, RecursionError) as error:  # JSONDecodeError and bad UTF-8 are ValueErrors
        raise InvalidInput("the request body is not valid JSON") from error


def parse_predict_request(event: APIGatewayProxyEvent, config: Settings) -> PredictRequest:
    document = read_json_body(event, config.max_request_bytes)
    try:
        request = PredictRequest.model_validate(document)
    except ValidationError as error:
        problems = "; ".join(_problem(e) for e in error.errors()[:5])
        raise InvalidInput(f'the body must be {{"instances": [{{feature: value, ...}}, ...]}}: {problems}') from error
    if len(request.instances) > config.max_instances:
        raise PayloadTooLarge(
            f"a request may carry at most {config.max_instances} instances (got {len(request.instances)}); split it"
        )
    return request


def _problem(error: ErrorDetails) -> str:
    where = ".".join(_printable(str(part)[:MAX_SHOWN_CHARS]) for part in error["loc"]) or "body"
    return f"{where}: {error['msg']}"


def _printable(text: str) -> str:
    """`text` with what UTF-8 cannot hold (a lone surrogate) written as its escape."""
    return text.encode("utf-8", errors="backslashreplace").decode("utf-8")


def _count_load_failure(model: str, version: int) -> None:
    """ModelLoadFailures by model, in a document of its own (the request's metrics keep their dimensions).

    The model exists (its champion alias points at `version`), so its name may be a dimension.
    """
    with single_metric(name="ModelLoadFailures", unit=MetricUnit.Count, value=1) as metric:
        metric.add_dimension(name="model", value=model)


def _request_metrics(model: str, rows: int, latency_ms: float) -> None:
    """Predictions and PredictLatency: the EMF document Powertools' Metrics writes for them (dimension sets
    service and model), built directly because its per-metric validation and flush cost about 20 us a request."""
    if _METRICS_OFF:
        return
    document = {"_aws": {"Timestamp": int(time.time() * 1000),
                         "CloudWatchMetrics": [{"Namespace": metrics.namespace, "Dimensions": _DIMENSIONS,
                                                "Metrics": _REQUEST_METRICS}]},
                "service": metrics.service, "model": model, "Predictions": [float(rows)],
                "PredictLatency": [round(latency_ms, 3)]}
    sys.stdout.write(json.dumps(document, separators=(",", ":")) + "\n")


def _request_id() -> str:
    context = app.current_event.get("requestContext") or {}
    return context.get("requestId") or getattr(app.lambda_context, "aws_request_id", None) or str(uuid.uuid4())


def _predict_body(app: APIGatewayRestResolver, next_middleware: NextMiddleware) -> Response:
    """The predict route's `request` argument: the body read by parse_predict_request (size first)."""
    app.context["_route_args"]["request"] = parse_predict_request(app.current_event, settings())
    return next_middleware(app)


def _feedback_body(app: APIGatewayRestResolver, next_middleware: NextMiddleware) -> Response:
    """The feedback route's `request` argument: its labels, read as the predict body is (size first)."""
    if not app.current_event.body:
        raise InvalidInput('the request has no body; send {"request_id": ..., "label": ...} or {"labels": [...]}')
    labels = parse_labels(read_json_body(app.current_event, settings().max_request_bytes))
    app.context["_route_args"]["request"] = LabelBatch(labels=labels)
    return next_middleware(app)


@app.get("/health", summary="Liveness probe (no key)", responses=HEALTH_RESPONSES)
def health() -> Response[Health]:
    return _json(200, {"status": "ok"})


@app.get("/v1/openapi.json", summary="This document", responses=OPENAPI_RESPONSES, security=KEYED)
def openapi_document() -> Response[str]:
    stage = (app.current_event.get("requestContext") or {}).get("stage")
    # Relative to the host the document came from: the stage is the API's base path.
    document = {**_openapi(), "servers": [{"url": f"/{stage}" if stage else "/"}]}
    return Response(status_code=200, content_type=content_types.APPLICATION_JSON, body=dumps(document),
                    headers={"Cache-Control": "max-age=300"})


@functools.cache
def _openapi() -> dict[str, Any]:
    """The document, generated from the routes once per execution environment (on first request: no cold-start cost)."""
    from aws_lambda_powertools.event_handler.openapi.models import APIKey, APIKeyIn

    schema = app.get_openapi_json_schema(
        title="MLOps platform predict API",
        version="1",
        description=f"Predictions from each model's champion. Every route but /health needs an API key in the "
                    f"{API_KEY_HEADER} header; errors are {{\"error\": {{\"code\", \"message\"}}}}, from the "
                    "function or from API Gateway.",
        security_schemes={SECURITY_SCHEME: APIKey(name=API_KEY_HEADER, in_=APIKeyIn.header)},
    )
    document: dict[str, Any] = json.loads(schema)
    # The resolver always adds its validation-error schemas; with its validation off no answer uses them.
    schemas = document["components"]["schemas"]
    while unused := [n for n in schemas if f'#/components/schemas/{n}"' not in json.dumps(document)]:
        for name in unused:
            del schemas[name]
    return document


@app.get("/v1/models/<name>", summary="Describe a model: its champion and signature", responses=DESCRIBE_RESPONSES,
         security=KEYED)
def get_model(name: ModelName) -> Response[ModelDescription]:
    return _json(200, describe_model(registry_store(), name))


@app.post("/v1/models/<name>/predict", summary="Predict with the model's champion", responses=PREDICT_RESPONSES,
          security=KEYED, middlewares=[_predict_body])
def predict_route(name: ModelName,
                  request: Annotated[PredictRequest, Body(openapi_examples={"churn": {"value": EXAMPLE}})],
                  ) -> Response[PredictResponse]:
    config = settings()
    started = time.perf_counter()
    registry, objects, ttl = registry_store(), data_objects(), config.model_cache_ttl_seconds
    champion = models.champion(registry, objects, name, ttl, on_load_failure=_count_load_failure)
    request_id = _request_id()
    # An instance that names its entity gets the features it leaves out from the online store.
    instances = enrich(request.instances, champion.spec, lambda keys: online_store().get_many(champion.model, keys))
    # During a roll-out the challenger answers a share of the requests (canary) or scores them unseen (shadow).
    served = serve(instances, champion=champion, rollout=rollouts.running(registry, name, ttl),
                   key=routing_key(app.current_event.get("headers"), request_id),  # raw: .headers copies them per call
                   challenger=lambda version: models.version(registry, objects, name, version, ttl,
                                                             on_load_failure=_count_load_failure),
                   predict=predict, observe=partial(emit_metrics, namespace=config.metrics_namespace))
    loaded, result = served.answer.loaded, served.answer.result
    latency_ms = (time.perf_counter() - started) * 1000

    # The answer counts more than its record: a failed capture is logged and counted, not returned.
    try:
        # A line on stdout, which Lambda ships to the log group a subscription delivers to Firehose: no S3 call here.
        emit_capture(model=loaded.model, version=loaded.version, request_id=request_id, inputs=instances,
                     predictions=result.predictions, probabilities=result.probabilities, latency_ms=latency_ms,
                     variant=served.answer.variant)
        if served.shadow is not None:  # the challenger's unseen answer, recorded beside the one returned
            emit_capture(model=loaded.model, version=served.shadow.loaded.version, request_id=request_id,
                         inputs=instances, predictions=served.shadow.result.predictions,
                         probabilities=served.shadow.result.probabilities, latency_ms=served.shadow.latency_ms,
                         variant="shadow")
    except (MlopsError, ValueError, OSError) as error:
        logger.warning("request not captured", extra={"model": loaded.model, "reason": str(error)})
        metrics.add_dimensions(model=loaded.model)
        metrics.add_metric(name="CaptureFailures", unit=MetricUnit.Count, value=1)

    # Dimensioned by model only once the model is known: client-chosen names never become metrics.
    _request_metrics(loaded.model, len(result.predictions), latency_ms)
    answer: dict = {"model": loaded.model, "version": loaded.version, "variant": served.answer.variant,
                    "predictions": result.predictions}
    if loaded.spec.task == "classification":
        answer["probabilities"] = result.probabilities
    answer["request_id"] = request_id
    return _json(200, answer)


@app.post("/v1/models/<name>/feedback", summary="Label served predictions (delayed ground truth)",
          responses=FEEDBACK_RESPONSES, security=KEYED, middlewares=[_feedback_body])
def feedback_route(name: ModelName,
                   request: Annotated[FeedbackRequest, Body(openapi_examples={"batch": {"value": FEEDBACK_EXAMPLE}})],
                   ) -> Response[FeedbackResponse]:
    # Its own function runs this route (infra/feedback.py): the feedback table's grants are not the predict role's.
    labels = request.labels if isinstance(request, LabelBatch) else [request]
    result = record_labels(feedback_store(), registry_store(), name, labels)
    metrics.add_dimensions(model=name)  # the model exists (record_labels read it)
    metrics.add_metric(name="FeedbackLabels", unit=MetricUnit.Count, value=result["stored"])
    logger.info("labels stored", extra=result)
    return _json(200, result)


def feedback_store() -> FeedbackStore:
    """The feedback table: its own function's route, so boto3's DynamoDB conditions load on its first use."""
    from functions.feedback.dynamo import feedback_store as store

    return store()


def _traced(function: Any) -> Any:
    """`function` in an X-Ray subsegment where tracing is on (on Lambda, unless POWERTOOLS_TRACE_DISABLED), as
    Powertools' Tracer decides. Elsewhere no Tracer is built: it imports aws_xray_sdk (100-250 ms of a cold start)
    and opens dummy subsegments on every request. Routes open none of their own: one per request is what pays."""
    disabled = resolve_truthy_env_var_choice(env=os.getenv("POWERTOOLS_TRACE_DISABLED", "false"))
    if disabled or not os.getenv("LAMBDA_TASK_ROOT") or os.getenv("AWS_SAM_LOCAL") or os.getenv("AWS_CHALICE_CLI_MODE"):
        return function
    from aws_lambda_powertools import Tracer

    return Tracer().capture_lambda_handler(function)


@logger.inject_lambda_context
@_traced
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    # The correlation id read directly (what correlation_paths.API_GATEWAY_REST names, without a JMESPath search).
    logger.set_correlation_id((event.get("requestContext") or {}).get("requestId"))
    try:
        return app.resolve(event, context)
    finally:  # what log_metrics does, less its warning on the requests that add none (most: see _request_metrics)
        if metrics.metric_set:
            metrics.flush_metrics()


# The feedback route's own function (infra/feedback.py) enters here: the same app and document, another role.
feedback = handler
