"""``namesrv-redis bench``: measures a name server the way the Java NameServer was measured.

A tool on top of the layers. Modules: :mod:`.cli` (the suites' options, tables and JSON line),
:mod:`.target` (start or target a server, fill and ask it), :mod:`.loadgen` (route load from
several processes), :mod:`.stats` (percentiles, CPU and memory), :mod:`.persistence` and
``persist_*`` (the persistence suite), :mod:`.capacity` and ``capacity_*`` / :mod:`.fleet` /
:mod:`.clients` / :mod:`.estate` / :mod:`.op_costs` (the capacity suite and its cost phase),
:mod:`.javalike` (the Java-shaped baseline server), :mod:`.tls_compare` (TLS overhead),
:mod:`.children` (stopping, reaping and hearing from child processes).
"""
