"""Operations: the request being served (its id and user), JSON logs, Prometheus metrics.

Cross-cutting, like :mod:`app.settings`: the API, the pages, the services and the database
layer all report into it; it imports none of them.
"""
