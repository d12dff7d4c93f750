"""The event stream: NATS JetStream as the distributed runtime's event log (issue 17, first phase).

A building block today: nothing in the API or the engine uses it yet. `config` holds the settings
(servers, stream, partitions, durability) and a partition's subject; `client` the async EventStream
(connect, ensure_stream, publish awaiting JetStream's acknowledgement, read after a position);
`errors` the layer's error classes. docs/event-stream.md says what each setting risks.
"""
