"""Hypothesis against the config loader: whatever the file holds, ``load`` returns a Config or raises ConfigError.

An operator's typo must end in ``file: key: reason`` (``syncbridge check`` prints it and exits 1), never
in a traceback, and a config the loader accepts must be one the processes can run with: every duration
a finite number of seconds (``retention: .inf`` would crash the web process at start, ``timeout: .nan``
every sync). Inputs: random bytes and text, YAML-shaped noise, random YAML documents, and random
mutations (tree and text) of a valid config that uses every model. The cases the fuzzing found are
kept below as plain regression tests.
"""

from __future__ import annotations

import math
import string
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge.config import Config, ConfigError, load
from bridge.redact import Redactor
from tests.test_reliability import record_numbers

FUZZ = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
LOADED = {"config": 0, "error": 0}  # what the fuzzing saw, for docs/RELIABILITY.md

ENV = {"GITHUB_SECRET": "gh-webhook-secret-0001", "GITLAB_SECRET": "gl-webhook-secret-0001", "MESA_KEY": "mesa-api-key",
       "BBDC_TOKEN": "bbdc-token", "PAT": "azure-pat", "GL_TOKEN": "gitlab-token", "GITEA_TOKEN": "gitea-token",
       "IAM_PASSWORD": "iam-password", "GH_API_TOKEN": "github-api-token"}
VALID = """
sources:
  github:
    kind: github
    secret: ${GITHUB_SECRET}
    api: {token: "${GH_API_TOKEN}", hook: {repo: acme/widgets, id: 123}, sweep_every: 10m}
  gitlab: {kind: gitlab, secrets: ["${GITLAB_SECRET}", old-gitlab-secret-0001]}
  gitea: {kind: gitea, secret: gitea-secret-00000001}
  forgejo: {kind: forgejo, secret: forgejo-secret-000001}
  bbs: {kind: bitbucket-server, secret: bbs-secret-000000001}
  bbc: {kind: bitbucket-cloud, secret: bbc-secret-000000001}
targets:
  mesa:
    provider: mesa
    org: acme
    repo: widgets
    token: ${MESA_KEY}
    timeout: 15m
    request_timeout: 20s
    min_interval: 0
    retries: 5
    reconcile_every: 6h
  csr: {provider: google-csr, repo: projects/acme/repos/widgets, token: csr-token}
  bbdc: {provider: bitbucket-dc, base_url: "https://bb.example", project: ACME, repo: widgets,
         token: "${BBDC_TOKEN}", on_diverged: merge}
  azure:
    provider: azure-devops
    organization: acme
    project: Widgets
    repository: widgets-fork
    source: {collection_id: c, project_id: p, repository_id: r}
    token: ${PAT}
  codearts:
    provider: codearts
    base_url: https://codehub.example
    repository_id: 123
    iam: {username: u, password: "${IAM_PASSWORD}", domain: d, project: cn-north-4, endpoint: "https://iam.example"}
  gitlab: {provider: gitlab-mirror, base_url: "https://gitlab.example", project: group/widgets, token: "${GL_TOKEN}",
           pull_interval: 5m}
  gitea: {provider: gitea-mirror, base_url: "https://gitea.example", repo: acme/widgets,
          token: "${GITEA_TOKEN:-fallback-gitea-token}"}
routes:
  - {source: github, repo: acme/widgets, branches: [main, "release/*"], tags: ["v*"], targets: [mesa, csr]}
  - {source: gitlab, repo: "acme/**", targets: [bbdc, azure, codearts, gitlab, gitea]}
notify:
  - {url: "https://ops.example/hooks/sync", "on": [completed, failed]}  # quoted: PyYAML reads a bare on as true
retention: 7d
"""
KEYS = ["sources", "targets", "routes", "notify", "retention", "kind", "secret", "secrets", "api", "hook", "provider",
        "token", "org", "repo", "base_url", "timeout", "request_timeout", "min_interval", "retries", "reconcile_every",
        "source", "branches", "tags", "url", "on", "iam", "password", "project", "id", "app", "sweep_every"]
