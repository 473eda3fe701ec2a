"""The YAML config: loaded, ``${VAR}``-interpolated and validated into typed models.

Every problem is reported as ``<file>: <dotted.key>: <reason>`` so an operator can fix the
config without reading code. Secrets are ``SecretStr`` so that a stray repr or log line shows
``**********``; :meth:`Config.secret_values` lists them for scrubbing messages.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Callable, Iterator
from functools import cached_property
from pathlib import Path
from types import NoneType, UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin
from urllib.parse import urlsplit

import yaml
from pydantic import (
    AfterValidator,
    AnyHttpUrl,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from bridge.durations import parse_duration, parse_duration_or_zero
from bridge.globs import GlobError, compile_glob

DEFAULT_PATH = "syncbridge.yml"
CONFIG_YAML_VAR = "SYNCBRIDGE_CONFIG_YAML"
"""The whole config as the variable's value: for platforms where the repo holds no config (a Heroku
Button deploys the repository as it is, and ``syncbridge.yml`` is git-ignored)."""
MIN_SECRET_LENGTH = 16
MAX_NODES = 100_000
"""Values a config may hold once its aliases are expanded: hundreds of targets stay far below it, while a
few hundred bytes of nested aliases (an alias bomb) would otherwise expand to millions and hold the
loader for seconds and hundreds of MB."""
DEMO_PATH = Path(__file__).with_name("demo.yml")
SOURCE_KINDS = ("github", "gitlab", "gitea", "forgejo", "bitbucket-server", "bitbucket-cloud")
JOB_STATES = ("queued", "in_progress", "completed", "failed")
PLACEHOLDERS = ("owner", "name", "repo")
"""What a templated target's mirror name may hold: the pushed repository's owner (everything before
the last ``/``: a GitLab ``group/sub``), its name (the last segment) and its full name."""
MIRROR_FIELDS = ("org", "project", "repository", "repo")
"""The fields that name a target's mirror, in the order they make its name (``org/repo``,
``project/repository``): the only ones where placeholders are replaced."""
PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
_SECRET_KEYS = frozenset({"token", "password", "secret", "secrets"})


class _Loader(yaml.SafeLoader):
    """YAML 1.2 booleans: only true/false. YAML 1.1 reads ``on:`` (notify's key) and ``no`` as booleans."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
                              list("tTfF"))
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-(.*?))?\}")


class ConfigError(Exception):
    """The config cannot be used; ``problems`` are ``file: key: reason`` lines."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


Seconds = Annotated[float, BeforeValidator(parse_duration)]


def _header_safe(secret: bytes) -> bool:
    """Printable ASCII: what a header value can carry through any HTTP server unchanged."""
    return all(0x20 <= byte < 0x7F for byte in secret)


def _long_enough(secret: SecretStr) -> SecretStr:
    """A webhook secret short enough to guess lets anyone forge pushes ("" is "no secret": said elsewhere)."""
    if 0 < len(secret.get_secret_value()) < MIN_SECRET_LENGTH:
        raise ValueError(f"too short: a webhook secret needs at least {MIN_SECRET_LENGTH} characters"
                         " (make one with `openssl rand -hex 32`)")
    return secret


def _existing_file(path: str) -> str:
    """A key file the worker will read: a missing one is a config error now, not a failed sync later."""
    if path and not Path(path).is_file():
        where = "" if Path(path).is_absolute() else f" (relative to {Path.cwd()})"
        raise ValueError(f"no such file: {path}{where}")
    return path


def _sample(text: str) -> str:
    """``text`` with each placeholder filled from a sample repository, ``owner/name``: what a mirror
    field's shape is checked on, since the pushed repository is only known per push."""
    values = {"owner": "owner", "name": "name", "repo": "owner/name"}
    return PLACEHOLDER.sub(lambda match: values.get(match.group(1), match.group(0)), text)


