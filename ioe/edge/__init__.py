"""Edge identity: the project's small CA, enrolled edges, their bundles, ACLs and heartbeats.

Why in the spine: the Modbus edge (``connectors/``) reads its enrolment bundle and sends
heartbeats, and the local stack (``devtools/``) renders the broker's ACL and CRL from the same
state, so both sides must agree on one format; ``connectors`` may import only ``ioe``.
Only :mod:`ioe.edge.ca` imports ``cryptography``; the bundle and heartbeat formats do not.
"""
