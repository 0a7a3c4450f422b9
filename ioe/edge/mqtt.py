"""An MQTT client that is the edge: TLS to the secure listener with the bundle's certificate.

Why here: the heartbeat sender, the tests and any edge-side publisher must connect the same
way — verify the broker against the project's CA (never ``tls_insecure``), present the edge's
certificate, and let the broker take the username from it (no password is sent).
"""

from __future__ import annotations

import ssl

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from ioe.edge.bundle import Bundle


def tls_client(bundle: Bundle, client_id: str | None = None, *,
               clean_session: bool = True) -> mqtt.Client:
    client = mqtt.Client(CallbackAPIVersion.VERSION2,
                         client_id=client_id or f"{bundle.id.principal}",
                         clean_session=clean_session)
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(bundle.ca_path))
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(str(bundle.cert_path), str(bundle.key_path))
    client.tls_set_context(context)
    return client