def _shaped(pattern: str, shape: str) -> Callable[[str], str]:
    """A validator: the value (placeholders filled with a sample) must look like ``shape``."""
    compiled = re.compile(pattern)

    def check(value: str) -> str:
        if not compiled.match(_sample(value)):
            raise ValueError(f"must be {shape}" + (" once its placeholders are filled" if PLACEHOLDER.search(value)
                                                   else ""))
        return value

    return check


def _strings(value: Any, where: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], str]]:
    """Every string in a raw config value with its path inside it; secrets are left alone."""
    if isinstance(value, str):
        yield where, value
    elif isinstance(value, dict):
        for key, item in value.items():
            if str(key) not in _SECRET_KEYS:
                yield from _strings(item, (*where, str(key)))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _strings(item, (*where, str(index)))


WebhookSecret = Annotated[SecretStr, AfterValidator(_long_enough)]
ExistingFile = Annotated[str, AfterValidator(_existing_file)]


class Strict(BaseModel):
    """Unknown keys are errors: a typo must never silently disable a setting."""

    model_config = ConfigDict(extra="forbid", frozen=True)


# --- sources ---------------------------------------------------------------------------------


class Hook(Strict):
    repo: str | None = None
    org: str | None = None
    id: int | None = None
    app: bool = False

    @model_validator(mode="after")
    def _one_scope(self) -> Hook:
        if self.app == bool(self.repo or self.org):
            raise ValueError("give either {repo, id}, {org, id} or {app: true}")
        if not self.app and self.id is None:
            raise ValueError("a repo or org hook needs its id")
        return self


class SourceApi(Strict):
    """GitHub API access for redelivery sweeps: a token for a repo or org hook, an App key for an App hook."""

    hook: Hook
    token: SecretStr | None = None
    app_id: int | None = None
    private_key_file: ExistingFile | None = None
    base_url: str = "https://api.github.com"
    sweep_every: Seconds = 600.0

    @model_validator(mode="after")
    def _credentials(self) -> SourceApi:
        if self.hook.app and not (self.app_id and self.private_key_file):
            raise ValueError("an App hook ({app: true}) needs app_id and private_key_file to sign the App's JWT")
        if not self.hook.app and not self.token:
            raise ValueError("a repo or org hook needs a token that may read and redeliver its deliveries")
        return self


class Source(Strict):
    kind: Literal["github", "gitlab", "gitea", "forgejo", "bitbucket-server", "bitbucket-cloud"]
    secret: WebhookSecret | None = None
    secrets: list[WebhookSecret] | None = None
    api: SourceApi | None = None

    @model_validator(mode="after")
    def _has_secret(self) -> Source:
        if not self.secret_list():
            raise ValueError("a source needs `secret` (or `secrets` during a rotation): unsigned hooks are refused")
        if self.kind == "gitlab" and any(not _header_safe(secret) for secret in self.secret_list()):
            # GitLab sends a plain token as the X-Gitlab-Token header itself; HTTP servers (granian
            # among them) drop header values with other bytes, so such a token could never match.
            raise ValueError("a GitLab secret token travels as a header: use printable ASCII characters only")
        return self

    def secret_list(self) -> list[bytes]:
        """Every accepted secret, current first, as the bytes HMAC needs."""
        values = ([self.secret] if self.secret else []) + list(self.secrets or [])
        return [value.get_secret_value().encode() for value in values if value.get_secret_value()]


# --- targets: one model per provider, chosen by `provider` ----------------------------------


