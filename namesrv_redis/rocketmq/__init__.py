"""The RocketMQ vocabulary every layer shares: records, codes, headers, bodies, JSON dialect.

Bottom layer: imports nothing else of namesrv_redis. Modules:

=================  ==========================================================================
``model``          the route tables' records (BrokerData, QueueData…) and their wire shapes
``codes``          request and response codes
``errors``         exceptions that carry a response code, and the one mapping of any error
``headers``        typed request headers built from ``extFields``
``register_body``  RegisterBrokerBody: JSON or compressed, CRC, the topic table
``fastjson``       JSON as the Java side writes and reads it (fastjson's quirks)
``java_order``     Java ``HashMap`` iteration order, for answers that follow it
``bounds``         Java's integer ranges and the name server's bounds on client values
=================  ==========================================================================
"""
