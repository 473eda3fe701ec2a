"""The corpus (tests/fixtures/corpus.yml) through a real web process and two worker processes: one
delivery at a time, then all of them at once, each with its host's whole header set. Every case
gets its expected answer (202, 200 ping, 200 ignored), every job ends completed, and every job
record tells the truth: its source and repository are the push's, its ref and sha one of the
pushes of that repository (a push may join a job that still waits)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from bridge.embedded import EmbeddedRedis
from tests.conftest import TOKEN
from tests.corpus import FIXTURES, Case, cases, request
from tests.test_end_to_end import running_bridge

SECRET = "corpus-webhook-secret-0123456789"
CASES = cases()
TERMINAL = ("completed", "failed")


def target_name(host: str, repo: str) -> str:
    return f"{host}--{repo.replace('/', '--').lower()}"


def lanes() -> dict[tuple[str, str], set[tuple[str, str]]]:
    """(host, repo) -> the (ref, after) of each push case of it: what a record of that repo may show."""
    found: dict[tuple[str, str], set[tuple[str, str]]] = {}
    for case in CASES:
        if case.expect == "push":
            found.setdefault((case.host, str(case.repo)), set()).add((str(case.ref), str(case.after)))
    return found


def config_text(sandbox_url: str) -> str:
    """A source per host, and a Mesa target of its own for every repository the corpus pushes."""
    hosts = sorted({case.host for case in CASES})
    sources = "".join(f"\n  {host}: {{kind: {host}, secret: {SECRET}}}" for host in hosts)
    targets = "".join(f"\n  {target_name(host, repo)}: {{provider: mesa, base_url: \"{sandbox_url}/mesa/v1\","
                      f" org: corpus, repo: \"{target_name(host, repo)}\", token: {TOKEN}, min_interval: 0}}"
                      for host, repo in lanes())
    routes = "".join(f"\n  - {{source: {host}, repo: \"{repo}\", targets: [{target_name(host, repo)}]}}"
                     for host, repo in lanes())
    return f"sources:{sources}\ntargets:{targets}\nroutes:{routes}\n"


@dataclass
class Sent:
    case: Case
    status: int
    answer: dict[str, Any]
    records: dict[str, dict[str, Any]]  # job id -> its record once ended


def send(url: str, case: Case, delivery: str) -> tuple[int, dict[str, Any]]:
    headers, body = request(case, SECRET, delivery)
    response = requests.post(f"{url}/hooks/{case.host}", data=body, headers=headers, timeout=30)
    try:
        return response.status_code, response.json()
    except ValueError:
        return response.status_code, {"text": response.text}


def ended(url: str, job_ids: set[str], timeout: float = 120) -> dict[str, dict[str, Any]]:
    """Each job's record once it has ended (or as it is when ``timeout`` runs out)."""
    records: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + timeout
    while job_ids - records.keys() and time.monotonic() < deadline:
        for job_id in job_ids - records.keys():
            record = requests.get(f"{url}/jobs/{job_id}", timeout=10).json()
            if record["status"] in TERMINAL:
                records[job_id] = record
        time.sleep(0.2)
    for job_id in job_ids - records.keys():
        records[job_id] = requests.get(f"{url}/jobs/{job_id}", timeout=10).json()
    return records


def replay(url: str, phase: str, concurrently: bool) -> dict[str, Sent]:
    deliveries = {case.id: f"{phase}-{uuid.uuid4()}" for case in CASES}
    if concurrently:
        with ThreadPoolExecutor(max_workers=len(CASES)) as pool:
            answers = list(pool.map(lambda case: send(url, case, deliveries[case.id]), CASES))
    else:
        answers = [send(url, case, deliveries[case.id]) for case in CASES]
    job_ids = {job["id"] for status, answer in answers if status == 202 for job in answer["jobs"]}
    records = ended(url, job_ids)
    return {case.id: Sent(case, status, answer,
                          {job["id"]: records[job["id"]] for job in answer.get("jobs", [])} if status == 202 else {})
            for case, (status, answer) in zip(CASES, answers, strict=True)}


