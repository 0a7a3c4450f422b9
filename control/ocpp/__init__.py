"""EV chargers over OCPP 1.6J: the product is the Central System, chargers connect to it.

Why the product and not the charger is the server: OCPP chargers dial out (they sit behind a
member's home router), so the only way to reach one is to keep its websocket open and talk
back on it. Modules, one concept each:

- ``limits``   a charger's bounds (registry ``protocol`` or the defaults table), the charging
  profile a limit becomes (with its duration: the charger drops it by itself) and the read-back
  from the composite schedule — pure, no I/O
- ``meter``    ``MeterValues`` (and transaction start/stop registers) → contract readings, with
  the measurand/unit table — pure
- ``central``  the websocket server, one session per charge point, readings to ``ioe.readings``
  and the executor of ``ioe.commands.<community>`` (a command waits for its charger until its deadline,
  then expires; it is never executed late)

Registry device of a charger::

    {id: ev-1, role: consumption, member: m1,
     protocol: {type: ocpp, charge_point: CP-1, connector: 1, min_current_a: 6,
                max_current_a: 16, phases: 1, voltage_v: 230, controllable: true}}
"""
