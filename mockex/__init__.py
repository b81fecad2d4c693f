"""Mockex: shared pieces of the mock stock exchange (settings, gRPC builder, clients, runner)."""
