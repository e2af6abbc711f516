"""Settings and their value types: what an operator configures, parsed and validated.

Imports only :mod:`namesrv_redis.rocketmq` below it. Modules:

=====================  ======================================================================
``config``             :class:`Settings`: RocketMQ's option names, file / environment / flags
``namespace``          the key namespace's rule (one hash tag per estate)
``tls_modes``          TLS mode and client-auth names (RocketMQ's TlsSystemConfig)
``persistence_modes``  the embedded Redis' persistence mode names and their save schedules
``java_options``       every option name of the Java NameServer (4.9.x, 5.x) and its meaning here
``redis_url``          Redis URL schemes and the deployment each one names
``exit_codes``         the exit codes of every command and the error that carries one
``report``             ``serve --print-config`` and the first log line
=====================  ======================================================================
"""