@pytest.fixture(scope="module")
def bridge(tmp_path_factory: pytest.TempPathFactory, redis_server: EmbeddedRedis, sandbox_server: Any) -> Iterator[str]:
    requests.delete(f"{sandbox_server.url}/_sandbox/settings", timeout=5).raise_for_status()  # no faults left over
    config = Path(tmp_path_factory.mktemp("corpus")) / "syncbridge.yml"
    config.write_text(config_text(sandbox_server.url))
    with running_bridge(config, redis_server.url, processes=2) as url:
        yield url


@pytest.fixture(scope="module")
def one_at_a_time(bridge: str) -> dict[str, Sent]:
    return replay(bridge, "single", concurrently=False)


@pytest.fixture(scope="module")
def burst(bridge: str, one_at_a_time: dict[str, Sent]) -> dict[str, Sent]:
    return replay(bridge, "burst", concurrently=True)


def assert_answered(sent: Sent) -> None:
    case, status, answer = sent.case, sent.status, sent.answer
    if case.expect == "push":
        assert status == 202, (status, answer)
        assert [job["target"] for job in answer["jobs"]] == [target_name(case.host, str(case.repo))], answer
        for record in sent.records.values():
            assert record["status"] == "completed", record
            assert (record["source"], record["repo"]) == (case.host, case.repo), record
            assert (record["ref"], record["after"]) in lanes()[(case.host, str(case.repo))], record
    elif case.expect == "ping":
        assert (status, answer) == (200, {"ping": "ok", "source": case.host})
    elif case.expect == "ignored":
        assert status == 200 and set(answer) == {"ignored"}, (status, answer)
        assert case.reason is None or answer["ignored"] == case.reason, answer
    else:
        assert status == int(case.expect), (status, answer)
        assert case.reason is None or case.reason in str(answer.get("error")), answer


def params() -> list[Any]:
    """Each case; those whose answer needs another branch's change are strict xfails until it lands."""
    return [pytest.param(case, id=case.id, marks=[pytest.mark.xfail(
        strict=True, reason=f"lands with {case.lands_with}")] if case.lands_with else []) for case in CASES]


def test_the_manifest_names_every_payload_and_every_host() -> None:
    listed = {(case.host, case.file) for case in CASES}
    on_disk = set()
    for path in [*FIXTURES.glob("*/*.json"), *FIXTURES.glob("*/corpus/*.json")]:
        host, *within = path.relative_to(FIXTURES).parts
        on_disk.add((host, "/".join(within)))
    assert listed == on_disk
    assert {case.host for case in CASES} == {"github", "gitlab", "gitea", "forgejo", "bitbucket-server",
                                              "bitbucket-cloud"}
    assert len({case.id for case in CASES}) == len(CASES)


@pytest.mark.parametrize("case", params())
def test_one_at_a_time(one_at_a_time: dict[str, Sent], case: Case) -> None:
    assert_answered(one_at_a_time[case.id])


@pytest.mark.parametrize("case", params())
def test_as_a_burst(burst: dict[str, Sent], case: Case) -> None:
    assert_answered(burst[case.id])


def test_the_same_delivery_id_on_two_sources_is_two_deliveries(bridge: str) -> None:
    """Delivery ids are unique per host, not across hosts: a Forgejo push that happens to carry the
    id a Gitea push had is new work for the Forgejo source, not the Gitea push again."""
    gitea, forgejo = (next(case for case in CASES if case.id == f"{host}/push-force") for host in ("gitea", "forgejo"))
    delivery = f"shared-{uuid.uuid4()}"
    first, second = send(bridge, gitea, delivery), send(bridge, forgejo, delivery)
    assert first[0] == second[0] == 202, (first, second)
    assert [job["target"] for job in second[1]["jobs"]] == [target_name("forgejo", "riverworks/flow-model")]
