"""Deployment health: background checks, and the ``/health`` report built from them.

* :mod:`.probe`: what a check sends to each kind of upstream (pure);
* :mod:`.results`: the latest outcome per deployment;
* :mod:`.checks`: the rounds of checks, run in the server's nursery;
* :mod:`.report`: ``/health``'s body (pure).
"""