class TargetBase(Strict):
    """What every target takes. A target whose mirror fields hold placeholders is *templated*: it
    serves every repository its routes send it, each rendered into a mirror of its own
    (``bridge.mirrors``); ``templated`` names those fields."""

    base_url: str
    timeout: Seconds = Field(default=900.0, description="longest the bridge follows one sync before failing it")
    request_timeout: Seconds = Field(default=20.0, le=120, description="longest one provider HTTP call may take")
    min_interval: Annotated[float, BeforeValidator(parse_duration_or_zero)] = Field(
        default=10.0, description="least time between two sync starts; pushes in between share one follow-up")
    retries: int = Field(default=5, ge=0, le=50, description="retries of a provider call that failed transiently")
    reconcile_every: Seconds | None = None

    @cached_property
    def templated(self) -> tuple[str, ...]:
        """The mirror fields that hold placeholders; empty for a target that names one mirror.

        Cached: the edge asks once per push and target, and the answer never changes.
        """
        return tuple(name for name in MIRROR_FIELDS if isinstance(value := getattr(self, name, None), str)
                     and PLACEHOLDER.search(value))

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not re.match(r"^https?://[^/\s]+", value):
            raise ValueError("must be an http(s) URL")
        return value.rstrip("/")


class MesaTarget(TargetBase):
    provider: Literal["mesa"]
    base_url: str = "https://api.mesa.dev/v1"
    org: str
    repo: str
    direction: Literal["pull", "push"] = "pull"
    token: SecretStr


class GoogleCsrTarget(TargetBase):
    provider: Literal["google-csr"]
    base_url: str = "https://sourcerepo.googleapis.com"
    repo: Annotated[str, AfterValidator(_shaped(r"^projects/[^/]+/repos/.+$", "projects/<project>/repos/<name>"))]
    credentials_file: ExistingFile | None = None
    token: SecretStr | None = None

    _one_credential = model_validator(mode="after")(
        lambda self: _exactly_one(self, "credentials_file (service account)", "token"))


class BitbucketDcTarget(TargetBase):
    provider: Literal["bitbucket-dc"]
    project: str
    repo: str
    token: SecretStr
    on_diverged: Literal["report", "merge", "discard"] = "report"


class AzureSource(Strict):
    collection_id: str
    project_id: str
    repository_id: str


class AzureDevopsTarget(TargetBase):
    """``source`` is the fork's parent; left out, the worker reads it from the fork (and keeps it)."""

    provider: Literal["azure-devops"]
    base_url: str = "https://dev.azure.com"
    organization: str
    project: str
    repository: str
    source: AzureSource | None = None
    token: SecretStr

    @model_validator(mode="after")
    def _one_source_per_fork(self) -> AzureDevopsTarget:
        if self.source is not None and self.templated:
            raise ValueError(f"`source` names one parent repository, but `{self.templated[-1]}` is templated, so "
                             "each push syncs another fork, each with its own parent: leave `source` out and the "
                             "bridge reads each fork's parent from Azure DevOps")
        return self


class HuaweiIam(Strict):
    username: str
    password: SecretStr
    domain: str
    project: str
    endpoint: str


class CodeartsTarget(TargetBase):
    """The repository by ``repository_id``, or by ``repository`` (``group/name``, as in its clone URL),
    whose id the worker asks CodeArts for once and keeps."""

    provider: Literal["codearts"]
    repository_id: int | str | None = None
    repository: Annotated[str, AfterValidator(_shaped(r"^[^/\s]+(/[^/\s]+)*/[^/\s]+$", "<group>/<name>"))] \
        | None = None
    token: SecretStr | None = None
    iam: HuaweiIam | None = None
    force_fetch: bool = False
    endpoint_uuid: str | None = None

    _one_credential = model_validator(mode="after")(lambda self: _exactly_one(self, "token", "iam"))
    _one_repository = model_validator(mode="after")(
        lambda self: _exactly_one(self, "repository_id", "repository (group/name)"))


class GitlabMirrorTarget(TargetBase):
    provider: Literal["gitlab-mirror"]
    base_url: str = "https://gitlab.com"
    project: int | str
    token: SecretStr
    pull_interval: Seconds = Field(default=300.0, ge=0, description="GitLab's minimum pull mirror interval: a pull "
                                   "asked for sooner after the last one started is skipped")


class GiteaMirrorTarget(TargetBase):
    provider: Literal["gitea-mirror"]
    repo: Annotated[str, AfterValidator(_shaped(r"^[^/\s]+/[^/\s]+$", "<owner>/<name>"))]
    token: SecretStr


