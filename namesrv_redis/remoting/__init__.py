"""The RocketMQ remoting front end (port 9876): frames in, a domain call, frames out.

Above :mod:`namesrv_redis.domain`; imports nothing from ``http`` or the process. Modules:

==================  =========================================================================
``codec``           frames as pure functions over bytes (no I/O)
``server``          the ``asyncio.Protocol`` over the codec; flow control, draining
``processor``       one handler per request code, in a dict
``handler_types``   what a handler gets (:class:`Connection`) and returns (:class:`Response`)
``acl``             RocketMQ's request signatures, checked before a request changes anything
``admission``       how many requests run and wait at once, per lane (SYSTEM_BUSY)
``single_flight``   identical list queries in flight share one answer
``offload``         big registrations on a worker thread with its own loop
``frame_budget``    one memory budget for the big frames of all connections
``limits``          every limit of the front end, in one place
``tls``             TLS as RocketMQ's clients speak it; ``accept``: TLS and plain on one port
``selfsigned``      the certificate of TLS test mode
``client``          a small remoting client (admin, bench, simulated brokers, tests)
==================  =========================================================================
"""
