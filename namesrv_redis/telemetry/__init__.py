"""Metric definitions and their exposition, for every layer above to record into.

Imports only :mod:`namesrv_redis.rocketmq` below it. Modules:

======================  =====================================================================
``metrics``             every Prometheus metric the pod exports
``estate_metrics``      gauges of the whole namespace, read from Redis once per scrape
``worker_metrics``      one ``/metrics`` over all processes of a ``--workers`` pod
``worker_metrics_dir``  the directory those processes share (no metrics library loaded)
======================  =====================================================================
"""
