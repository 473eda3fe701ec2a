"""The public edge through a real ``syncbridge web``: slow clients, deadlines, caps, limits, batching.

Every test talks HTTP (or a raw socket, to be slow on purpose) to granian serving
``bridge.receiver.Receiver``, which stores in the suite's real Redis. The only timing bounds are
generous ones that say "it happened at all, and not after the deadline plus a wide margin".
"""

from __future__ import annotations

import gzip
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import pytest
import requests
from redis import Redis

from bridge.embedded import EmbeddedRedis
from bridge.store import delivery_key
from tests.conftest import github_headers, mesa_config
from tests.test_hooks import push_body
from tests.test_reliability import web_process, write_config

SANDBOX_URL = "http://127.0.0.1:9"  # nothing syncs here: these tests are about receiving


@contextmanager
def edge(tmp_path: Path, redis_server: EmbeddedRedis, **env: str) -> Iterator[tuple[str, int]]:
    config = write_config(tmp_path, mesa_config(SANDBOX_URL))
    with web_process(config, redis_server.url, tmp_path / "web.log", **env) as (url, _):
        yield url, int(url.rsplit(":", 1)[1])


def signed_push(delivery: str, **fields: Any) -> tuple[bytes, dict[str, str]]:
    body = push_body(**fields)
    return body, github_headers(body, delivery=delivery)


def open_slow_request(port: int, length: int = 100_000, path: str = "/hooks/github") -> socket.socket:
    """A client that sends its headers, promises ``length`` bytes and sends one: then trickles or stalls."""
    conn = socket.create_connection(("127.0.0.1", port), timeout=30)
    conn.sendall(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                 f"X-GitHub-Event: push\r\nContent-Length: {length}\r\n\r\n{{".encode())
    return conn


def read_answer(conn: socket.socket) -> tuple[bytes, bool]:
    """The response head the server sent, and whether it then closed the connection."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return data, True
        data += chunk
    try:
        conn.settimeout(5)
        while chunk := conn.recv(65536):
            data += chunk
        return data, True
    except TimeoutError:
        return data, False


def test_slow_clients_cost_a_socket_not_the_service(tmp_path: Path, redis_server: EmbeddedRedis, redis: Redis) -> None:
    """300 clients trickle bodies at a byte a second; meanwhile a signed push is stored and answered,
    and /healthz, /readyz and a job's status route (served by Flask on its threads) answer too."""
    with edge(tmp_path, redis_server) as (url, port), ExitStack() as held:
        slow = [held.enter_context(open_slow_request(port)) for _ in range(300)]
        stop = threading.Event()

        def trickle() -> None:
            while not stop.wait(1):
                for conn in slow:
                    conn.sendall(b" ")

        trickler = threading.Thread(target=trickle, daemon=True)
        trickler.start()
        try:
            timings = []
            for index in range(20):
                body, headers = signed_push(f"edge-slow-{index}", after=f"{index:040x}")
                started = time.monotonic()
                answer = requests.post(f"{url}/hooks/github", data=body, headers=headers, timeout=5)
                timings.append(time.monotonic() - started)
                assert answer.status_code == 202, answer.text
            job_url = answer.json()["jobs"][0]["url"]
            assert requests.get(f"{url}/healthz", timeout=5).status_code == 200
            assert requests.get(f"{url}/readyz", timeout=5).status_code == 200
            assert requests.get(job_url, timeout=5).json()["status"] == "queued"
        finally:
            stop.set()
            trickler.join()
        # Still held, still owing almost all of their bodies: nothing of theirs was answered or stored.
        assert all(conn.fileno() != -1 for conn in slow)
    assert redis.exists(delivery_key("github", "edge-slow-19"))
    print(f"\nwith 300 slow clients held: signed push answered in {1000 * max(timings):.1f} ms at worst")


def test_a_body_that_trickles_gets_408_and_a_closed_connection(tmp_path: Path, redis_server: EmbeddedRedis,
                                                               redis: Redis) -> None:
    with edge(tmp_path, redis_server, SYNCBRIDGE_BODY_TIMEOUT="1") as (_, port):
        conn = open_slow_request(port, length=5000)
        started = time.monotonic()
        conn.sendall(b'"ref": "refs/heads/main"')
        answer, closed = read_answer(conn)
        elapsed = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408"), answer[:100]
    assert closed and b"did not arrive in time" in answer
    assert 0.9 <= elapsed < 5, elapsed


