"""Real-time anomaly detection with an alarm lifecycle (issue 7).

One module per detector (each a small pure function over its own small state), a lifecycle
that turns conditions into alarms with hysteresis, and an engine that routes readings, ticks,
registry updates and hourly comparisons to them. ``agent`` binds the engine to the Faust worker.
"""
