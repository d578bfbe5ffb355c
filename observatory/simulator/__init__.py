"""The retail traffic simulator behind ``manage.py simulate`` (CONTRACT section 7).

It drives realistic traffic of a fictional retailer (Northwind Outfitters: a Shopify
store, five shops with POS tills, a marketplace storefront, a NetSuite-style ERP, a
warehouse management system and three carriers) through Observatory's real ingest
endpoints, and talks to Observatory over HTTP only: nothing here imports the server's
apps.

The pieces, from pure to impure:

``catalog``    the retailer: products, stores, warehouses, carriers (constants)
``timing``     business-hours curves, lognormal delays, the sim -> wall time map
``scenarios``  what each ``--scenario`` injects and what Observatory should show
``model``      the discrete-event simulation: orders, their hops and their delays, with
               an injected seed and start time; no I/O, so it is unit-tested alone
``telemetry``  when each hop reaches Observatory: export batching, relayed and late
               callbacks, Shopify retries, a store's POS offline (business times stay)
``truth``      the ground truth of a run (``--truth FILE``): each transaction's keys,
               business stages, deliveries and the deadlines it missed (``slas``)
``payloads``   Shopify webhook bodies built from captured Shopify samples
``transport``  the senders: OpenTelemetry SDK spans over OTLP/HTTP, signed Shopify
               webhooks, CloudEvents through ``tracing.instrument.EventEmitter``
``runner``     plays the model's steps through the senders in (compressed) real time,
               with a progress bar, Ctrl-C handling and the closing summary
"""
