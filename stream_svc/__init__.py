"""Fan-out of market data, order updates and exchange events to subscribers."""
