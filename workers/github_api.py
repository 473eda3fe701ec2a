"""The few GitHub REST calls a redelivery sweep needs: list a hook's deliveries, redeliver one.

Works for a repository hook, an organization hook (token) or a GitHub App's hook (a JWT signed
with the App's private key, RS256), on github.com or GitHub Enterprise (``base_url``).
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import requests
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from bridge import redact
from bridge.config import SourceApi

TIMEOUT = (5.0, 20.0)
JWT_LIFE = 600  # an App JWT's longest life, GitHub's limit


class GitHubError(Exception):
    """A GitHub API call that did not succeed; the message is one line for the sweep report."""


class HookDeliveries:
    """One webhook's delivery log on GitHub."""

    def __init__(self, api: SourceApi):
        self.api = api
        hook = api.hook
        if hook.app:
            self.base = f"{api.base_url.rstrip('/')}/app/hook"
        elif hook.repo:
            self.base = f"{api.base_url.rstrip('/')}/repos/{hook.repo}/hooks/{hook.id}"
        else:
            self.base = f"{api.base_url.rstrip('/')}/orgs/{hook.org}/hooks/{hook.id}"
        self.session = requests.Session()
        self.session.headers.update({"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": "2022-11-28",
                                     "User-Agent": "syncbridge-sweep"})

    def deliveries(self, since: float) -> Iterator[dict[str, Any]]:
        """Deliveries newest first, following the cursor in ``Link``, down to ``since`` (epoch s)."""
        url: str | None = f"{self.base}/deliveries?per_page=100"
        while url:
            response = self._call("GET", url)
            page = response.json()
            for delivery in page:
                if _epoch(delivery["delivered_at"]) < since:
                    return
                yield delivery
            url = response.links.get("next", {}).get("url")

    def redeliver(self, delivery_id: int) -> None:
        self._call("POST", f"{self.base}/deliveries/{delivery_id}/attempts", ok=(200, 201, 202))

    def _call(self, method: str, url: str, ok: tuple[int, ...] = (200,)) -> requests.Response:
        try:
            response = self.session.request(method, url, headers={"Authorization": f"Bearer {self._credential()}"},
                                            timeout=TIMEOUT)
        except requests.RequestException as exc:
            raise GitHubError(f"{method} {url}: {type(exc).__name__}") from None
        if response.status_code not in ok:
            try:
                message = response.json().get("message", "")
            except ValueError:
                message = redact.scrub(response.text)[:200]  # scrubbed before a cut can halve a secret
            raise GitHubError(f"GitHub answered {response.status_code} to {method} {url}: {message}")
        return response

    def _credential(self) -> str:
        if self.api.token is not None:
            return self.api.token.get_secret_value()
        jwt = app_jwt(int(self.api.app_id or 0), Path(self.api.private_key_file or "").read_bytes())
        redact.register(jwt, expires_at=time.time() + JWT_LIFE)  # a bearer credential while it lives
        return jwt


def app_jwt(app_id: int, private_key_pem: bytes, now: float | None = None) -> str:
    """A GitHub App JWT: RS256, issued a minute in the past (clock drift), valid nine minutes."""
    issued = int(now if now is not None else time.time()) - 60
    key = serialization.load_pem_private_key(private_key_pem, password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise GitHubError("the GitHub App private key must be an RSA key")
    header = _b64(json.dumps({"alg": "RS256", "typ": "JWT"}).encode())
    payload = _b64(json.dumps({"iat": issued, "exp": issued + JWT_LIFE, "iss": str(app_id)}).encode())
    signature = key.sign(f"{header}.{payload}".encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{header}.{payload}.{_b64(signature)}"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _epoch(stamp: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
