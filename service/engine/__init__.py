"""The serving engine: runtime, state, batching, sessions, sequences, models, registry, metrics; no protobuf."""
