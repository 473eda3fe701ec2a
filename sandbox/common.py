"""What every provider endpoint shares: the request pipeline, credentials, JSON and timestamps.

Each request under a provider's prefix goes through the same steps, in this order, before its
view runs: it is logged, the provider's ``latency`` is slept, the next injected fault (if any)
is applied, and the credential is checked. The pipeline runs at app level (not per blueprint)
so that a request to a path the provider does not have is logged and answered in that
provider's own error shape too, like the real service would.

Some services quote back what they were sent, credentials included, in an error message or a
mirror's last error. ``{request}`` anywhere in an answer (written in a fault's ``message``, or in
the ``error`` setting a failed operation reports) becomes :func:`request_echo` on the way out:
the request's credential headers and body as sent, then all of it again percent-encoded, as in a
"sign in again" link. That is how the secrets suite makes every provider quote our tokens,
minted ones included, at the bridge.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from flask import Flask, Response, current_app, g, request
from werkzeug.exceptions import HTTPException, MethodNotAllowed
from werkzeug.http import HTTP_STATUS_CODES

from sandbox.state import MintedToken, SandboxState

log = logging.getLogger("sandbox")

ErrorRenderer = Callable[..., Response]  # (status, message=None, **provider-specific extras)
Authenticator = Callable[[SandboxState], "Response | None"]
REQUEST_PLACEHOLDER = "{request}"
CREDENTIAL_HEADERS = ("Authorization", "X-Auth-Token", "PRIVATE-TOKEN")  # every provider's, between them


@dataclass(frozen=True)
class ProviderSpec:
    """How the pipeline treats one provider: where it lives, how it says no, how it checks credentials.

    ``public`` lists the endpoint names that need no credential (token endpoints); their faults
    and errors use ``public_error`` when given, since a token service has its own error shape.
    """

    name: str
    prefix: str
    error: ErrorRenderer
    authenticate: Authenticator
    public: frozenset[str] = field(default_factory=frozenset)
    public_error: ErrorRenderer | None = None

    def error_for_request(self) -> ErrorRenderer:
        if self.public_error is not None and request.endpoint in self.public:
            return self.public_error
        return self.error


def state() -> SandboxState:
    return current_app.extensions["sandbox"]


def install(app: Flask, specs: list[ProviderSpec]) -> None:
    """Hook the pipeline into ``app`` for every provider prefix in ``specs``."""
    by_prefix = sorted(specs, key=lambda spec: len(spec.prefix), reverse=True)

    def spec_for(path: str) -> ProviderSpec | None:
        return next((s for s in by_prefix if path == s.prefix or path.startswith(s.prefix + "/")), None)

    @app.before_request
    def _before() -> Response | None:
        spec = spec_for(request.path)
        if spec is None:
            return None
        g.sandbox_spec = spec
        st = state()
        g.sandbox_call = st.record_call(_call_entry(spec.name))
        latency = st.settings(spec.name)["latency"]
        if latency:
            time.sleep(latency)
        answer = _apply_fault(spec, st.next_fault(spec.name))
        if answer is not None:
            return answer
        if request.endpoint in spec.public:
            return None
        return spec.authenticate(st)

    @app.after_request
    def _after(response: Response) -> Response:
        call = g.get("sandbox_call")
        if call is not None:
            if g.get("sandbox_retry_after") is not None:
                response.headers["Retry-After"] = g.sandbox_retry_after
            state().finish_call(call, response.status_code)
        if REQUEST_PLACEHOLDER.encode() in response.get_data():  # inside a JSON string: escape it as one
            echo = json.dumps(request_echo())[1:-1].encode()
            response.set_data(response.get_data().replace(REQUEST_PLACEHOLDER.encode(), echo))
        return response

    @app.errorhandler(Refusal)
    def _refusal(exc: Refusal) -> Response:
        spec = g.get("sandbox_spec") or spec_for(request.path)
        if spec is None:
            return json_response({"error": exc.message}, exc.status)
        return spec.error_for_request()(exc.status, exc.message, **exc.extra)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response | HTTPException:
        spec = g.get("sandbox_spec") or spec_for(request.path)
        if spec is None:
            return exc
        response = spec.error_for_request()(exc.code or 500, None)
        if isinstance(exc, MethodNotAllowed) and exc.valid_methods:
            response.headers["Allow"] = ", ".join(exc.valid_methods)
        return response

    @app.errorhandler(Exception)
    def _crash(exc: Exception) -> Response:
        log.exception("sandbox view crashed")
        spec = g.get("sandbox_spec") or spec_for(request.path)
        if spec is None:
            return json_response({"error": f"sandbox crashed: {exc!r}"}, 500)
        return spec.error_for_request()(500, f"sandbox crashed: {exc!r}")


def _call_entry(provider: str) -> dict[str, Any]:
    """The call log's record of the request as the client sent it (raw path, so %2F stays %2F)."""
    body = request.get_data(cache=True, as_text=True)
    try:
        parsed = json.loads(body) if body else None
    except ValueError:
        parsed = None
    return {
        "provider": provider, "method": request.method, "path": raw_path(), "query": request.args.to_dict(),
        "headers": dict(request.headers), "json": parsed, "body": body, "status": None, "at": time.time(),
    }


