"""Wire protocol: the .proto-generated gRPC stubs (see `plantfed.contract.wire.generate`)."""
