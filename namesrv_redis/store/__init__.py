"""How namesrv-redis talks to Redis — everything on the Redis side of a pod, in one place.

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
==================  ==========================================================================
"""
