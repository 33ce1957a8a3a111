"""Teams, their namespaces and members, roles and access rules, and the audit log.

A domain of its own: who may see and do what (`access`), the services that change teams (`services`), and the record
of every change (`audit`). Imports only `catalog_portal`; `brokers` and `instances` build on it.
"""
