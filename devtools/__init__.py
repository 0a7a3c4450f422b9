"""What only developers, tests and the demo need: the simulator, the local stack, the demo.

Kept out of the spine (``ioe/``), which is the domain and the contracts: these may import any
room of the house (connectors, streams, dashboards), the spine never imports them.
"""
