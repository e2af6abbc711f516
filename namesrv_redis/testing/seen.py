"""What one test name server was asked: requests per request code, responses per code.

The remoting server reports every answered request to its metrics object (cached route
answers included); :class:`SeenRequests` counts them per server instance on top of the
process-wide Prometheus metrics it keeps feeding.
"""

from __future__ import annotations

from collections import Counter

from namesrv_redis.remoting.server import _Metrics


class SeenRequests(_Metrics):
    def __init__(self) -> None:
        super().__init__()
        self.requests: Counter[int] = Counter()
        self.responses: Counter[int] = Counter()

    def request(self, code: int, seconds: float) -> None:
        self.requests[code] += 1
        super().request(code, seconds)

    def response(self, code: int) -> None:
        self.responses[code] += 1
        super().response(code)

    def clear(self) -> None:
        self.requests.clear()
        self.responses.clear()
