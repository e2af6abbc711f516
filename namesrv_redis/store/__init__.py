"""Everything that talks to Redis: the key schema, the scripts, the store API, liveness.

Imports only ``rocketmq``, ``settings`` and ``telemetry`` below it; nothing above.

==================  ==========================================================================
module              what it holds
==================  ==========================================================================
``keys``            the key schema of one namespace (the only module that formats a key)
``scripts``         loads ``lua/*.lua`` once and calls them by SHA
``route_store``     :class:`RouteStore`: the async API the front ends call (writes = scripts)
``connection``      Redis clients from one URL: standalone, TLS, unix, Sentinel, Cluster
``events``          the pod's subscription to route-change events, with lost-event detection
``liveness``        the expired-key cleaner and the deadline sweeper
``pods``            pod advertisement for the address server (``/rocketmq/nsaddr``)
``embedded``        the private redis-server started when no URL is configured
``check``           ``namesrv-redis check``: invariants of the route tables
``memory``          ``memory://``: a private in-process fakeredis (tests, tinkering)
``acl``             ACL credentials of one namespace
``deadlines``       deadlines on every Redis call
``script_pipe``     script calls of one event-loop turn batched onto one connection
``event_loop``      the running loop without a ``getpid`` system call; a cheap deadline
``replication``     ``WAIT``: a write acknowledged once a failover would keep it
``topology``        where the namespace's data lives now (Sentinel, Cluster), and switches
``persistence``     what persistence a Redis promises; ``datadir``: the embedded one's files
``redis_tls``       Redis credentials and TLS options for every URL form
==================  ==========================================================================
"""
