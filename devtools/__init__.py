"""Development and test tools: the sample OSB broker, the Kubernetes API stand-in and the `demo` command.

Not part of the product: no module of `catalog_portal`, `teams`, `brokers` or `instances` imports this package
(tests/test_layering.py checks it). It is a Django app only so that `python manage.py demo` exists.
"""
