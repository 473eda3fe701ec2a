"""``syncbridge check`` as an operator meets it: one message per mistake, each with the whole key
path, YAML errors with line and column, "did you mean" for a misspelt key, and refusals of what
would hurt at run time (a repo glob that never matches, a missing key file, a short webhook
secret, an alias bomb)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import tracemalloc
from pathlib import Path

import pytest

from bridge.config import MAX_NODES, ConfigError, load

GOOD = """\
sources:
  gh: {kind: github, secret: "${GH_SECRET:-a-webhook-secret-of-some-length}"}
targets:
  m: {provider: mesa, org: acme, repo: widgets, token: "${MESA_KEY:-mesa-token}"}
routes:
  - {source: gh, repo: "acme/*", targets: [m]}
"""


def check(config: Path | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    """``syncbridge check`` in a clean environment: the config file, or SYNCBRIDGE_CONFIG_YAML in ``env``."""
    environ = {"PATH": os.environ["PATH"], **({"SYNCBRIDGE_CONFIG": str(config)} if config else {}), **env}
    return subprocess.run([sys.executable, "-m", "bridge", "check"], capture_output=True, text=True, env=environ,
                          timeout=60, cwd=config.parent if config else None)


def problems(tmp_path: Path, text: str, **env: str) -> list[str]:
    path = tmp_path / "syncbridge.yml"
    path.write_text(textwrap.dedent(text))
    result = check(path, **env)
    assert result.returncode == 1, result.stdout
    assert "Traceback" not in result.stderr, result.stderr
    return [line.removeprefix(f"{path}") for line in result.stderr.splitlines()]


def test_a_good_config_passes(tmp_path: Path) -> None:
    path = tmp_path / "syncbridge.yml"
    path.write_text(GOOD)
    result = check(path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{path}: OK: 1 sources, 1 targets, 1 routes\n"


@pytest.mark.parametrize(("glob", "fix"), [("*", "write '*/*' or '**' (any depth)"),
                                           ("widgets", "write '*/widgets' or '<owner>/widgets'")])
def test_a_repo_glob_that_can_never_match_is_an_error_with_the_fix(tmp_path: Path, glob: str, fix: str) -> None:
    assert problems(tmp_path, GOOD.replace('"acme/*"', f'"{glob}"')) == [
        f": routes.0.repo: {glob!r} can never match: a repository's full name always contains '/' (owner/name,"
        f" or group/subgroup/name on GitLab); {fix}"]


@pytest.mark.parametrize("glob", ["*/*", "**", "acme/**", "group/*/widgets"])
def test_globs_with_a_slash_or_double_star_pass(tmp_path: Path, glob: str) -> None:
    path = tmp_path / "syncbridge.yml"
    path.write_text(GOOD.replace('"acme/*"', f'"{glob}"'))
    assert check(path).returncode == 0


def test_a_yaml_syntax_error_gives_file_line_and_column(tmp_path: Path) -> None:
    broken = GOOD.replace("  m: {provider: mesa, org: acme,", "  m: {provider: mesa, org: acme,,")
    assert problems(tmp_path, broken) == [
        ":4:33: not valid YAML: expected the node content, but found ',' (while parsing a flow node at 4:33)"]
    indented = GOOD.replace("routes:\n  - ", "routes:\n  - {source: gh}\n - ")
    [problem] = problems(tmp_path, indented)
    assert problem.startswith(":7:2: not valid YAML: ")


def test_ten_missing_variables_give_ten_messages(tmp_path: Path) -> None:
    targets = "".join(f"  t{i}: {{provider: mesa, org: acme, repo: w, token: \"${{TOKEN_{i}}}\"}}\n" for i in range(9))
    text = ("sources:\n  gh: {kind: github, secret: \"${GH_SECRET}\"}\ntargets:\n" + targets
            + "routes:\n  - {source: gh, repo: acme/w, targets: [t0]}\n")
    found = problems(tmp_path, text)
    assert found == [": sources.gh.secret: environment variable GH_SECRET is not set"
                     " (write ${GH_SECRET:-default} to give a default)"] + [
        f": targets.t{i}.token: environment variable TOKEN_{i} is not set (write ${{TOKEN_{i}:-default}} to give"
        " a default)" for i in range(9)]


def test_a_misspelt_key_gets_did_you_mean_and_one_message(tmp_path: Path) -> None:
    text = GOOD.replace("kind: github,", "kind: github, secrt: x,").replace(
        "token: \"${MESA_KEY:-mesa-token}\"", "tokn: abc").replace("targets: [m]}", "targets: [m], branchs: [main]}")
    assert problems(tmp_path, text + "notfy: []\n") == [
        ": sources.gh.secrt: unknown key; did you mean `secret`?",
        ": targets.m.tokn: unknown key; did you mean `token`?",  # and no "targets.m.token: Field required"
        ": routes.0.branchs: unknown key; did you mean `branches`?",
        ": notfy: unknown key; did you mean `notify`?",
    ]
    [unlike] = problems(tmp_path, GOOD.replace("kind: github,", "kind: github, zzz: 1,"))
    assert unlike == ": sources.gh.zzz: unknown key (allowed here: kind, secret, secrets, api)"


def test_an_error_keeps_its_whole_key_path_when_a_target_is_named_like_a_provider(tmp_path: Path) -> None:
    text = GOOD.replace("  m: {provider: mesa, org: acme, repo: widgets, token: \"${MESA_KEY:-mesa-token}\"}",
                        "  mesa: {provider: mesa, org: acme, repo: widgets}").replace("[m]", "[mesa]")
    assert problems(tmp_path, text) == [": targets.mesa.token: Field required"]


def test_a_credentials_file_that_does_not_exist(tmp_path: Path) -> None:
    csr = "  csr: {provider: google-csr, repo: projects/acme/repos/widgets, credentials_file: \"${KEY_FILE}\"}\n"
    text = GOOD.replace("targets:\n", "targets:\n" + csr)
    assert problems(tmp_path, text, KEY_FILE="/nowhere/service-account.json") == [
        ": targets.csr.credentials_file: no such file: /nowhere/service-account.json"]
    assert problems(tmp_path, text, KEY_FILE="keys/sa.json") == [
        f": targets.csr.credentials_file: no such file: keys/sa.json (relative to {tmp_path})"]
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "sa.json").write_text("{}")
    assert check(tmp_path / "syncbridge.yml", KEY_FILE="keys/sa.json").returncode == 0


def test_webhook_secrets_shorter_than_16_characters_are_refused(tmp_path: Path) -> None:
    text = GOOD.replace('secret: "${GH_SECRET:-a-webhook-secret-of-some-length}"',
                        'secrets: ["a-webhook-secret-of-some-length", "${OLD}"]')
    text = text.replace("sources:\n", "sources:\n  gl: {kind: gitlab, secret: fifteen-chars!!}\n")
    reason = "too short: a webhook secret needs at least 16 characters (make one with `openssl rand -hex 32`)"
    assert problems(tmp_path, text, OLD="short") == [f": sources.gl.secret: {reason}",
                                                     f": sources.gh.secrets.1: {reason}"]
    assert "short" not in "".join(problems(tmp_path, text, OLD="short")).replace("too short", "")


def test_a_gitlab_token_that_no_header_can_carry_is_refused(tmp_path: Path) -> None:
    """GitLab sends its plain token as a header; a server drops a value with non-ASCII bytes, so the
    token could never match: a config error, not a 401 on every push."""
    text = GOOD.replace("sources:\n", "sources:\n  gl: {kind: gitlab, secret: pässwörd-of-sixteen-chars}\n")
    assert problems(tmp_path, text) == [
        ": sources.gl: a GitLab secret token travels as a header: use printable ASCII characters only"]


def test_an_alias_bomb_is_refused_before_it_expands(tmp_path: Path) -> None:
    """370 bytes that used to take 7.3 s and 266 MB: refused while counting, nothing expanded."""
    levels = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]'] + [
        f"{name}: &{name} [{', '.join([f'*{prev}'] * 9)}]" for prev, name in zip("abcdefgh", "bcdefghi", strict=True)]
    path = tmp_path / "syncbridge.yml"
    path.write_text("\n".join(levels) + "\n")
    assert 300 < path.stat().st_size < 500
    tracemalloc.start()
    try:
        with pytest.raises(ConfigError) as refused:
            load(path, env={})
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 20 * 2**20, peak
    [problem] = refused.value.problems
    assert problem.startswith(f"{path}:6:4: aliases expand this to more than {MAX_NODES:,} values (an alias bomb?)")


def test_aliases_within_the_bound_still_work(tmp_path: Path) -> None:
    path = tmp_path / "syncbridge.yml"
    path.write_text(GOOD.replace("  m: {", "  m: &mesa {").replace(
        "routes:", "  g: {<<: *mesa, repo: gadgets}\nroutes:"))
    config = load(path, env={})
    assert (config.targets["g"].org, config.targets["g"].repo) == ("acme", "gadgets")


def test_a_self_referencing_alias_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "syncbridge.yml"
    path.write_text("sources: &s {gh: [*s]}\n")
    with pytest.raises(ConfigError) as refused:
        load(path, env={})
    assert refused.value.problems == [
        f"{path}:1:10: an alias (*name) inside the node it names: a structure without end"]


def test_the_whole_config_from_an_environment_variable(tmp_path: Path) -> None:
    result = check(None, SYNCBRIDGE_CONFIG_YAML=GOOD.replace("${GH_SECRET:-a-webhook-secret-of-some-length}",
                                                             "${GH_SECRET}"), GH_SECRET="from-its-own-variable-0123")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "SYNCBRIDGE_CONFIG_YAML: OK: 1 sources, 1 targets, 1 routes\n"
    one_line = "{sources: {gh: {kind: github, secret: '${GH_SECRET}'}}, targets: {}}"
    assert check(None, SYNCBRIDGE_CONFIG_YAML=one_line, GH_SECRET="x" * 16).returncode == 0
    broken = check(None, SYNCBRIDGE_CONFIG_YAML="sources: {gh: {kind: github,}", GH_SECRET="x" * 16)
    assert broken.returncode == 1 and broken.stderr.startswith("SYNCBRIDGE_CONFIG_YAML:1:")
    path = tmp_path / "syncbridge.yml"
    path.write_text(GOOD)
    both = check(path, SYNCBRIDGE_CONFIG_YAML=GOOD)
    assert both.returncode == 1
    assert both.stderr == "SYNCBRIDGE_CONFIG_YAML: both it and SYNCBRIDGE_CONFIG are set: unset one\n"
