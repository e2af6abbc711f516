"""namesrv-redis: a RocketMQ name server whose route tables live in Redis."""

__version__ = "0.1.0"
