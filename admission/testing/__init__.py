"""The webhook's test scaffolding, shared by the test suite and the benchmarks (``bench/``).

:mod:`.helpers` (admission reviews, keys, configs, TLS material, signed images),
:mod:`.world` (a registry of images signed every way the tests need), :mod:`.webhook`
(``attest admission serve`` under gunicorn/TLS), :mod:`.serve` (the same with the
records web view) and :mod:`.samples` (decision records and their signing key).  The
servers both sides use are in ``attest.testing``.  Nothing in the webhook imports these.
"""
