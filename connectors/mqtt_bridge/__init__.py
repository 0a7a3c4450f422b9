"""MQTT bridge: energy meters publishing on MQTT → normalised readings on Kafka, nothing lost.

* ``decoders/`` — one module per device family (Shelly Gen1/Gen2, Tasmota, emonhub,
  Zigbee2MQTT, configurable JSON mapping), registered in a table; pure functions.
* ``processor.py`` — one message → Kafka records (readings, dead letters) or an explicit
  "ignored" reason; registry lookup of the community.
* ``bridge.py`` — paho-mqtt (QoS 1, persistent session, batched acks after Kafka) +
  kafka-python (batching producer).
* the registry is followed with :class:`ioe.registry_follower.RegistryFollower`.
* ``command.py`` — ``ioe mqtt-bridge [run|decode]``.
"""
