"""A Ray Serve deployment of one duet model: replicas, autoscaling, streaming.

    cd examples/ray && serve run serve_app:app model=$PWD/../../models/debian-summarizer   # or, from Python:
    from serve_app import build          # examples/ray on the path
    serve.run(build("models/debian-summarizer"), route_prefix="/duet")

Each replica opens the model once; within a replica, concurrent requests share decoder runs
through the model's scheduler (so `max_ongoing_requests` can be well above 1). Endpoints, under
the route prefix, take the same bodies as `duet serve`:

    POST /generate         {"inputs": "...", "parameters": {...}}  -> {"generated_text": ...}
    POST /generate_stream  the same                                -> server-sent events, one per piece
    POST /summarize        {"inputs": "...", "parameters": {...}}  -> {"summary_text": ...}
    POST /embed            {"inputs": ["...", ...]}                -> [[...], ...]

Autoscaling follows the ongoing requests per replica (`target_ongoing_requests`); each replica
asks for `num_cpus` cores (and `num_gpus`, with `options={"execution_provider": "cuda"}`, for
GPU replicas).
"""
import asyncio
import json
from typing import Any, Dict, Optional

from ray import serve
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse

AUTOSCALING = {"min_replicas": 1, "max_replicas": 4, "target_ongoing_requests": 16, "upscale_delay_s": 5, "downscale_delay_s": 60}


def _params(body: Dict[str, Any]) -> Dict[str, Any]:
    return {k: v for k, v in (body.get("parameters") or {}).items() if v is not None and k != "details"}


@serve.deployment(autoscaling_config=AUTOSCALING, max_ongoing_requests=64, ray_actor_options={"num_cpus": 1})
class DuetDeployment:
    def __init__(self, model: str, options: Optional[Dict[str, Any]] = None) -> None:
        import duet  # noqa: PLC0415 - in the replica's process

        self.duet = duet
        self.model = duet.Model(model, options=options)

    def _stream(self, text: str, params: Dict[str, Any]):
        generator = self.model.generator(text, **params)
        for event in generator:
            if event.kind == "text":
                yield "data: " + json.dumps({"token": {"id": event.token_id, "text": event.piece}}) + "\n\n"
        yield "data: " + json.dumps({"generated_text": generator.result.text, "finish_reason": generator.result.finish_reason}) + "\n\n"

    async def __call__(self, request: Request):
        path = request.url.path.rstrip("/").rsplit("/", 1)[-1]
        try:
            body = await request.json()
        except ValueError as e:
            return JSONResponse({"error": f"the request body is not JSON: {e}"}, status_code=400)
        inputs, params = body.get("inputs"), _params(body)
        try:
            if path == "generate_stream":
                return StreamingResponse(self._stream(inputs, params), media_type="text/event-stream")
            if path == "generate":
                g = await asyncio.to_thread(self.model.generate, inputs, **params)
                return JSONResponse({"generated_text": g.text, "finish_reason": g.finish_reason})
            if path == "summarize":
                s = await asyncio.to_thread(self.model.summarize, inputs, **params)
                return JSONResponse({"summary_text": s.text, "finish_reason": s.finish_reason})
            if path == "embed":
                texts = [inputs] if isinstance(inputs, str) else inputs
                vectors = await asyncio.to_thread(self.model.embed, texts, as_numpy=False, **params)
                return JSONResponse([list(map(float, v)) for v in vectors])
        except self.duet.Error as e:
            status = 429 if isinstance(e, self.duet.ModelBusy) else 400
            return JSONResponse({"error": str(e), "error_type": type(e).__name__}, status_code=status)
        return JSONResponse({"error": f"no endpoint {path!r} (generate, generate_stream, summarize, embed)"}, status_code=404)


def build(model: str, options: Optional[Dict[str, Any]] = None, **deployment_options: Any):
    """The application: ``serve.run(build(...))``; ``deployment_options`` override the
    deployment's (``num_replicas``, ``autoscaling_config``, ``ray_actor_options``, ...)."""
    deployment = DuetDeployment.options(**deployment_options) if deployment_options else DuetDeployment
    return deployment.bind(model, options)


def app(args: Dict[str, str]):
    """For ``serve run serve_app:app model=DIR``."""
    return build(args["model"])
