"""``GET /ready`` on the worker's web port: what a Kubernetes readiness probe or an operator's
script asks before sending traffic or restarting the next worker of a rolling restart."""

from __future__ import annotations

import socket

import httpx
from worker_helpers import WorkerProcess, make_community, publish_registry, wait_until


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ready_answer(port: int) -> tuple[int, dict] | None:
    try:
        response = httpx.get(f"http://127.0.0.1:{port}/ready", timeout=2.0)
    except httpx.HTTPError:
        return None  # not listening yet
    return response.status_code, response.json()


def test_ready_waits_for_the_registry_then_answers_200(stack_settings, tmp_path):
    settings = stack_settings
    port = free_port()
    worker = WorkerProcess(settings, tmp_path, "w-ready", "--web-port", str(port))
    try:
        # no registry published yet: the worker serves /ready but says why it is not ready
        first = wait_until(lambda: ready_answer(port), 90, "worker web port")
        status, body = first
        assert status == 503 and body["ready"] is False
        assert "registry not loaded yet" in body["reasons"]

        publish_registry(settings, [make_community("c-ready", [0.5, 0.5])])

        def ready() -> bool:
            answer = ready_answer(port)
            return answer is not None and answer[0] == 200

        wait_until(ready, 90, "worker ready")
        status, body = ready_answer(port)
        assert body == {"ready": True, "reasons": []}
    finally:
        worker.stop()
