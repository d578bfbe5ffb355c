// Captures the request bodies the OpenTelemetry JavaScript exporters really send, as
// fixtures for tests/ingest/test_otlp_js.py (README.md beside this file says how to run it).
//
// A loopback HTTP server stands in for Observatory and writes each body it receives, as
// received (still gzip-compressed when the exporter compressed it), with its headers in
// manifest.json. The spans and log records tell one order, #9001, as integration code would.

import { writeFileSync } from "node:fs";
import { createServer } from "node:http";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

import { context, trace, SpanStatusCode, SpanKind } from "@opentelemetry/api";
import { SeverityNumber } from "@opentelemetry/api-logs";
import { OTLPLogExporter as LogsHttp } from "@opentelemetry/exporter-logs-otlp-http";
import { OTLPLogExporter as LogsProto } from "@opentelemetry/exporter-logs-otlp-proto";
import { OTLPTraceExporter as TracesHttp } from "@opentelemetry/exporter-trace-otlp-http";
import { OTLPTraceExporter as TracesProto } from "@opentelemetry/exporter-trace-otlp-proto";
import { resourceFromAttributes } from "@opentelemetry/resources";
import { BatchLogRecordProcessor, LoggerProvider } from "@opentelemetry/sdk-logs";
import { BasicTracerProvider, BatchSpanProcessor } from "@opentelemetry/sdk-trace-base";

const OUT = process.argv[2] || dirname(fileURLToPath(import.meta.url));
const TOKEN = "obs_in_capture"; // any token: the capture server only records it
const T0 = Date.UTC(2024, 5, 10, 12, 0, 0); // 2024-06-10T12:00:00Z, business time
const ORDER = "#9001";
const manifest = [];
let label = "";

const server = createServer((req, res) => {
  const chunks = [];
  req.on("data", (c) => chunks.push(c));
  req.on("end", () => {
    const body = Buffer.concat(chunks);
    const n = manifest.filter((m) => m.label === label).length;
    const file = n ? `${label}-${n + 1}.bin` : `${label}.bin`; // one request a label, expected
    writeFileSync(join(OUT, file), body);
    manifest.push({
      label,
      file,
      path: req.url,
      content_type: req.headers["content-type"] || "",
      content_encoding: req.headers["content-encoding"] || "",
      user_agent: req.headers["user-agent"] || "",
      bytes: body.length,
    });
    const json = (req.headers["content-type"] || "").startsWith("application/json");
    res.writeHead(200, { "Content-Type": json ? "application/json" : "application/x-protobuf" });
    res.end(json ? "{}" : "");
  });
});
await new Promise((ok) => server.listen(0, "127.0.0.1", ok));
const base = `http://127.0.0.1:${server.address().port}`;
const headers = { Authorization: `Bearer ${TOKEN}` };

async function traces(name, Exporter, compression) {
  label = name;
  const exporter = new Exporter({ url: `${base}/v1/traces`, headers, compression });
  const provider = new BasicTracerProvider({
    resource: resourceFromAttributes({ "service.name": "shopify-bridge" }),
    spanProcessors: [new BatchSpanProcessor(exporter)], // one request for the whole batch
  });
  const tracer = provider.getTracer("capture");
  const accepted = tracer.startSpan(
    "orders/create",
    {
      kind: SpanKind.SERVER,
      startTime: new Date(T0),
      attributes: {
        "retail.system": "shopify",
        "retail.key.order_number": ORDER,
        "retail.key.shopify_order_id": "820982911949001",
        "retail.stage": "captured",
        "retail.channel": "web",
        "retail.order.amount": 129.5,
        "retail.order.currency": "USD",
      },
    },
  );
  const ctx = trace.setSpan(context.active(), accepted);
  const post = tracer.startSpan(
    "post sales order",
    {
      kind: SpanKind.CLIENT,
      startTime: new Date(T0 + 2000),
      attributes: {
        "retail.system": "middleware",
        "retail.key.order_number": ORDER,
        "retail.retry.attempt": 1,
        "customer.email": "jane@example.com",
      },
    },
    ctx,
  );
  post.recordException(new Error("ERP answered 503"), new Date(T0 + 2400));
  post.setStatus({ code: SpanStatusCode.ERROR, message: "ERP answered 503" });
  post.end(new Date(T0 + 2500));
  accepted.end(new Date(T0 + 3000));
  await provider.forceFlush();
  await provider.shutdown();
}

async function logs(name, Exporter, compression) {
  label = name;
  const exporter = new Exporter({ url: `${base}/v1/logs`, headers, compression });
  const provider = new LoggerProvider({
    resource: resourceFromAttributes({ "service.name": "erp-connector", "retail.system": "erp" }),
    processors: [new BatchLogRecordProcessor({ exporter })],
  });
  const logger = provider.getLogger("erp.posting");
  // a span context for the records, as an instrumented connector would have
  const spanContext = {
    traceId: "5b8efff798038103d269b633813fc60c",
    spanId: "eee19b7ec3c1b174",
    traceFlags: 1,
  };
  const ctx = trace.setSpanContext(context.active(), spanContext);
  logger.emit({
    timestamp: new Date(T0 + 4000),
    severityNumber: SeverityNumber.ERROR,
    severityText: "ERROR",
    body: `posting ${ORDER} failed: ERP answered 503 (customer jane@example.com)`,
    attributes: { "retail.key.order_number": ORDER, "retail.retry.attempt": 1 },
    context: ctx,
  });
  logger.emit({
    timestamp: new Date(T0 + 5000),
    severityNumber: SeverityNumber.INFO,
    severityText: "INFO",
    body: "polling the ERP queue",
    context: ctx,
  });
  logger.emit({
    timestamp: new Date(T0 + 9000),
    severityNumber: SeverityNumber.INFO,
    severityText: "INFO",
    eventName: "erp.order.posted",
    body: { message: "posted", sales_order: "SO-9001" },
    attributes: {
      "retail.key.order_number": ORDER,
      "retail.key.erp_sales_order": "SO-9001",
      "retail.stage": "posted",
    },
    context: ctx,
  });
  await provider.forceFlush();
  await provider.shutdown();
}

await traces("traces-proto", TracesProto, "none");
await traces("traces-proto-gzip", TracesProto, "gzip");
await traces("traces-json", TracesHttp, "none");
await traces("traces-json-gzip", TracesHttp, "gzip");
await logs("logs-proto", LogsProto, "none");
await logs("logs-proto-gzip", LogsProto, "gzip");
await logs("logs-json", LogsHttp, "none");
await logs("logs-json-gzip", LogsHttp, "gzip");
server.close();
writeFileSync(join(OUT, "manifest.json"), JSON.stringify(manifest, null, 2) + "\n");
console.log(`captured ${manifest.length} request bodies into ${OUT}`);
