"""Active control: commands to inverters, batteries, relays and EV chargers, and the rules that
issue them (the NodeRed role of the system this product replaces).

Modules, one concept each:

- ``commands``  who may ask what of which device (permission), within which bounds, until when
  (deadline), how often (manual commands per device per minute); a refused command is logged
  and stored, never sent
- ``rules``     rule files as data (YAML, ``file:line`` errors) and the pure evaluator
  ``evaluate(rules, live, memory, now_ms)`` with hysteresis, minimum on-time and renewal (a
  limit carries ``revert_s`` and is re-sent while the rule holds it, never after)
- ``live``      the live state the rules read, folded from ``ioe.live`` messages
- ``bus``       Kafka: send a command, wait for its result, and the executor loop the
  connectors use (deadline checked before anything is written: never executed late)
- ``store``     ClickHouse: the command log (who asked, why, what was written, what was read
  back) and its query
- ``run``       ``ioe control run``: live values in, rules evaluated, commands out, results stored
- ``command``   the CLI: ``send``, ``rules validate``, ``log``, ``run``, ``ocpp``
- ``ocpp/``     the OCPP 1.6J central system EV chargers connect to: their meter values
  become readings, ``ev_current_a``/``ev_power_w`` commands become charging profiles

Executors live with their connectors: ``connectors/modbus_edge/commands.py`` (register writes
through the map's ``writable`` section) and ``connectors/mqtt_bridge/commands.py`` (Shelly
Gen1/Gen2/Gen3 and Tasmota relays); chargers have no connector of their own (they dial in),
so their executor is the central system, ``control/ocpp/central.py``.
"""