Target = Annotated[
    MesaTarget
    | GoogleCsrTarget
    | BitbucketDcTarget
    | AzureDevopsTarget
    | CodeartsTarget
    | GitlabMirrorTarget
    | GiteaMirrorTarget,
    Field(discriminator="provider"),
]
PROVIDERS = ("google-csr", "bitbucket-dc", "azure-devops", "mesa", "codearts", "gitlab-mirror", "gitea-mirror")


TARGET_MODELS: dict[str, type[TargetBase]] = {
    get_args(model.model_fields["provider"].annotation)[0]: model for model in get_args(get_args(Target)[0])}
# Why a placeholder cannot go in a provider's field, and the way out; any other field gets _NOT_A_MIRROR_FIELD.
_UNTEMPLATABLE = {
    ("azure-devops", "source"): "Azure DevOps' GUIDs cannot be derived from a repository name; leave `source` out "
                                "and the bridge reads each fork's parent from Azure DevOps",
    ("codearts", "repository_id"): "it is CodeArts' numeric id, which no name renders to: write "
                                   "`repository: {owner}/{name}` instead, and the bridge asks CodeArts for the id",
}
_NOT_A_MIRROR_FIELD = "placeholders are filled only in the fields that name the mirror (here: {fields})"


def _placeholder_problems(targets: Any) -> list[tuple[str, str]]:
    """Placeholders the bridge cannot fill, by key: an unknown one in a mirror field, and any in another field.

    Checked on the raw mapping, apart from the models, so that the key names the very value
    (``targets.t.source.project_id``) and every target's mistakes show at once.
    """
    problems: list[tuple[str, str]] = []
    for name, raw in targets.items() if isinstance(targets, dict) else ():
        if not isinstance(raw, dict):
            continue
        provider = raw.get("provider")
        model = TARGET_MODELS.get(provider) if isinstance(provider, str) else None
        if model is None:  # an unknown provider is reported as such: which fields it names is unknown
            continue
        mirror_fields = [field for field in MIRROR_FIELDS if field in model.model_fields]
        for where, text in _strings(raw, ()):
            found = PLACEHOLDER.findall(text)
            known = [placeholder for placeholder in found if placeholder in PLACEHOLDERS]
            unknown = [placeholder for placeholder in found if placeholder not in PLACEHOLDERS]
            key, field = ".".join(("targets", str(name), *where)), where[0]
            if field not in model.model_fields:  # an unknown key: said as such
                continue
            if field in mirror_fields and unknown:
                problems.append((key, f"unknown placeholder {{{unknown[0]}}}: a mirror's name takes "
                                      "{owner}, {name} or {repo}"))
            elif field not in mirror_fields and known:
                reason = _UNTEMPLATABLE.get((provider, field),
                                            _NOT_A_MIRROR_FIELD.format(fields=", ".join(mirror_fields)))
                problems.append((key, f"{{{known[0]}}} cannot be filled here: {reason}"))
    return problems


# --- routes and notify -----------------------------------------------------------------------


class Route(Strict):
    source: str
    repo: str
    branches: list[str] | None = None
    tags: list[str] | None = None
    targets: list[str] = Field(min_length=1)

    @field_validator("repo")
    @classmethod
    def _repo_glob(cls, value: str) -> str:
        """A glob without ``/`` or ``**`` never matches: a full name is owner/name (GitLab: group/sub/name)."""
        _check_glob(value)
        if "/" not in value and "**" not in value:
            fix = "'*/*' or '**' (any depth)" if set(value) == {"*"} else f"'*/{value}' or '<owner>/{value}'"
            raise ValueError(f"{value!r} can never match: a repository's full name always contains '/' "
                             f"(owner/name, or group/subgroup/name on GitLab); write {fix}")
        return value

    @field_validator("branches", "tags")
    @classmethod
    def _ref_globs(cls, value: list[str] | None) -> list[str] | None:
        for glob in value or []:
            _check_glob(glob)
        return value

    @property
    def ref_filter(self) -> dict[str, list[str]] | None:
        """The route's branch/tag globs, or None when it takes every ref."""
        if self.branches is None and self.tags is None:
            return None
        return {"branches": self.branches, "tags": self.tags}


