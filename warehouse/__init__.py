"""The data engineers' side of the warehouse: engines, shipped queries, exports, analyst access."""
