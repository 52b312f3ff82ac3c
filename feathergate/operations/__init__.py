"""Operations: what an endpoint asks of a deployment, one implementation per adapter.

:mod:`.base` is the interface the relay uses; :mod:`feathergate.endpoints`
says which operation serves which endpoint for which adapter.
"""
