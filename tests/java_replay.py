"""A tiny name server that answers with the Java NameServer's captured responses
(tests/fixtures/frames*.jsonl, real 4.9.8 traffic), so the admin CLI is proven to parse what
Java really sends: bodies in fastjson, remarks with the FAQ link, header fields as strings.

Each request is answered with the captured response of a captured request with the same code
and the same identifying ext fields (topic, namespace, key, brokerName, cluster); when several
match, the last one captured wins. A request nothing matches gets no answer, as 4.9.8 does
for what it does not know.
"""

from __future__ import annotations

import asyncio
import base64
import threading
from typing import Any

from namesrv_redis.remoting.codec import FLAG_RESPONSE, FrameDecoder, RemotingCommand, encode
from tests.conftest import free_port
from tests.test_capture_replay import exchanges, load_frames

IDENTIFYING = ("topic", "namespace", "key", "brokerName", "cluster", "clusterName")


def _key(code: int, ext: dict[str, str] | None) -> tuple[Any, ...]:
    ext = ext or {}
    return (code, *(ext.get(f) for f in IDENTIFYING))


class JavaReplayServer:
    def __init__(self, *captures: str) -> None:
        self.answers: dict[tuple[Any, ...], dict[str, Any]] = {}
        self.requests: list[RemotingCommand] = []
        for capture in captures or ("frames.jsonl", "frames-probe.jsonl"):
            for request, response in exchanges(load_frames(capture)):
                if response is not None:
                    key = _key(request["code"], request["header"].get("extFields"))
                    self.answers[key] = response
        self.port = free_port()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.port}"

    def answer(self, cmd: RemotingCommand) -> bytes | None:
        self.requests.append(cmd)
        captured = self.answers.get(_key(cmd.code, cmd.ext_fields))
        if captured is None:
            return None
        h = captured["header"]
        body = base64.b64decode(captured["body_b64"]) if captured.get("body_b64") else None
        return encode(
            RemotingCommand(
                code=h["code"],
                language=h.get("language", "JAVA"),
                version=h.get("version", 409),
                opaque=cmd.opaque,
                flag=FLAG_RESPONSE,
                remark=h.get("remark"),
                ext_fields=h.get("extFields"),
                body=body,
                serialize_type=cmd.serialize_type,
            )
        )

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        decoder = FrameDecoder()
        self._writers.add(writer)
        try:
            while data := await reader.read(65536):
                for cmd in decoder.feed(data):
                    frame = self.answer(cmd)
                    if frame is not None:
                        writer.write(frame)
        except ConnectionError:
            pass
        finally:
            self._writers.discard(writer)
            writer.close()

    def start(self) -> JavaReplayServer:
        self._thread.start()
        fut = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._handle, "127.0.0.1", self.port), self._loop
        )
        self._server = fut.result(5)
        return self

    def stop(self) -> None:
        if self._server is not None:
            server = self._server

            async def close() -> None:
                server.close()
                for w in list(self._writers):  # the admin's connections, if still open
                    w.close()
                await server.wait_closed()

            asyncio.run_coroutine_threadsafe(close(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()