class Notify(Strict):
    url: AnyHttpUrl
    on: list[Literal["queued", "in_progress", "completed", "failed"]] = ["completed", "failed"]


class Config(Strict):
    sources: dict[str, Source]
    targets: dict[str, Target]
    routes: list[Route] = []
    notify: list[Notify] = []
    retention: Seconds = Field(default=7 * 86400.0, description="how long jobs and deliveries are kept")
    path: str = Field(default="", exclude=True)

    @model_validator(mode="after")
    def _names_exist(self) -> Config:
        problems = []
        for index, route in enumerate(self.routes):
            if route.source not in self.sources:
                problems.append(f"routes.{index}.source: unknown source {route.source!r}"
                                f" (sources: {', '.join(self.sources) or 'none'})")
            for name in route.targets:
                if name not in self.targets:
                    problems.append(f"routes.{index}.targets: unknown target {name!r}"
                                    f" (targets: {', '.join(self.targets) or 'none'})")
        if problems:
            raise ValueError("\n".join(problems))
        return self

    def secret_values(self) -> list[str]:
        """Every secret in the config (webhook secrets, tokens, passwords), longest first.

        A chat webhook URL is a credential in itself (its path or query carries the key), so
        each notify URL, its path and its query count as secrets too.
        """
        found: set[str] = set()
        _collect_secrets(self, found)
        for rule in self.notify:
            url = urlsplit(str(rule.url))
            found.update(part for part in (str(rule.url), url.path, url.query) if part.strip("/"))
        return sorted((value for value in found if len(value) >= 4), key=len, reverse=True)


def _exactly_one(model: Any, first: str, second: str) -> Any:
    """A target must name exactly one of two ways to authenticate (the first word is the field)."""
    if bool(getattr(model, first.split()[0])) == bool(getattr(model, second.split()[0])):
        raise ValueError(f"give exactly one of {first} or {second}")
    return model


def _check_glob(glob: str) -> str:
    try:
        compile_glob(glob)
    except GlobError as exc:
        raise ValueError(f"bad glob: {exc}") from None
    return glob


def _collect_secrets(value: Any, found: set[str]) -> None:
    if isinstance(value, SecretStr):
        found.add(value.get_secret_value())
    elif isinstance(value, BaseModel):
        for name in type(value).model_fields:
            _collect_secrets(getattr(value, name), found)
    elif isinstance(value, dict):
        for item in value.values():
            _collect_secrets(item, found)
    elif isinstance(value, list | tuple):
        for item in value:
            _collect_secrets(item, found)


# --- loading ---------------------------------------------------------------------------------


def config_path() -> Path:
    """The config file named by ``SYNCBRIDGE_CONFIG``, else ``./syncbridge.yml``."""
    return Path(os.environ.get("SYNCBRIDGE_CONFIG") or DEFAULT_PATH)


def load(path: str | os.PathLike[str] | None = None, env: dict[str, str] | None = None) -> Config:
    """Read, interpolate and validate the config; raise ConfigError naming file, key, reason.

    Without ``path``: ``$SYNCBRIDGE_CONFIG_YAML`` (the config itself) or the file ``$SYNCBRIDGE_CONFIG``
    (default ``./syncbridge.yml``); naming both is an error rather than a silent choice.
    """
    env = dict(os.environ) if env is None else env
    if path is None and env.get(CONFIG_YAML_VAR):
        if env.get("SYNCBRIDGE_CONFIG"):
            raise ConfigError([f"{CONFIG_YAML_VAR}: both it and SYNCBRIDGE_CONFIG are set: unset one"])
        return parse(env[CONFIG_YAML_VAR], CONFIG_YAML_VAR, env)
    file = Path(path if path is not None else env.get("SYNCBRIDGE_CONFIG") or DEFAULT_PATH)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"{file}: cannot read: {exc.strerror or exc}"]) from None
    except UnicodeDecodeError as exc:
        raise ConfigError([f"{file}: not UTF-8 text: byte {exc.start} is {exc.object[exc.start]:#04x}"]) from None
    return parse(text, str(file), env)


