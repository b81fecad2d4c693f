"""Order entry: authentication, validation and the gRPC front door to the engine."""