def _apply_fault(spec: ProviderSpec, fault: dict[str, Any] | None) -> Response | None:
    """Answer with an injected fault, or sleep for a timeout one and let the request through."""
    if fault is None:
        return None
    if fault.get("timeout"):
        time.sleep(float(fault["timeout"]))
    if "retry_after" in fault:
        g.sandbox_retry_after = _seconds(fault["retry_after"])
    status = fault.get("status")
    if status is None or status < 400:
        return None  # a timeout, or "answer normally but add Retry-After" (Azure's soft throttling)
    return spec.error_for_request()(int(status), fault.get("message"))


def request_echo() -> str:
    """What a careless service quotes back: the credential headers and body of this request, as sent,
    and the same again percent-encoded in a link."""
    sent = [f"{name}: {request.headers[name]}" for name in CREDENTIAL_HEADERS if name in request.headers]
    body = request.get_data(cache=True, as_text=True)
    if body:
        sent.append(f"body: {body}")
    text = "; ".join(sent) or "no credentials"
    return f"you sent {text} (sign in again: https://login.example/?request={quote(text, safe='')})"


def _seconds(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def raw_path() -> str:
    """The path exactly as the client sent it: werkzeug decodes %2F in ``request.path``."""
    raw = request.environ.get("RAW_URI") or request.environ.get("REQUEST_URI")
    return raw.split("?", 1)[0] if raw else request.path


# -- credentials -------------------------------------------------------------------------------


def scheme_token(header: str, *schemes: str) -> str | None:
    """The credential after one of ``schemes`` (case-insensitive) in ``header``, if any."""
    value = request.headers.get(header, "")
    scheme, _, token = value.partition(" ")
    return token.strip() or None if scheme.lower() in {s.lower() for s in schemes} else None


def basic_password() -> str | None:
    """The password half of HTTP Basic credentials (Azure DevOps ignores the user name of a PAT)."""
    encoded = scheme_token("Authorization", "Basic")
    if encoded is None:
        return None
    try:
        decoded = base64.b64decode(encoded, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    return decoded.partition(":")[2] if ":" in decoded else None


def check_token(provider: str, token: str | None) -> MintedToken | bool:
    return state().token_status(provider, token)


# -- bodies and answers ------------------------------------------------------------------------


class Refusal(Exception):
    """A view says no: the pipeline renders it in the provider's own error shape.

    ``extra`` goes to the provider's error renderer (e.g. Azure's ``type_key``), so views never
    build error bodies themselves.
    """

    def __init__(self, status: int, message: str | None = None, **extra: Any):
        super().__init__(message or str(status))
        self.status = status
        self.message = message
        self.extra = extra


def json_body(required: bool = True) -> Any:
    """The request's JSON document, or None when there is none and none is ``required``."""
    if not request.get_data(cache=True):
        if required:
            raise Refusal(400, "A request body is required")
        return None
    if not request.is_json:
        raise Refusal(415, f"Unsupported content type {request.mimetype or '(none)'}; use application/json")
    try:
        return json.loads(request.get_data(cache=True, as_text=True))
    except ValueError as exc:
        raise Refusal(400, f"The request body is not valid JSON: {exc}") from None


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None,
                  mimetype: str = "application/json") -> Response:
    """A JSON answer with keys in the order written (the real services do not sort them)."""
    return Response(json.dumps(body), status=status, headers=headers, mimetype=mimetype)


def empty_response(status: int = 200) -> Response:
    return Response(b"", status=status)


def reason(status: int) -> str:
    return HTTP_STATUS_CODES.get(status, "Error")


# -- time --------------------------------------------------------------------------------------


def iso(ts: float | None, digits: int = 3) -> str | None:
    """UTC ISO 8601 with ``digits`` fractional digits (0 = whole seconds) and a ``Z``."""
    if ts is None:
        return None
    moment = datetime.fromtimestamp(ts, UTC)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if digits:
        text += f".{moment.microsecond:06d}"[: digits + 1]
    return text + "Z"