def parse(text: str, name: str, env: dict[str, str]) -> Config:
    """Validate config ``text``; ``name`` (its file, or the variable holding it) starts every problem."""
    raw = _read_yaml(text, name)
    if not isinstance(raw, dict):
        raise ConfigError([f"{name}: the top level must be a mapping with sources, targets and routes"])
    missing: dict[str, str] = {}
    data = _interpolate(raw, env, (), missing)
    problems = list(missing.items()) + _placeholder_problems(data.get("targets"))
    try:
        config = Config.model_validate({**data, "path": name})
    except ValidationError as exc:
        for problem in _describe(exc):
            # One cause, one message: an unset variable leaves "" behind, which its key and the
            # models around it would each report again ("a source needs `secret`").
            if problem not in problems and not any(_related(problem[0], unset) for unset in missing):
                problems.append(problem)
    if problems:
        raise ConfigError([f"{name}: {key}: {message}" for key, message in problems])
    return config


def _read_yaml(text: str, name: str) -> Any:
    """The YAML document, after checking its size with aliases expanded; errors carry line:column."""
    try:
        loader = _Loader(text)
    except yaml.YAMLError as exc:  # a character YAML forbids (the reader checks them all first)
        raise ConfigError([f"{name}: not valid YAML: {exc}"]) from None
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _expanded_size(node, {}, set(), name)
        return loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{name}:{mark.line + 1}:{mark.column + 1}" if mark else name
        context = exc.context_mark
        detail = (f"{exc.problem} ({exc.context} at {context.line + 1}:{context.column + 1})"
                  if exc.context and context else str(exc.problem))
        raise ConfigError([f"{where}: not valid YAML: {detail}"]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([f"{name}: not valid YAML: {exc}"]) from None
    except RecursionError:
        raise ConfigError([f"{name}: not valid YAML: nested too deeply"]) from None
    finally:
        loader.dispose()


def _expanded_size(node: yaml.Node, sizes: dict[int, int], open_nodes: set[int], name: str) -> int:
    """How many values ``node`` stands for once every alias is expanded; refuse bombs and cycles.

    An alias is the node it names (the same object), so each node is counted once and the sum is
    exact without expanding anything.
    """
    if id(node) in sizes:
        return sizes[id(node)]
    where = f"{name}:{node.start_mark.line + 1}:{node.start_mark.column + 1}"
    if id(node) in open_nodes:
        raise ConfigError([f"{where}: an alias (*name) inside the node it names: a structure without end"])
    open_nodes.add(id(node))
    size = 1
    if isinstance(node, yaml.MappingNode):
        size += sum(_expanded_size(part, sizes, open_nodes, name) for pair in node.value for part in pair)
    elif isinstance(node, yaml.SequenceNode):
        size += sum(_expanded_size(item, sizes, open_nodes, name) for item in node.value)
    if size > MAX_NODES:
        raise ConfigError([f"{where}: aliases expand this to more than {MAX_NODES:,} values (an alias bomb?):"
                           " refused; write the repeated part out, or alias less deeply"])
    open_nodes.discard(id(node))
    sizes[id(node)] = size
    return size


def _interpolate(value: Any, env: dict[str, str], where: tuple[str, ...], missing: dict[str, str]) -> Any:
    """Replace ``${NAME}`` / ``${NAME:-default}`` in every string, noting unset variables by key."""
    if isinstance(value, dict):
        return {key: _interpolate(item, env, (*where, str(key)), missing) for key, item in value.items()}
    if isinstance(value, list):
        return [_interpolate(item, env, (*where, str(i)), missing) for i, item in enumerate(value)]
    if not isinstance(value, str) or "${" not in value:
        return value

    def substitute(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in env and (env[name] or default is None):
            return env[name]
        if default is not None:
            return default
        missing.setdefault(".".join(where), f"environment variable {name} is not set"
                           f" (write ${{{name}:-default}} to give a default)")
        return ""

    # Strings stay strings; pydantic's lax mode reads "123" or "true" where a number or flag is due.
    return _VAR.sub(substitute, value)


def _related(key: str, other: str) -> bool:
    """The same key, or one inside the other (``sources.gh`` and ``sources.gh.secret``)."""
    return key == other or other.startswith(f"{key}.") or key.startswith(f"{other}.")


def _describe(exc: ValidationError) -> list[tuple[str, str]]:
    """Pydantic errors as ``(dotted.key, reason)`` pairs, without the provider tag pydantic inserts.

    An unknown key close to an allowed one gets "did you mean", and that key's own "Field required"
    is then left out: one typo, one message.
    """
    found: list[tuple[str, str]] = []
    suggested: set[str] = set()
    for error in exc.errors(include_url=False):
        loc = tuple(error["loc"])
        if len(loc) > 2 and loc[0] == "targets" and loc[2] in PROVIDERS:  # ("targets", name, tag, ...)
            loc = loc[:2] + loc[3:]
        parts = [str(part) for part in loc]
        key = ".".join(parts) or "(top level)"
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message, suggestion = _unknown_key(tuple(error["loc"]))
            if suggestion:
                suggested.add(".".join([*parts[:-1], suggestion]))
        elif error["type"] == "union_tag_invalid":
            message = f"unknown provider; one of {', '.join(PROVIDERS)}"
        elif error["type"] == "union_tag_not_found":
            message = f"missing `provider`; one of {', '.join(PROVIDERS)}"
        elif error["type"] == "literal_error" and parts and parts[-1] == "kind":
            message = f"unknown kind; one of {', '.join(SOURCE_KINDS)}"
        if not parts:  # cross-reference problems carry their own keys, one per line
            for line in message.splitlines():
                line_key, _, reason = line.partition(": ")
                found.append((line_key, reason) if reason else (key, line))
            continue
        found.append((key, message))
    return [(key, message) for key, message in found if not (key in suggested and message == "Field required")]


def _unknown_key(loc: tuple[Any, ...]) -> tuple[str, str | None]:
    """"unknown key", with the closest allowed key (difflib) or the list of allowed ones."""
    model = _model_at(loc[:-1])
    allowed = [name for name in model.model_fields if name != "path"] if model else []
    close = difflib.get_close_matches(str(loc[-1]), allowed, n=1, cutoff=0.6)
    if close:
        return f"unknown key; did you mean `{close[0]}`?", close[0]
    return f"unknown key (allowed here: {', '.join(allowed)})", None


def _model_at(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The model that validated the mapping at ``loc`` (a pydantic location, provider tags included)."""
    annotation: Any = Config
    for part in loc:
        annotation = _unwrap(annotation)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            annotation = annotation.model_fields[str(part)].annotation
        elif get_origin(annotation) in (dict, list):
            annotation = get_args(annotation)[-1]
        else:  # the targets union: ``part`` is the provider tag pydantic chose
            annotation = next((member for member in get_args(annotation)
                               if get_args(member.model_fields["provider"].annotation) == (part,)), None)
    annotation = _unwrap(annotation)
    return annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None


def _unwrap(annotation: Any) -> Any:
    """``X`` from ``Annotated[X, ...]`` and from ``X | None``."""
    while True:
        if hasattr(annotation, "__metadata__"):
            annotation = annotation.__origin__
        elif get_origin(annotation) in (Union, UnionType) and NoneType in get_args(annotation):
            [annotation] = [member for member in get_args(annotation) if member is not NoneType]
        else:
            return annotation
