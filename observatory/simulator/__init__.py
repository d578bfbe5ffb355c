"""The retail traffic simulator behind ``manage.py simulate``.

It drives realistic traffic of a fictional retailer (Northwind Outfitters: a Shopify
store, five shops with POS tills, a marketplace storefront, a NetSuite-style ERP, a
warehouse management system and three carriers) through Observatory's real ingest
endpoints, and talks to Observatory over HTTP only: nothing here imports the server's
apps.

The pieces, from pure to impure:

``catalog``    the retailer: products, stores, warehouses, carriers (constants)
``timing``     business-hours curves, lognormal delays, the sim -> wall time map
``scenarios``  what each ``--scenario`` injects and what Observatory should show
``entities``   the model's records (orders, shipments, refunds, the ``Step`` it hands
               out, the ``Plan`` it runs) and its volumes and rates
``model``      the discrete-event simulation: ``Simulation`` and its arrivals, with an
               injected seed and start time; no I/O, so it is unit-tested alone. It is
               composed of the queue and one module per flow:
``engine``       the two heaps, handing steps out, the span/event/webhook builders
``erp``          the ERP connector's posting, with failures, backoff and retries
``orders``       web and marketplace orders, the middleware consumer, the chaos faults
``fulfilment``   warehouse, carriers, the Shopify fulfillment sync, billing
``returns``      returns of delivered web orders
``pos``          POS sales and their 15-minute batch postings
``inventory``    stock moves and their publication to Shopify and the tills
``telemetry``  when each hop reaches Observatory: export batching, relayed and late
               callbacks, Shopify retries, a store's POS offline (business times stay)
``truth``      the ground truth of a run (``--truth FILE``): each transaction's keys,
               business stages, deliveries and the deadlines it missed (``slas``)
``payloads``   Shopify webhook bodies built from captured Shopify samples
``transport``  the senders, one module each: ``spans`` (OpenTelemetry SDK spans over
               OTLP/HTTP), ``webhooks`` (signed Shopify webhooks), ``events``
               (CloudEvents through ``tracing.instrument.EventEmitter``), and what they
               share (``shared``: their tallies)
``runner``     plays the model's steps through the senders in (compressed) real time,
               with a progress bar, Ctrl-C handling and the closing summary
"""
