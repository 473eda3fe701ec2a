"""Who may see the status routes, who may change state, and the headers every page carries.

Checked before every Flask view (the hook route is the receiver's, ahead of Flask: it is signed).
A route is guarded unless it says otherwise (:func:`public`), so a page added later is not
open by mistake. The doors:

- ``SYNCBRIDGE_API_TOKEN``, as ``Authorization: Bearer <token>`` or the Basic-auth password
  (so a browser simply asks for it).
- Without that token, protected mode, as Redis has it: only a client on this machine gets in
  (:func:`is_local`); everyone else gets 401 naming the variable.
- ``SYNCBRIDGE_METRICS_TOKEN`` opens the routes marked :func:`metrics` (``/metrics``) alone,
  for a Prometheus scrape job.

A request that changes state (any method but GET, HEAD, OPTIONS) must, besides, be one a page
on another site cannot make a browser send: a Bearer token (browsers never attach one on their
own), or a JSON body (a cross-site form cannot send one; fetch needs a CORS preflight we never
answer) that the browser does not mark cross-site (:func:`cross_site`). Basic credentials and
protected mode are both "ambient": the browser brings them to any request, whoever made it.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Iterator
from ipaddress import ip_address
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit

from flask import Response, current_app, jsonify, request
from werkzeug.exceptions import Forbidden, Unauthorized

from bridge.app import current

View = TypeVar("View", bound=Callable[..., Any])
Access = Literal["anyone", "metrics"]
ACCESS = "syncbridge_access"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Raw request headers (WSGI keys) that name the client behind a proxy; ProxyFix leaves them in place.
FORWARDING_HEADERS = ("HTTP_X_FORWARDED_FOR", "HTTP_X_REAL_IP", "HTTP_FORWARDED")
SECURITY_HEADERS = {
    # No inline script or style: the dashboard's live in static files, so injected markup cannot run.
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
    "X-Frame-Options": "DENY",  # frame-ancestors for browsers that predate it
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def public(view: View) -> View:
    """Mark a view as open to anyone (``/healthz``, ``/readyz``): a load balancer has no token."""
    setattr(view, ACCESS, "anyone")
    return view


def metrics(view: View) -> View:
    """Mark a view as also opened by ``SYNCBRIDGE_METRICS_TOKEN``."""
    setattr(view, ACCESS, "metrics")
    return view


def guard() -> None:
    """Flask ``before_request``: abort 401 (who are you?) or 403 (not this way) before the view runs."""
    if request.endpoint == "static":  # the dashboard's script and style: public code, no data
        return
    access: Access | None = getattr(current_app.view_functions.get(request.endpoint or ""), ACCESS, None)
    if access == "anyone":
        return
    bridge = current()
    given = presented_token()
    if not (access == "metrics" and _matches(given, bridge.metrics_token)):
        if bridge.api_token is None:
            if not is_local(request.environ):
                raise _unauthorized("this route answers only clients on this machine while SYNCBRIDGE_API_TOKEN is "
                                    "unset (protected mode); set SYNCBRIDGE_API_TOKEN on the bridge and send it as "
                                    "a Bearer token or the Basic-auth password", challenge="Bearer")
        elif not _matches(given, bridge.api_token):
            raise _unauthorized("this route needs SYNCBRIDGE_API_TOKEN as a Bearer token or the Basic-auth password",
                                challenge="Basic")
    if request.method not in SAFE_METHODS and not unforgeable(bridge.api_token):
        response = jsonify(error="a request that changes state needs Authorization: Bearer <SYNCBRIDGE_API_TOKEN>, "
                                 "or a same-origin JSON request (the dashboard's buttons)")
        response.status_code = 403
        raise Forbidden(response=response)


def secure_headers(response: Response) -> Response:
    """Flask ``after_request``: the headers above on every answer; nothing the bridge says is cached."""
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    response.headers.setdefault("Cache-Control", "no-store")  # static files set their own
    return response


def presented_token() -> str | None:
    """The token in ``Authorization: Bearer <t>`` or the password of HTTP Basic auth."""
    auth = request.authorization
    if auth is None:
        return None
    return auth.password if auth.type == "basic" else auth.token


def unforgeable(api_token: str | None) -> bool:
    """Whether this state change is one a page on another site cannot make a browser send."""
    auth = request.authorization
    if auth is not None and auth.type == "bearer" and _matches(auth.token, api_token):
        return True
    return request.is_json and not cross_site()


def cross_site() -> bool:
    """Whether the browser says another origin made this request (Go's CrossOriginProtection rule).

    ``Sec-Fetch-Site`` is set by the browser and cannot be set by a page; browsers older than it
    send ``Origin`` on every POST. A request with neither is not from a browser (curl, the CLI),
    so it carries no ambient credential a page could have borrowed.
    """
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None:
        return site not in ("same-origin", "none")  # none: the user's own navigation
    origin = request.headers.get("Origin")
    return origin is not None and urlsplit(origin).netloc != request.host


def is_local(environ: dict[str, Any]) -> bool:
    """Whether the request comes from this machine and names it: protected mode's test.

    The socket's peer (``REMOTE_ADDR`` as the server set it: ProxyFix keeps the original under
    ``werkzeug.proxy_fix.orig``) is loopback, every client address a proxy forwarded is too, and
    the Host is a loopback name or address: a page whose DNS name was rebound to 127.0.0.1 still
    says its own name there.
    """
    original = environ.get("werkzeug.proxy_fix.orig") or environ
    if not _loopback(original.get("REMOTE_ADDR")):
        return False
    for key in FORWARDING_HEADERS:
        if key in environ and not all(_loopback(address) for address in _forwarded(key, environ[key])):
            return False
    return _loopback_host(original.get("HTTP_HOST"))


def _forwarded(key: str, value: str) -> Iterator[str]:
    """The client addresses a forwarding header names (``for=`` of RFC 7239's ``Forwarded``)."""
    for element in value.split(","):
        if key != "HTTP_FORWARDED":
            yield element.strip()
            continue
        for pair in element.split(";"):
            name, _, address = pair.strip().partition("=")
            if name.lower() == "for":
                yield address.strip('"')


def _loopback(address: str | None) -> bool:
    """A loopback address, with or without brackets and port (``[::1]:80``, ``127.0.0.1:80``)."""
    if not address:
        return False
    if address.startswith("["):
        address = address[1:address.find("]")]
    elif address.count(":") == 1:
        address = address.partition(":")[0]
    try:
        ip = ip_address(address)
    except ValueError:  # "unknown", an obfuscated name: not provably local
        return False
    mapped = getattr(ip, "ipv4_mapped", None)
    return ip.is_loopback or (mapped is not None and mapped.is_loopback)


def _loopback_host(host: str | None) -> bool:
    if host is None:  # HTTP/1.0 without Host: no name a rebinding page could have used
        return True
    name = host[1:host.find("]")] if host.startswith("[") else host.rpartition(":")[0] if ":" in host else host
    name = name.rstrip(".").lower()
    return name == "localhost" or name.endswith(".localhost") or _loopback(name)


def _matches(given: str | None, expected: str | None) -> bool:
    return given is not None and expected is not None and hmac.compare_digest(given.encode(), expected.encode())


def _unauthorized(why: str, challenge: str) -> Unauthorized:
    """401 naming what is missing; ``Basic`` makes a browser ask for the token, ``Bearer`` does not."""
    response = jsonify(error=why)
    response.status_code = 401
    response.headers["WWW-Authenticate"] = f'{challenge} realm="syncbridge"'
    return Unauthorized(response=response)
