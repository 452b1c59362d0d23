"""The API under several uvicorn workers: every worker's requests are counted by the
`/metrics` of any of them."""

from __future__ import annotations

import re

import httpx
import pytest

from api.serve import api_process

REQUESTS = 60


def _tickers_count(text: str) -> float:
    pattern = r'^sentinel_api_requests_total\{[^}]*route="/tickers"[^}]*\} (\S+)$'
    return sum(float(v) for v in re.findall(pattern, text, re.MULTILINE))


@pytest.mark.slow
def test_two_workers_count_each_others_requests(filled_db: str) -> None:
    with api_process({"DATABASE_URL": filled_db}, workers=2) as base_url:
        for _ in range(REQUESTS):  # a connection each: the kernel spreads them
            assert httpx.get(f"{base_url}/tickers", timeout=10).status_code == 200
        scrapes = [httpx.get(f"{base_url}/metrics", timeout=10).text for _ in range(6)]
    assert [_tickers_count(s) for s in scrapes] == [REQUESTS] * 6
