"""The command line as a script would use it: --config everywhere, --json, -h, help on every option,
readable errors, shell completion."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner
from redis import Redis
from werkzeug.serving import make_server

from bridge import __version__
from bridge.app import create_app
from bridge.cli import COMMANDS, main
from bridge.config import Config
from bridge.store import Store
from tests.conftest import environ_for, mesa_config
from tests.driver import drive
from tests.test_worker_mesa import faults
from workers.providers.base import USER_AGENT


def syncbridge(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bridge", *args], capture_output=True, text=True, timeout=60,
                          env=env if env is not None else os.environ.copy())


def test_every_command_takes_h_config_and_explains_every_option() -> None:
    runner = CliRunner()
    assert "Show this message" in runner.invoke(main, ["-h"]).output
    for name in COMMANDS:
        shown = runner.invoke(main, [name, "-h"])
        assert shown.exit_code == 0 and "--config FILE" in shown.output, name
        command = main.get_command(click.Context(main), name)
        assert command is not None
        for param in command.params:
            if isinstance(param, click.Option):
                assert param.help, f"syncbridge {name} {param.opts[0]} has no help text"
    for name in ("jobs", "send-test", "sweep", "check"):
        assert "--json" in runner.invoke(main, [name, "-h"]).output, name
    # The version is written once (bridge/__init__.py): the package, --version and the User-Agent agree.
    assert runner.invoke(main, ["--version"], prog_name="syncbridge").output.strip() == f"syncbridge {__version__}"
    assert metadata.version("syncbridge") == __version__ and f"syncbridge/{__version__} " in USER_AGENT


def test_config_names_the_file_for_the_command_whatever_the_environment_says(tmp_path: Path) -> None:
    good = tmp_path / "good.yml"
    good.write_text(mesa_config("http://127.0.0.1:9").replace("\n        ", "\n"))
    env = {**environ_for("redis://unused", tmp_path / "missing.yml"), "SYNCBRIDGE_CONFIG_YAML": "sources: {"}
    checked = syncbridge("check", "--config", str(good), env=env)
    assert checked.returncode == 0, checked.stderr
    assert checked.stdout.startswith(f"{good}: OK: 1 sources, 1 targets, 1 routes")
    assert "missing.yml" in syncbridge("check", env={**env, "SYNCBRIDGE_CONFIG_YAML": ""}).stderr  # the variable
    absent = syncbridge("check", "--config", str(tmp_path / "absent.yml"), env=env)
    assert absent.returncode == 2 and "'--config': File" in absent.stderr and "does not exist" in absent.stderr


def test_check_json_reports_problems_for_a_script(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text("sources:\n  github: {kind: github, secrte: x}\ntargets: {}\nroutes: []\n")
    result = syncbridge("check", "--json", "--config", str(bad))
    report = json.loads(result.stdout)
    assert result.returncode == 1 and report["ok"] is False and report["config"] is None
    assert any("sources.github.secrte: unknown key" in problem for problem in report["problems"])
    good = tmp_path / "good.yml"
    good.write_text(mesa_config("http://127.0.0.1:9").replace("\n        ", "\n"))
    report = json.loads(syncbridge("check", "--json", "--config", str(good)).stdout)
    assert report == {"ok": True, "config": str(good), "problems": [], "sources": 1, "targets": 1, "routes": 1}


@pytest.fixture
def bridge(write_config: Callable[[str], Config], redis: Redis, sandbox: Any) -> Iterator[tuple[str, Path]]:
    """The app on a free port (werkzeug, in a thread); its URL and its config file."""
    config = write_config(mesa_config(sandbox.url))
    server = make_server("127.0.0.1", 0, create_app(config, redis), threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}", Path(config.path)
    server.shutdown()


def test_send_test_and_jobs_print_json_and_jobs_filters_by_repo(bridge: tuple[str, Path], redis: Redis) -> None:
    url, config = bridge
    sent = syncbridge("send-test", "--config", str(config), "--url", url, "--wait", "0", "--json")
    assert sent.returncode == 0, sent.stderr
    answer = json.loads(sent.stdout)  # one JSON object, nothing else on stdout
    assert answer["status"] == 202 and answer["jobs"][0]["status"] == "queued"
    job_id = answer["jobs"][0]["id"]
    drive(redis)
    listed = json.loads(syncbridge("jobs", "--json", "--url", url, "--repo", "acme/widgets").stdout)
    assert [job["id"] for job in listed["jobs"]] == [job_id] and listed["jobs"][0]["status"] == "completed"
    assert json.loads(syncbridge("jobs", "--json", "--url", url, "--repo", "acme/other").stdout) == {"jobs": []}
    assert job_id in syncbridge("jobs", "--url", url, "--repo", "acme/widgets").stdout


def test_retry_says_why_it_cannot_in_words(bridge: tuple[str, Path], redis: Redis, sandbox: Any) -> None:
    url, _ = bridge
    unknown = syncbridge("retry", "nope", "--url", url)
    assert unknown.returncode == 1
    assert unknown.stderr.strip() == "Error: cannot retry job nope: no job 'nope' (unknown, or expired) (404)"
    faults(sandbox, "mesa", {"status": 403})
    sent = json.loads(syncbridge("send-test", "--url", url, "--wait", "0", "--json",
                                 env=environ_for("redis://unused", bridge[1])).stdout)
    job_id = sent["jobs"][0]["id"]
    drive(redis)
    retried = syncbridge("retry", job_id, "--url", url)
    assert retried.returncode == 0, retried.stderr
    assert retried.stdout.startswith(f"job {job_id} (widgets-mesa) is queued again")
    drive(redis)
    again = syncbridge("retry", job_id, "--url", url)
    assert again.returncode == 1 and "{" not in again.stderr  # words, not the raw JSON answer
    assert again.stderr.strip() == (f"Error: cannot retry job {job_id}: job {job_id} is completed; only a failed job "
                                    "(or a stuck one) can be retried (409)")
    assert Store(redis, 3600).get(job_id)["trigger"] == "retry"


def test_shell_completion_is_clicks_own() -> None:
    """README, "Shell completion": eval "$(_SYNCBRIDGE_COMPLETE=bash_source syncbridge)"."""
    script = subprocess.run(["syncbridge"], env={**os.environ, "_SYNCBRIDGE_COMPLETE": "bash_source"},
                            capture_output=True, text=True, timeout=30, executable=str(Path(sys.executable).parent
                                                                                     / "syncbridge"))
    assert "_syncbridge_completion" in script.stdout and "complete " in script.stdout
    words = subprocess.run(["syncbridge"], env={**os.environ, "_SYNCBRIDGE_COMPLETE": "bash_complete",
                                                "COMP_WORDS": "syncbridge s", "COMP_CWORD": "1"},
                           capture_output=True, text=True, timeout=30,
                           executable=str(Path(sys.executable).parent / "syncbridge"))
    assert {line.split(",")[1] for line in words.stdout.splitlines()} == {"sandbox", "send-test", "sweep"}
    options = subprocess.run(["syncbridge"], env={**os.environ, "_SYNCBRIDGE_COMPLETE": "bash_complete",
                                                  "COMP_WORDS": "syncbridge jobs --", "COMP_CWORD": "2"},
                             capture_output=True, text=True, timeout=30,
                             executable=str(Path(sys.executable).parent / "syncbridge"))
    assert {"--repo", "--json", "--config"} <= {line.split(",")[1] for line in options.stdout.splitlines()}