DURATION_FIELDS = ("timeout", "request_timeout", "min_interval", "reconcile_every", "pull_interval")

scalars = (st.none() | st.booleans() | st.integers(-(2**1100), 2**1100) | st.floats()
           | st.text(max_size=30) | st.sampled_from(["${GITHUB_SECRET}", "${UNSET}", "${UNSET:-7d}", "${", "10m", "0",
                                                     "-5s", "1e400", "**", "[", "mesa", "github", "http://x", "0s"]))
documents = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                         | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=8) | st.integers(), inner,
                                           max_size=5), max_leaves=25)
yaml_noise = st.text(st.sampled_from(list(" \n\t:-[]{},&*!|>'\"#%@`?~.$") + list(string.ascii_lowercase[:6]) + ["0"]),
                     max_size=300)


@pytest.fixture(scope="module")
def config_file(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[Path]:
    yield tmp_path_factory.mktemp("config-fuzz") / "syncbridge.yml"
    record_numbers(request, "config_fuzz", loaded=LOADED["config"], refused=LOADED["error"])


def load_bytes(path: Path, data: bytes, env: dict[str, str] | None = None) -> Config | ConfigError:
    """Load ``data`` as the config file: a Config, or the ConfigError naming the file (and, for YAML, line:column);
    anything else escapes and fails the test."""
    path.write_bytes(data)
    try:
        config = load(path, env=ENV if env is None else env)
    except ConfigError as exc:
        LOADED["error"] += 1
        assert exc.problems and all(problem.startswith(f"{path}:") for problem in exc.problems), exc.problems
        return exc
    LOADED["config"] += 1
    assert_runnable(config)
    return config


def assert_runnable(config: Config) -> None:
    """What the processes rely on once a config loaded: finite durations, known names, a working scrubber."""
    assert math.isfinite(config.retention) and config.retention > 0, config.retention
    for name, target in config.targets.items():
        for field in DURATION_FIELDS:
            value = getattr(target, field, None)
            assert value is None or (math.isfinite(value) and value >= 0), (name, field, value)
        assert target.timeout > 0 and 0 < target.request_timeout <= 120, name
    for source in config.sources.values():
        assert source.secret_list()
        if source.api is not None:
            assert math.isfinite(source.api.sweep_every) and source.api.sweep_every > 0
    for route in config.routes:
        assert route.source in config.sources and set(route.targets) <= set(config.targets)
    Redactor(config.secret_values())("a line with gh-webhook-secret-0001 in it")


def test_the_seed_config_is_valid(config_file: Path) -> None:
    config = load_bytes(config_file, VALID.encode())
    assert isinstance(config, Config), config
    assert len(config.targets) == 7 and len(config.sources) == 6


@given(data=st.binary(max_size=1500))
@FUZZ
def test_random_bytes(config_file: Path, data: bytes) -> None:
    load_bytes(config_file, data)


@given(text=st.text(max_size=600) | yaml_noise)
@FUZZ
def test_random_text_and_yaml_noise(config_file: Path, text: str) -> None:
    load_bytes(config_file, text.encode("utf-8", "surrogatepass"))


@given(document=documents, flow=st.booleans())
@FUZZ
def test_random_yaml_documents(config_file: Path, document: Any, flow: bool) -> None:
    load_bytes(config_file, yaml.safe_dump(document, default_flow_style=flow, allow_unicode=True).encode())


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield prefix
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _paths(value, (*prefix, index))


def same_type(value: Any) -> st.SearchStrategy[Any]:
    if isinstance(value, bool):
        return st.booleans()
    if isinstance(value, int):
        return st.integers(-3, 10**7)
    if isinstance(value, str):
        return st.text(max_size=20) | st.sampled_from(["5s", "1m", "0.5", "90d", "**", "main", "v*", "${MESA_KEY}"])
    if isinstance(value, list):
        return st.lists(st.sampled_from(value), max_size=len(value) + 1) if value else st.just([])
    if isinstance(value, dict):
        if not value:
            return st.just({})
        return st.sets(st.sampled_from(sorted(value, key=str))).map(lambda drop: {k: v for k, v in value.items()
                                                                                   if k not in drop})
    return st.just(value)


@st.composite
def mutated_config(draw: st.DrawFn) -> Any:
    """The valid config with one to four random edits: delete, replace, add a key, wrap, ${VAR}-ify."""
    document = yaml.safe_load(VALID)
    for _ in range(draw(st.integers(1, 4))):
        paths = [path for path in _paths(document) if path]
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = document
        for part in path[:-1]:
            parent = parent[part]
        key = path[-1]
        action = draw(st.sampled_from(["same-type"] * 4 + ["delete", "replace", "add", "wrap", "null", "variable",
                                                              "duration"]))
        if action == "same-type":  # a plausible edit: the kind of value the key had, but another one
            parent[key] = draw(same_type(parent[key]))
        elif action == "delete":
            del parent[key]
        elif action == "replace":
            parent[key] = draw(documents)
        elif action == "add" and isinstance(parent, dict):
            parent[draw(st.sampled_from(KEYS) | st.text(max_size=8))] = draw(scalars)
        elif action == "wrap":
            parent[key] = [parent[key]] if draw(st.booleans()) else {draw(st.sampled_from(KEYS)): parent[key]}
        elif action == "null":
            parent[key] = None
        elif action == "variable":
            parent[key] = draw(st.sampled_from(["${UNSET}", "${UNSET:-}", "${UNSET:-3}", "${MESA_KEY}", "${ENV_X}",
                                                "${UNSET:-${MESA_KEY}}", "$ {MESA_KEY}"]))
        else:
            parent[key] = draw(st.sampled_from(["0", "-1s", "1.5", "10x", "7d", ".inf", "1e999", "nan", "", " 5 m "])
                               | st.floats() | st.integers(-10, 10**20))
    return document


@given(document=mutated_config(), env=st.dictionaries(st.sampled_from(["ENV_X", *ENV]), st.text(max_size=12)),
       flow=st.booleans())
@FUZZ
def test_mutations_of_a_valid_config(config_file: Path, document: Any, env: dict[str, str], flow: bool) -> None:
    text = yaml.safe_dump(document, default_flow_style=flow, allow_unicode=True)
    load_bytes(config_file, text.encode(), env={**ENV, **env})


@given(data=st.data())
@FUZZ
def test_text_edits_of_a_valid_config(config_file: Path, data: st.DataObject) -> None:
    """Line and byte edits: deleted or duplicated lines, broken indentation, stray bytes, truncation."""
    raw = bytearray(VALID.encode())
    for _ in range(data.draw(st.integers(1, 3))):
        edit = data.draw(st.sampled_from(["line", "byte", "insert", "truncate", "indent"]))
        lines = bytes(raw).split(b"\n")
        index = data.draw(st.integers(0, len(lines) - 1))
        if edit == "line":
            lines[index:index + 1] = data.draw(st.sampled_from([[], [lines[index]] * 2, [lines[index][::-1]]]))
            raw = bytearray(b"\n".join(lines))
        elif edit == "indent":
            lines[index] = data.draw(st.sampled_from([b" ", b"\t", b"  " * 3, b""])) + lines[index].lstrip()
            raw = bytearray(b"\n".join(lines))
        elif edit == "byte" and raw:
            raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
        elif edit == "insert":
            at = data.draw(st.integers(0, len(raw)))
            raw[at:at] = data.draw(st.binary(min_size=1, max_size=8)
                                   | st.sampled_from([b"&a", b"*a", b"!!", b"{", b"- "]))
        else:
            del raw[data.draw(st.integers(0, len(raw))):]
    load_bytes(config_file, bytes(raw))


# -- what the fuzzing found: each must be a ConfigError naming the key -----------------------------------------


def _target(extra: str) -> str:
    return ("sources: {github: {kind: github, secret: abcd-efgh-ijkl-mnop}}\n"
            f"targets: {{t: {{provider: mesa, org: a, repo: b, token: abcd{extra}}}}}\n"
            "routes: [{source: github, repo: a/b, targets: [t]}]\n")


@pytest.mark.parametrize(("text", "key"), [
    (_target(", timeout: null"), "targets.t.timeout"),
    ("sources: {}\ntargets:\n  t:\n    provider: mesa\n    org: a\n    repo: b\n    token: abcd\n    timeout:\n",
     "targets.t.timeout"),  # the key written with no value: the commonest way to get a null
    (_target(", min_interval: null"), "targets.t.min_interval"),
    (_target(", timeout: [15m]"), "targets.t.timeout"),
    (_target(", request_timeout: {s: 5}"), "targets.t.request_timeout"),
    (_target(", reconcile_every: [6h]"), "targets.t.reconcile_every"),
    (_target("") + "retention: 2025-01-01\n", "retention"),
    (_target("") + "retention:\n", "retention"),
], ids=["null", "empty-value", "min_interval-null", "list", "mapping", "reconcile-list", "date", "retention-empty"])
def test_a_duration_of_the_wrong_type_is_a_config_error(config_file: Path, text: str, key: str) -> None:
    result = load_bytes(config_file, text.encode())
    assert isinstance(result, ConfigError)
    assert any(f": {key}: " in problem for problem in result.problems), result.problems


@pytest.mark.parametrize(("text", "key"), [
    (_target(", timeout: .inf"), "targets.t.timeout"),
    (_target(", timeout: .nan"), "targets.t.timeout"),
    (_target(", min_interval: .inf"), "targets.t.min_interval"),
    (_target(", reconcile_every: .nan"), "targets.t.reconcile_every"),
    (_target("") + "retention: .inf\n", "retention"),
    (_target("") + "retention: .nan\n", "retention"),
], ids=["timeout-inf", "timeout-nan", "min_interval-inf", "reconcile-nan", "retention-inf", "retention-nan"])
def test_a_duration_that_is_not_a_finite_number_is_a_config_error(config_file: Path, text: str, key: str) -> None:
    result = load_bytes(config_file, text.encode())
    assert isinstance(result, ConfigError), f"accepted {key} = {getattr(result, 'retention', '')}"
    assert any(f": {key}: " in problem for problem in result.problems), result.problems


@pytest.mark.parametrize("data", [
    b"sources: {}\ntargets: {t: caf\xe9}\n",  # Latin-1, not UTF-8
    b"\xff\xfe" + "sources: {}\n".encode("utf-16-le"),  # UTF-16 with its byte-order mark
], ids=["latin-1", "utf-16"])
def test_a_file_that_is_not_utf8_is_a_config_error(config_file: Path, data: bytes) -> None:
    result = load_bytes(config_file, data)
    assert isinstance(result, ConfigError)
    assert "UTF-8" in str(result) or "utf-8" in str(result), result.problems


@pytest.mark.parametrize("text", [
    "sources: &loop {github: *loop}\ntargets: {}\n",
    "sources: {}\ntargets: {}\nroutes: &loop [*loop]\n",
    "sources: " + "[" * 2000 + "]" * 2000 + "\n",
    "sources: " + "{a: " * 2000 + "1" + "}" * 2000 + "\n",
], ids=["recursive-mapping", "recursive-list", "deep-list", "deep-mapping"])
def test_recursive_or_absurdly_deep_yaml_is_a_config_error(config_file: Path, text: str) -> None:
    assert isinstance(load_bytes(config_file, text.encode()), ConfigError)