def test_a_large_body_earns_time_as_it_arrives(tmp_path: Path, redis_server: EmbeddedRedis, redis: Redis) -> None:
    """A body over the one-read size that keeps flowing (10 KB/s against a 1 s base deadline) is read
    to its end and answered; the deadline grows by a second per 500 bytes received."""
    body, headers = signed_push("edge-flowing", repo="acme/widgets")
    body += b" " * (80_000 - len(body))  # JSON allows trailing whitespace; the signature covers it
    headers = github_headers(body, delivery="edge-flowing")
    with edge(tmp_path, redis_server, SYNCBRIDGE_BODY_TIMEOUT="1") as (_, port):
        conn = socket.create_connection(("127.0.0.1", port), timeout=30)
        head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        conn.sendall(f"POST /hooks/github HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(body)}\r\n{head}\r\n"
                     .encode())
        for offset in range(0, len(body), 2_000):  # 2 KB every 0.2 s: 8 s for the whole body
            conn.sendall(body[offset:offset + 2_000])
            time.sleep(0.2)
        answer, _ = read_answer(conn)
        conn.close()
    assert answer.startswith(b"HTTP/1.1 202"), answer[:200]


def test_headers_that_trickle_are_cut_off(tmp_path: Path, redis_server: EmbeddedRedis, redis: Redis) -> None:
    with edge(tmp_path, redis_server, SYNCBRIDGE_HEADER_TIMEOUT="1") as (url, port):
        conn = socket.create_connection(("127.0.0.1", port), timeout=30)
        started = time.monotonic()
        conn.sendall(b"POST /hooks/github HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        answer, closed = read_answer(conn)
        elapsed = time.monotonic() - started
        assert requests.get(f"{url}/healthz", timeout=5).status_code == 200
    assert closed and not answer.startswith(b"HTTP/1.1 2"), answer[:100]
    assert 0.9 <= elapsed < 5, elapsed


def test_requests_over_the_cap_get_a_prompt_503_and_the_next_is_served(tmp_path: Path,
                                                                       redis_server: EmbeddedRedis,
                                                                       redis: Redis) -> None:
    with edge(tmp_path, redis_server, SYNCBRIDGE_MAX_IN_FLIGHT="5") as (url, port):
        slow = [open_slow_request(port) for _ in range(5)]
        time.sleep(0.5)  # all five are in flight
        body, headers = signed_push("edge-capped")
        refused = requests.post(f"{url}/hooks/github", data=body, headers=headers, timeout=5)
        for conn in slow:
            conn.close()
        time.sleep(0.5)
        accepted = requests.post(f"{url}/hooks/github", data=body, headers=headers, timeout=5)
    assert refused.status_code == 503 and refused.headers["Retry-After"] == "1", refused.text
    assert accepted.status_code == 202, accepted.text  # the same delivery, now stored: nothing was before


def test_bodies_over_the_process_budget_get_503(tmp_path: Path, redis_server: EmbeddedRedis, redis: Redis) -> None:
    """One client holds 40 KB of a 50 KB budget: a 20 KB push must wait (503), a 1 KB one fits."""
    with edge(tmp_path, redis_server, SYNCBRIDGE_BODY_BUDGET_BYTES="50000") as (url, port):
        holder = open_slow_request(port, length=40_000)
        time.sleep(0.5)
        big, big_headers = signed_push("edge-budget-big")
        big += b" " * (20_000 - len(big))
        big_headers = github_headers(big, delivery="edge-budget-big")
        refused = requests.post(f"{url}/hooks/github", data=big, headers=big_headers, timeout=5)
        small, small_headers = signed_push("edge-budget-small")
        accepted = requests.post(f"{url}/hooks/github", data=small, headers=small_headers, timeout=5)
        holder.close()
    assert refused.status_code == 503 and "Retry-After" in refused.headers
    assert accepted.status_code == 202, accepted.text
    assert not redis.exists(delivery_key("github", "edge-budget-big"))


def test_bodies_over_the_limit_get_413_declared_or_chunked(tmp_path: Path, redis_server: EmbeddedRedis,
                                                           redis: Redis) -> None:
    body, headers = signed_push("edge-too-large")
    body += b" " * (200_000 - len(body))
    headers = github_headers(body, delivery="edge-too-large")
    with edge(tmp_path, redis_server, SYNCBRIDGE_MAX_BODY_BYTES="100000") as (url, _):
        declared = requests.post(f"{url}/hooks/github", data=body, headers=headers, timeout=5)
        chunked = requests.post(f"{url}/hooks/github", data=iter([body[i:i + 8192] for i in range(0, len(body), 8192)]),
                                headers=headers, timeout=5)
    assert declared.status_code == 413 and "100000" in declared.json()["error"]
    assert chunked.status_code == 413, chunked.text  # not cut at the limit and then judged (401) on what was read
    assert not redis.exists(delivery_key("github", "edge-too-large"))


def test_a_redelivery_is_answered_from_the_same_round_trip(tmp_path: Path, redis_server: EmbeddedRedis,
                                                           redis: Redis) -> None:
    body, headers = signed_push("edge-again")
    with edge(tmp_path, redis_server) as (url, _):
        first = requests.post(f"{url}/hooks/github", data=body, headers=headers, timeout=5)
        redis.config_resetstat()
        again = requests.post(f"{url}/hooks/github", data=body, headers=headers, timeout=5)
        stats = redis.info("commandstats")
    assert first.status_code == 202 and again.status_code == 200
    assert again.json() == first.json()  # the same jobs, as they are now (still queued)
    assert stats["cmdstat_evalsha"]["calls"] == 1
    assert "cmdstat_hgetall" not in stats  # no second look-up of the jobs (the script reads them)


def test_concurrent_pushes_share_round_trips_and_each_is_stored_and_answered(tmp_path: Path,
                                                                             redis_server: EmbeddedRedis,
                                                                             redis: Redis) -> None:
    with edge(tmp_path, redis_server) as (url, _):
        redis.config_resetstat()

        def post(index: int) -> tuple[int, str | None]:
            body, headers = signed_push(f"edge-c-{index}",
                                        repo=f"acme/widgets-{index}" if index % 2 else "acme/widgets")
            response = requests.post(f"{url}/hooks/github", data=body, headers=headers, timeout=10)
            return response.status_code, response.json().get("delivery")  # an unrouted push: {"ignored": ...}

        with ThreadPoolExecutor(max_workers=32) as pool:
            answers = list(pool.map(post, range(400)))
        evalsha = redis.info("commandstats")["cmdstat_evalsha"]["calls"]
    assert answers == [(202, f"edge-c-{i}") if i % 2 == 0 else (200, None) for i in range(400)]
    stored = {key.decode() for key in redis.scan_iter(match=delivery_key("github", "edge-c-*"))}
    assert stored == {delivery_key("github", f"edge-c-{i}") for i in range(0, 400, 2)}  # odd ones had no route
    assert 1 <= evalsha < 200  # deliveries that arrived together shared a script call
    print(f"\n200 stored deliveries in {evalsha} script calls")


def test_the_api_and_pages_are_served_behind_the_edge(tmp_path: Path, redis_server: EmbeddedRedis,
                                                      redis: Redis) -> None:
    body, headers = signed_push("edge-api")
    api = {"Authorization": "Bearer edge-api-token"}
    with edge(tmp_path, redis_server, SYNCBRIDGE_API_TOKEN="edge-api-token") as (url, _):
        job = requests.post(f"{url}/hooks/github", data=body, headers=headers, timeout=5).json()["jobs"][0]
        assert requests.get(f"{url}/jobs/{job['id']}", headers=api, timeout=5).json()["delivery"] == "edge-api"
        assert requests.get(f"{url}/jobs/{job['id']}", timeout=5).status_code == 401
        retried = requests.post(f"{url}/jobs/{job['id']}/retry", json={}, headers=api, timeout=5)
        assert retried.status_code == 409  # queued, not failed: the body reached Flask and was answered
        assert "<html" in requests.get(f"{url}/", headers=api, timeout=5).text.lower()
        forged = dict(headers, **{"X-Hub-Signature-256": "sha256=" + "0" * 64, "X-GitHub-Delivery": "edge-forged"})
        assert requests.post(f"{url}/hooks/github", data=body, headers=forged, timeout=5).status_code == 401
        field = '{"outcome":"unauthorized","source":"github"}'
        deadline = time.monotonic() + 10  # counted off the request path, about once a second
        while redis.hget("syncbridge:metrics:webhooks_received", field) is None and time.monotonic() < deadline:
            time.sleep(0.1)
    assert redis.hget("syncbridge:metrics:webhooks_received", field) == b"1"


def test_job_urls_follow_the_forwarded_scheme_and_host(tmp_path: Path, redis_server: EmbeddedRedis,
                                                       redis: Redis) -> None:
    body, headers = signed_push("edge-proxied")
    headers.update({"X-Forwarded-Proto": "https", "X-Forwarded-Host": "bridge.example"})
    with edge(tmp_path, redis_server) as (url, _):
        answer = requests.post(f"{url}/hooks/github", data=body, headers=headers, timeout=5).json()
    assert answer["jobs"][0]["url"].startswith("https://bridge.example/jobs/")


@pytest.mark.parametrize("encoding", ["gzip", "br"])
def test_a_compressed_body_is_415_naming_its_encoding(tmp_path: Path, redis_server: EmbeddedRedis, redis: Redis,
                                                      encoding: str) -> None:
    body = gzip.compress(push_body())
    headers = github_headers(body, delivery=f"edge-{encoding}")
    headers["Content-Encoding"] = encoding
    with edge(tmp_path, redis_server) as (url, _):
        answer = requests.post(f"{url}/hooks/github", data=body, headers=headers, timeout=5)
    assert answer.status_code == 415 and encoding in answer.json()["error"]
    assert not redis.exists(delivery_key("github", f"edge-{encoding}"))
