"""The name server's domain: registrations, their memory and rebuild, route answers, options.

Above :mod:`namesrv_redis.store`, below both front ends (``remoting``, ``http``), which only
decode, call these and encode. Modules:

==================  =========================================================================
``registrations``   a broker's registration diffed against what this pod stored last
``rebuild``         the registrations a pod re-applies when Redis lost its data
``reconcile``       what Redis holds for each connected broker, verified and repaired
``route_reader``    route answers through the pod's cache of encoded bodies
``runtime_config``  which options UPDATE_NAMESRV_CONFIG may change, and their bounds
==================  =========================================================================
"""
