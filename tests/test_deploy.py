"""Deployment files: every command the Procfile, compose file and app.json name really exists,
Redis URLs work the Heroku way, and honcho runs the Procfile locally."""

from __future__ import annotations

import json
import os
import secrets
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
import yaml

from bridge.connection import connect
from bridge.embedded import EmbeddedRedis, free_port
from bridge.sources.signing import hmac_sha256
from tests.conftest import mesa_config
from tests.test_end_to_end import wait_for

ROOT = Path(__file__).resolve().parents[1]
SYNCBRIDGE = str(Path(sys.executable).with_name("syncbridge"))


def procfile() -> dict[str, str]:
    lines = (ROOT / "Procfile").read_text().splitlines()
    return dict(line.split(": ", 1) for line in lines if line.strip() and not line.startswith("#"))


def run_help(command: list[str]) -> str:
    assert command[0] == "syncbridge", command
    result = subprocess.run([SYNCBRIDGE, *[a for a in command[1:] if not a.startswith("$")], "--help"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_procfile_processes_exist() -> None:
    processes = procfile()
    assert set(processes) == {"web", "worker", "release"}
    for command in processes.values():
        words = shlex.split(command)
        assert run_help([w for w in words if w not in ("--port", "--host", "0.0.0.0")])
    assert "$PORT" in processes["web"]


def test_compose_commands_exist_and_redis_keeps_an_append_only_file() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert "--appendonly" in services["redis"]["command"] and services["redis"]["volumes"]
    for name in ("web", "worker"):
        command = services[name]["command"]
        run_help([word for word in command if not word.isdigit() and word not in ("--port", "--host", "0.0.0.0")])
        assert services[name]["environment"]["REDIS_URL"].startswith("redis://redis:")
        assert services[name]["restart"] == "unless-stopped"  # the README says both restart
        assert services[name]["healthcheck"]["test"][0] == "CMD"
    assert services["worker"]["healthcheck"]["test"][1:] == ["syncbridge", "worker", "--check"]


def test_app_json_names_a_redis_addon_the_procfile_formation_and_a_config() -> None:
    app = json.loads((ROOT / "app.json").read_text())
    assert set(app["formation"]) == {"web", "worker"}
    assert any(addon["plan"].startswith("heroku-redis") for addon in app["addons"])
    assert "scripts" not in app  # the Procfile's release phase runs `syncbridge check` on every deploy
    assert "SYNCBRIDGE_CONFIG" not in app["env"] and app["env"]["SYNCBRIDGE_CONFIG_YAML"]["value"]


def button_environment(redis_url: str, port: int) -> dict[str, str]:
    """What a Heroku Button deploy sets: app.json's values and generated secrets, the add-on's REDIS_URL."""
    app = json.loads((ROOT / "app.json").read_text())
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SYNCBRIDGE_", "REDIS_", "GITHUB_"))}
    for name, spec in app["env"].items():
        if spec.get("generator") == "secret":
            env[name] = secrets.token_hex(32)
        elif "value" in spec:
            env[name] = spec["value"]
    env.update(REDIS_URL=redis_url, PORT=str(port), WEB_CONCURRENCY="1", SYNCBRIDGE_WORKER_PROCESSES="1",
               PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    return env


def test_a_heroku_button_deploy_runs_from_app_json_alone(tmp_path: Path) -> None:
    """No syncbridge.yml anywhere (it is git-ignored, so a Button deploy has none): the release phase
    passes, web and worker start, a signed GitHub ping is answered, the worker's health check holds."""
    (tmp_path / "Procfile").write_text((ROOT / "Procfile").read_text())
    with EmbeddedRedis(tmp_path / "redis") as redis:
        port = free_port()
        env = button_environment(redis.url, port)
        release = subprocess.run(shlex.split(procfile()["release"]), cwd=tmp_path, env=env, capture_output=True,
                                 text=True, timeout=60)
        assert release.returncode == 0, release.stderr
        assert release.stdout.startswith("SYNCBRIDGE_CONFIG_YAML: OK: 1 sources")
        honcho = subprocess.Popen([str(Path(sys.executable).with_name("honcho")), "start", "web", "worker"],
                                  cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  text=True, start_new_session=True)
        try:
            wait_for(f"http://127.0.0.1:{port}/readyz", timeout=30)
            ping = b'{"zen": "Keep it logically awesome.", "hook_id": 1}'
            answer = requests.post(f"http://127.0.0.1:{port}/hooks/github", data=ping, timeout=10, headers={
                "X-GitHub-Event": "ping", "X-GitHub-Delivery": "button-ping", "Content-Type": "application/json",
                "X-Hub-Signature-256": "sha256=" + hmac_sha256(env["GITHUB_WEBHOOK_SECRET"].encode(), ping).hex()})
            assert answer.status_code == 200, answer.text
            compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
            check = compose["services"]["worker"]["healthcheck"]["test"][1:]
            deadline = time.monotonic() + 30
            while (healthy := subprocess.run(check, env=env, capture_output=True, text=True, timeout=60)).returncode:
                assert time.monotonic() < deadline, healthy.stderr
                time.sleep(0.5)
            assert "1 worker processes alive" in healthy.stdout
        finally:
            os.killpg(honcho.pid, signal.SIGTERM)
            output, _ = honcho.communicate(timeout=30)
    assert "Traceback" not in output, output


def test_tls_url_is_preferred_and_accepts_self_signed_certificates(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://plain:6379")
    monkeypatch.setenv("REDIS_TLS_URL", "rediss://:pw@tls.example:6380")
    kwargs = connect().connection_pool.connection_kwargs
    assert kwargs["host"] == "tls.example" and kwargs["ssl_cert_reqs"] is None
    monkeypatch.delenv("REDIS_TLS_URL")
    kwargs = connect().connection_pool.connection_kwargs
    assert kwargs["host"] == "plain" and "ssl_cert_reqs" not in kwargs


def test_honcho_runs_the_procfile(tmp_path: Path, sandbox) -> None:
    with EmbeddedRedis(tmp_path / "redis") as redis:
        (tmp_path / "syncbridge.yml").write_text(mesa_config(sandbox.url).replace("\n        ", "\n"))
        (tmp_path / "Procfile").write_text((ROOT / "Procfile").read_text())
        port = free_port()
        env = {**{k: v for k, v in os.environ.items() if not k.startswith(("SYNCBRIDGE_", "REDIS_"))},
               "REDIS_URL": redis.url, "PORT": str(port), "WEB_CONCURRENCY": "1",
               "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
        honcho = subprocess.Popen([str(Path(sys.executable).with_name("honcho")), "start", "web", "worker"],
                                  cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  text=True, start_new_session=True)
        try:
            wait_for(f"http://127.0.0.1:{port}/readyz", timeout=30)
        finally:
            os.killpg(honcho.pid, signal.SIGTERM)
            output, _ = honcho.communicate(timeout=30)
    assert "worker.1" in output and "web.1" in output
