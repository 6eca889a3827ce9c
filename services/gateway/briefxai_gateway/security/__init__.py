"""Who may call the gateway and what they did: authentication (API keys, JWT), roles, tenant scoping,
the hash-chained audit trail, security events, and the data subject rights (erase, export).

- ``principal.py``: the caller (actor, tenant, role) and the tenant the current call is scoped to;
- ``permissions.py``: which role each RPC needs and what it acts on;
- ``authn.py``: API keys and JWTs to a principal; ``interceptor.py``: the gRPC side of it;
- ``audit.py``: the audit trail; ``monitor.py``: lockouts and the rules that raise security events;
- ``users.py``: erase and export a user's data; ``retention.py``: the periodic purge.
"""
