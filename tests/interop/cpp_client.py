"""Send one message with RocketMQ's C++ client (the ``rocketmq`` 0.4.4 wheel bundles
librocketmq), resolving the topic's route through the given name server.

usage: python cpp_client.py NAMESRV_ADDR TOPIC [TIMEOUT_MS]

Run as a subprocess by tests/test_interop_cpp.py (the C++ library keeps threads and global
state; a separate process keeps the test run clean). Prints one JSON line:
``{"ok": true, "status": …, "msg_id": …, "offset": …}`` or ``{"ok": false, "error": …}``.
"""

from __future__ import annotations

import json
import os
import sys


def main() -> int:
    namesrv, topic = sys.argv[1], sys.argv[2]
    timeout_ms = int(sys.argv[3]) if len(sys.argv) > 3 else 3000
    from rocketmq.client import Message, Producer

    producer = Producer(f"PID-interop-{os.getpid()}", timeout=timeout_ms)
    producer.set_namesrv_addr(namesrv)
    producer.start()
    try:
        msg = Message(topic)
        msg.set_keys("interop")
        msg.set_tags("cpp")
        msg.set_body("hello from the C++ client")
        result = producer.send_sync(msg)
        out = {
            "ok": True,
            "status": result.status.name,
            "msg_id": result.msg_id,
            "offset": result.offset,
        }
    except Exception as e:  # the client's error is the result under test
        out = {"ok": False, "error": f"{type(e).__name__}: {e}"}
    finally:
        producer.shutdown()
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
