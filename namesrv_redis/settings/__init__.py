"""Settings and their value types: what an operator configures, parsed and validated.

Imports only :mod:`namesrv_redis.rocketmq` below it. Modules:

=====================  ======================================================================
``config``             :class:`Settings`: RocketMQ's option names, file / environment / flags
``namespace``          the key namespace's rule (one hash tag per estate)
``tls_modes``          TLS mode and client-auth names (RocketMQ's TlsSystemConfig)
``persistence_modes``  the embedded Redis' persistence mode names and their save schedules
=====================  ======================================================================
"""
