"""Modbus edge agent (``ioe modbus-edge``): inverters and meters polled through register maps
kept as data, with store-and-forward to Kafka so a plant can stay offline for days.

Modules, one concept each:

- ``maps``       register maps (YAML under ``maps/``), point types, decoding, units, sentinels
- ``planner``    grouping points into contiguous requests (≤ 125 registers, no undefined gaps)
- ``sunspec``    SunSpec discovery (``SunS`` at 40000 / 0 / 50000, model chain walk)
- ``device``     device settings (quirks), links (one connection, serialised), one poll
- ``store``      the durable SQLite (WAL) outbox with its disk budget
- ``forwarder``  outbox -> Kafka, deleted only after acknowledgement, in order
- ``agent``      edge config, one thread per device, registry routing, Prometheus metrics
- ``ini_import`` the old eco_modbus_tcp INI configuration, through lookup tables
- ``simserver``  a real pymodbus server with register images (tests, bench, demos)
- ``command``    the CLI (``run``, ``read``, ``import-ini``)

See ``edge.example.yaml`` for the configuration file.
"""
