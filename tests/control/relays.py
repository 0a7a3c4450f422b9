"""Relays and plugs on the real Mosquitto, each speaking its family's own MQTT protocol.

A faithful stand-in for the physical device only: Shelly Gen1 (``relay/<n>/command`` ->
``relay/<n>``), Shelly Gen2/Gen3 JSON-RPC (``<prefix>/rpc`` -> ``<src>/rpc``) and Tasmota
(``cmnd/<topic>/POWER`` -> ``stat/<topic>/RESULT`` and ``stat/<topic>/POWER``).
"""

from __future__ import annotations

import threading
from typing import Any

import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion


class FakeRelays:
    def __init__(self, settings: Any, root: str, *, gen1: list[str] = (),  # type: ignore[assignment]
                 gen2: list[str] = (), tasmota: list[str] = ()) -> None:  # type: ignore[assignment]
        self.root = root
        self.state: dict[str, bool] = {name: False for name in (*gen1, *gen2, *tasmota)}
        self.received: list[tuple[str, bytes]] = []
        self._ready = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
        self.filters = ([f"{root}/shellies/{d}/relay/0/command" for d in gen1]
                        + [f"{root}/{d}/rpc" for d in gen2]
                        + [f"{root}/cmnd/{d}/POWER" for d in tasmota])
        self.kinds = {**{d: "gen1" for d in gen1}, **{d: "gen2" for d in gen2},
                      **{d: "tasmota" for d in tasmota}}
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *a: self._ready.set()
        self.client.connect(settings.mqtt_host, settings.mqtt_port)
        self.client.loop_start()
        self.client.subscribe([(f, 1) for f in self.filters])
        assert self._ready.wait(10), "fake relays could not subscribe"

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        topic, payload = message.topic, message.payload
        self.received.append((topic, payload))
        rel = topic[len(self.root) + 1:]
        if rel.startswith("shellies/") and rel.endswith("/command"):
            name = rel.split("/")[1]
            word = payload.decode()
            if word in ("on", "off"):
                self.state[name] = word == "on"
                client.publish(topic.rsplit("/", 1)[0], word, qos=1)
        elif rel.startswith("cmnd/"):
            name = rel.split("/")[1]
            word = payload.decode().upper()
            if word in ("ON", "OFF", "TOGGLE"):
                self.state[name] = not self.state[name] if word == "TOGGLE" else word == "ON"
            shown = "ON" if self.state[name] else "OFF"
            client.publish(f"{self.root}/stat/{name}/RESULT", orjson.dumps({"POWER": shown}),
                           qos=1)
            client.publish(f"{self.root}/stat/{name}/POWER", shown, qos=1)
        elif rel.endswith("/rpc"):
            name = rel[:-4]
            request = orjson.loads(payload)
            reply: dict[str, Any] = {"id": request["id"], "src": name, "dst": request["src"]}
            if request["method"] == "Switch.Set":
                reply["result"] = {"was_on": self.state[name]}
                self.state[name] = bool(request["params"]["on"])
            elif request["method"] == "Switch.GetStatus":
                reply["result"] = {"id": request["params"]["id"], "source": "MQTT",
                                   "output": self.state[name], "apower": 0.0}
            else:
                reply["error"] = {"code": 404, "message": f"No handler for {request['method']}"}
            client.publish(f"{request['src']}/rpc", orjson.dumps(reply), qos=1)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
