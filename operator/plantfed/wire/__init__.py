"""Wire protocol: the .proto-generated gRPC stubs (see `plantfed.wire.generate`)."""
