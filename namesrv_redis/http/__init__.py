"""The HTTP tier: a thin FastAPI application over the same store API as the remoting front end."""

from namesrv_redis.http.app import create_app, warn_if_unprotected

__all__ = ["create_app", "warn_if_unprotected"]
