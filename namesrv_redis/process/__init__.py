"""The pod process: start-up and shutdown in order, the ``--workers`` supervisor, memory trimming.

Above both front ends; only :mod:`namesrv_redis.cli` and the tools import it. Modules:

====================  =======================================================================
``pod``               one pod: Redis, the store, both front ends, background loops
``workers``           ``serve``: one pod here, or ``--workers N`` processes sharing the ports
``memtrim``           memory handed back to the system after bursts (glibc)
``security_options``  the security flags (TLS, ACL, HTTPS, Redis credentials), ``acl`` command
====================  =======================================================================
"""
