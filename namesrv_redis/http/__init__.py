"""The HTTP tier: a thin FastAPI application (:mod:`.app`) over the same store API as the
remoting front end, behind plain-ASGI layers that answer cached routes (:mod:`.fast_routes`,
:mod:`.fast_protocol`), probes and metrics (:mod:`.probes`) without it; the application itself
is loaded on its first request (:mod:`.lazy_app`)."""
