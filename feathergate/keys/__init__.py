"""Virtual keys, teams, budgets and spend (LiteLLM's, issue #11).

Layout: :mod:`.tokens` (key format and hashing), :mod:`.durations` (LiteLLM's
durations and calendar resets), :mod:`.pricing` and ``prices.json`` (cost),
:mod:`.budgets` (reservations), :mod:`.limits` (rpm/tpm/parallel), :mod:`.store`
(SQLite and Postgres), :mod:`.service` (the per-request seam), :mod:`.admin`
(the management API) and :mod:`.wiring` (building it all from a config).

This package stays light to import: :mod:`feathergate.config` reads its settings.
"""
