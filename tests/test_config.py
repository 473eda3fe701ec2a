"""Config loading: interpolation, validation, and errors that name file, key and reason."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from bridge.config import ConfigError, load

EXAMPLE = Path(__file__).resolve().parents[1] / "syncbridge.example.yml"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "syncbridge.yml"
    path.write_text(textwrap.dedent(text))
    return path


MINIMAL = """
    sources:
      gh: {kind: github, secret: "${GH_SECRET:-s3cret-default-value}"}
    targets:
      m: {provider: mesa, org: acme, repo: widgets, token: "${MESA_KEY}"}
    routes:
      - {source: gh, repo: "acme/*", branches: [main, "release/*"], targets: [m]}
    """


def test_interpolates_variables_and_defaults(tmp_path: Path) -> None:
    config = load(write(tmp_path, MINIMAL), env={"MESA_KEY": "k-123"})
    assert config.sources["gh"].secret_list() == [b"s3cret-default-value"]
    assert config.targets["m"].token.get_secret_value() == "k-123"
    assert config.targets["m"].base_url == "https://api.mesa.dev/v1"
    assert config.retention == 7 * 86400


def test_missing_variable_names_file_key_and_variable(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL)
    with pytest.raises(ConfigError) as err:
        load(path, env={})
    assert err.value.problems == [
        f"{path}: targets.m.token: environment variable MESA_KEY is not set (write ${{MESA_KEY:-default}} to give"
        " a default)"]


@pytest.mark.parametrize(("snippet", "expected"), [
    ("sources:\n  gh: {kind: github, secret: a-long-webhook-secret, colour: red}", "sources.gh.colour: unknown key"),
    ("sources:\n  gh: {kind: svn, secret: a-long-webhook-secret}",
     "sources.gh.kind: unknown kind; one of github, gitlab"),
    ("sources:\n  gh: {kind: github}", "sources.gh: a source needs `secret`"),
    ("targets:\n  t: {provider: cvs}", "targets.t: unknown provider; one of google-csr"),
    ("targets:\n  t: {provider: mesa, org: a, repo: b}", "targets.t.token: Field required"),
    ("targets:\n  t: {provider: mesa, org: a, repo: b, token: x, timeout: soon}",
     "targets.t.timeout: 'soon' is not a duration"),
    ("routes:\n  - {source: gh, repo: 'acme/[w', targets: [m]}", "routes.0.repo: bad glob: unclosed '['"),
    ("routes:\n  - {source: gh, repo: a/b, tags: ['v]'], targets: [m]}", "routes.0.tags: bad glob: unmatched ']'"),
    ("routes:\n  - {source: nope, repo: a/b, targets: [m]}", "routes.0.source: unknown source 'nope'"),
    ("routes:\n  - {source: gh, repo: a/b, targets: [m, ghost]}", "routes.0.targets: unknown target 'ghost'"),
])
def test_each_mistake_is_reported_with_its_key(tmp_path: Path, snippet: str, expected: str) -> None:
    base = {
        "sources": "sources:\n  gh: {kind: github, secret: a-long-webhook-secret}",
        "targets": "targets:\n  m: {provider: mesa, org: a, repo: b, token: t}",
        "routes": "routes:\n  - {source: gh, repo: a/b, targets: [m]}",
    }
    base[snippet.split(":", 1)[0]] = snippet
    path = write(tmp_path, "\n".join(base.values()))
    with pytest.raises(ConfigError) as err:
        load(path, env={})
    assert any(problem.startswith(f"{path}: {expected}") for problem in err.value.problems), err.value.problems


def test_not_yaml_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid YAML"):
        load(write(tmp_path, "sources: [unclosed"), env={})
    with pytest.raises(ConfigError, match="cannot read"):
        load(tmp_path / "absent.yml", env={})


def test_secrets_are_hidden_from_repr_and_listed_for_scrubbing(tmp_path: Path) -> None:
    config = load(write(tmp_path, MINIMAL), env={"MESA_KEY": "k-123456"})
    assert "k-123456" not in repr(config)
    assert set(config.secret_values()) == {"s3cret-default-value", "k-123456"}


def test_example_config_is_valid(tmp_path: Path) -> None:
    env = {name: "x" * 16 for name in ("GITHUB_WEBHOOK_SECRET", "GITHUB_TOKEN", "BBDC_TOKEN", "AZURE_DEVOPS_PAT",
                                       "MESA_API_KEY", "HUAWEI_IAM_TOKEN", "GITLAB_TOKEN", "GITEA_TOKEN")}
    env["SLACK_WEBHOOK_URL"] = "https://hooks.slack.com/services/T000/B000/XXXX"
    env["GOOGLE_APPLICATION_CREDENTIALS"] = str(tmp_path / "service-account.json")
    (tmp_path / "service-account.json").write_text("{}")
    config = load(EXAMPLE, env=env)
    assert set(config.targets) >= {"widgets-mesa"}


def test_check_command_prints_problems_and_exits_nonzero(tmp_path: Path) -> None:
    path = write(tmp_path, "sources:\n  gh: {kind: github, secret: a-long-webhook-secret, extra: 1}\ntargets: {}\n")
    result = subprocess.run([sys.executable, "-m", "bridge", "check"], capture_output=True, text=True,
                            env={"SYNCBRIDGE_CONFIG": str(path), "PATH": "/usr/bin:/bin"}, timeout=60)
    assert result.returncode == 1
    assert f"{path}: sources.gh.extra: unknown key" in result.stderr
    good = write(tmp_path, MINIMAL)
    result = subprocess.run([sys.executable, "-m", "bridge", "check"], capture_output=True, text=True,
                            env={"SYNCBRIDGE_CONFIG": str(good), "MESA_KEY": "abc", "PATH": "/usr/bin:/bin"},
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert "OK: 1 sources, 1 targets, 1 routes" in result.stdout
