"""Everything protobuf: generated code, conversion, servicers, the error table and server assembly."""
