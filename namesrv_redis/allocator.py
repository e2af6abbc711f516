"""Keep the pod's C heap from holding on to big freed buffers.

glibc serves an allocation from ``mmap`` only above a threshold that it raises, by default,
to the size of the largest block freed so far. After one 1.6 MB REGISTER_BROKER body, every
later body and every large Redis reply comes from the main heap, which cannot shrink past the
small long-lived objects allocated between them (measured: 2.5 MiB of RSS kept after ten
10,000-topic registrations). A fixed threshold sends big buffers to ``mmap`` and back to the
system when freed. Other C libraries: nothing to do.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)

M_MMAP_THRESHOLD = -3
"""mallopt parameter number (malloc.h)."""
MMAP_THRESHOLD_BYTES = 128 * 1024
"""glibc's own default, before it starts adjusting it."""


def keep_big_buffers_out_of_the_heap() -> bool:
    """Fix glibc's mmap threshold; False when the C library is not glibc."""
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    ok = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES))
    log.debug("glibc mmap threshold fixed at %d bytes: %s", MMAP_THRESHOLD_BYTES, ok)
    return ok
