"""The sandbox Flask app: every provider under its own prefix, plus the ``/_sandbox/`` admin API.

The admin API is how a test (or a person running the demo) steers the providers over HTTP:

- ``GET /_sandbox/calls?provider=NAME`` / ``DELETE /_sandbox/calls``: the call log.
- ``GET /_sandbox/settings[/NAME]``, ``PUT /_sandbox/settings/NAME`` (merged over the defaults),
  ``DELETE /_sandbox/settings``: reset everything (settings, faults, operations, calls).
- ``POST /_sandbox/faults/NAME`` ``{"responses": [...]}`` and/or ``{"chaos": {...}}``;
  ``DELETE /_sandbox/faults``. ``{request}`` in a response's ``message`` (or in the ``error``
  setting) quotes back what the request sent, credentials included (``sandbox.common``).
- ``GET /_sandbox/operations?provider=NAME``: every operation and how far it got.
- ``GET /_sandbox/``: the providers and their base URLs.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Flask, Response, request

from sandbox import azure_devops, bitbucket_dc, codearts, gitea_mirror, gitlab_mirror, google_csr, mesa
from sandbox.common import install, json_response, state
from sandbox.state import PROVIDERS, SandboxState, SettingsError

PROVIDER_MODULES = (mesa, google_csr, bitbucket_dc, azure_devops, codearts, gitlab_mirror, gitea_mirror)

# The path after the sandbox URL that each provider's client takes as its ``base_url``.
BASE_PATHS: dict[str, str] = {
    "mesa": mesa.PREFIX, "google-csr": google_csr.PREFIX, "bitbucket-dc": bitbucket_dc.PREFIX,
    "azure-devops": azure_devops.PREFIX, "codearts": codearts.PREFIX, "gitlab-mirror": gitlab_mirror.PREFIX,
    "gitea-mirror": gitea_mirror.PREFIX,
}

admin = Blueprint("sandbox_admin", __name__, url_prefix="/_sandbox")


def base_urls(url: str) -> dict[str, str]:
    """Each provider's ``base_url`` for a sandbox served at ``url`` (``http://host:port``)."""
    return {name: url.rstrip("/") + path for name, path in BASE_PATHS.items()}


def create_app(tokens: dict[str, str] | None = None) -> Flask:
    """A sandbox with fresh state; ``tokens`` overrides the credential a provider accepts.

    Keys are provider names, plus ``codearts-iam`` (``"user:password"`` for the IAM endpoint).
    """
    app = Flask("sandbox")
    app.extensions["sandbox"] = SandboxState(tokens)
    for module in PROVIDER_MODULES:
        app.register_blueprint(module.blueprint)
    app.register_blueprint(admin)
    install(app, [module.SPEC for module in PROVIDER_MODULES])
    return app


@admin.get("/")
def index() -> Response:
    return json_response({"providers": base_urls(request.host_url)})


@admin.get("/calls")
def calls() -> Response:
    return json_response({"calls": state().calls(_provider_arg())})


@admin.delete("/calls")
def clear_calls() -> Response:
    state().clear_calls()
    return json_response({"calls": []})


@admin.get("/settings")
def all_settings() -> Response:
    return json_response({name: state().settings(name) for name in PROVIDERS})


@admin.get("/settings/<provider>")
def settings(provider: str) -> Response:
    return json_response(state().settings(_known(provider)))


@admin.put("/settings/<provider>")
def update_settings(provider: str) -> Response:
    return _guarded(lambda: state().update_settings(_known(provider), request.get_json(silent=True)))


@admin.delete("/settings")
def reset() -> Response:
    state().reset()
    return json_response({"reset": True})


@admin.post("/faults/<provider>")
def add_faults(provider: str) -> Response:
    return _guarded(lambda: state().add_faults(_known(provider), request.get_json(silent=True)))


@admin.delete("/faults")
def clear_faults() -> Response:
    state().clear_faults()
    return json_response({"cleared": True})


@admin.get("/operations")
def operations() -> Response:
    return json_response({"operations": state().operations(_provider_arg())})


class _UnknownProvider(LookupError):
    pass


@admin.errorhandler(_UnknownProvider)
def _unknown(exc: _UnknownProvider) -> Response:
    return json_response({"error": f"unknown provider {exc.args[0]!r}", "providers": list(PROVIDERS)}, 404)


def _known(provider: str) -> str:
    if provider not in PROVIDERS:
        raise _UnknownProvider(provider)
    return provider


def _provider_arg() -> str | None:
    provider = request.args.get("provider")
    return None if provider is None else _known(provider)


def _guarded(action: Any) -> Response:
    try:
        return json_response(action())
    except SettingsError as exc:
        return json_response({"error": str(exc)}, 400)
