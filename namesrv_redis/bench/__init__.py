"""``namesrv-redis bench``: measures a name server the way the Java NameServer was measured.

Modules: :mod:`.loadgen` (route load from several processes, over remoting or HTTP),
:mod:`.stats` (percentiles, CPU accounting), :mod:`.target` (start or target a server and
read its CPU and memory), :mod:`.scenarios` (what is measured) and :mod:`.cli` (options and
the printed tables and JSON line).
"""
