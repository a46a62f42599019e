"""seqserve: stateful serving of recurrent sequence models on onnxruntime.

The engine (this package, no protobuf): settings, errors, runtime, state pool, batching, sessions, models,
registry and metrics. `service/grpc/` puts the native and Triton gRPC APIs in front of it.
"""
