"""Habitat-compatible key material: key files, box (user/service) keys, TLS files and contexts.

- ``keyfiles``: the shared key file layout (header, ``name-revision``, blank line, base64) and the
  cache helpers (revisions, atomic writes that never overwrite a different key).
- ``box``: Curve25519 box keys (``BOX-SEC-1`` / ``BOX-PUB-1``): user and service keys.
- ``keycache``: finding box keys in the key cache (latest revision, or an exact one).
- ``message``: Habitat's ``BOX-1`` encrypted payload of ``config apply`` / ``file upload --user``.
- ``certgen``: the control gateway's self-signed certificate (``sup secret generate-tls``).
- ``tls``: ``ssl.SSLContext`` builders for the gateways and their clients, with clear errors.
- ``certwatch``: re-reads certificate files when they change (rotation without restart).

Ring keys (``SYM-SEC-1``) stay in ``pysup.butterfly.keys``; they share ``keyfiles``.
"""
