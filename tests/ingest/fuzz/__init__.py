"""The fuzz corpus: every bounded field of every ingest path, bad and just inside its bound.

Each bad item travels beside a good one through the real endpoints: OTLP protobuf (built
with the OpenTelemetry protobuf classes) and OTLP JSON (``test_otlp``), CloudEvents made by
the SDK in structured, batch and binary mode (``test_cloudevents``), and signed Shopify
deliveries (``test_shopify``). The answer must be the right 4xx, or a per-item rejection
that names the field (OTLP ``partial_success``, the ``rejected`` list of a CloudEvents
batch); the good item must be stored and the bad one not, unless it is free text, which is
stored cut to its column with a marker. After every case each stored text column fits its
column and holds no NUL byte: SQLite stores whatever it is given, so only a check like this
one finds an over-long value there.

The suite runs it on SQLite, and on PostgreSQL with ``DATABASE_URL`` set
(docs/architecture.md, "Bounds at the edge").
"""
