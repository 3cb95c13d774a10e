// Drive the Vercel AI SDK (`ai` + `@ai-sdk/openai`) under the OpenTelemetry JS SDK and export the
// spans three ways at once, for oncall's importer tests (tests/test_node_exports.py):
//
//   node vercel_calls.mjs --base-url http://127.0.0.1:PORT/v1 --otlp-url http://127.0.0.1:PORT2/v1/traces \
//        --dump spans.json  > console.txt
//
// - ConsoleSpanExporter: Node's util.inspect object literals on stdout (what a developer copies
//   out of a terminal or a container log). Nothing else is printed to stdout.
// - OTLPTraceExporter (http/json) to a loopback capture server the test runs.
// - a JSON dump of each ReadableSpan (spanContext, HrTime times), as test harnesses write them.
//
// Inside one application root span `support_ticket` it makes: a plain generateText call, a
// generateText tool round trip (tool call, tool executed, final answer), a streamText call, and a
// generateText call the server fails with 429 (X-Test-Fail header, no retries). Every call carries
// the cohort keys as telemetry metadata. The questions have quotes and newlines so the console
// output has every string form Node prints (`'…'`, `"…"`, `\`…\``, `'…\n' +` continuations).
import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

import { trace } from '@opentelemetry/api';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { ConsoleSpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { NodeTracerProvider } from '@opentelemetry/sdk-trace-node';
import { createOpenAI } from '@ai-sdk/openai';
import { generateText, stepCountIs, streamText, tool } from 'ai';
import { z } from 'zod';

const { values: args } = parseArgs({
  options: {
    'base-url': { type: 'string' },
    'otlp-url': { type: 'string' },
    dump: { type: 'string' },
    calls: { type: 'string', default: 'plain,tool,stream,error' },
  },
});

export const SYSTEM = 'You are a terse support assistant.';
export const QUESTION = 'What is the capital of France?';
export const TOOL_QUESTION = "What's the weather in Paris?";
export const STREAM_QUESTION = 'Name three French cheeses, with the region each one comes from.\nOne per line, please.';
export const ERROR_QUESTION = 'This call is rate limited.';
export const LONG_PROMPT = 'Summarise this log: ' + 'lorem ipsum '.repeat(1000);

// ReadableSpan as JSON: what a test harness's in-memory exporter writes (the fields of the
// ReadableSpan interface; HrTime stays [seconds, nanoseconds]).
class JsonDumpExporter {
  constructor() { this.spans = []; }
  export(spans, done) {
    for (const s of spans) {
      this.spans.push({
        name: s.name, kind: s.kind, spanContext: s.spanContext(), parentSpanContext: s.parentSpanContext,
        startTime: s.startTime, endTime: s.endTime, status: s.status, attributes: s.attributes,
        events: s.events, links: s.links, resource: { attributes: s.resource.attributes },
        instrumentationScope: s.instrumentationScope,
      });
    }
    done({ code: 0 });
  }
  shutdown() { return Promise.resolve(); }
  forceFlush() { return Promise.resolve(); }
}

const dump = new JsonDumpExporter();
const processors = [new SimpleSpanProcessor(new ConsoleSpanExporter()), new SimpleSpanProcessor(dump)];
if (args['otlp-url']) processors.push(new SimpleSpanProcessor(new OTLPTraceExporter({ url: args['otlp-url'] })));
const provider = new NodeTracerProvider({
  resource: resourceFromAttributes({ 'service.name': 'support-bot', 'service.version': '2.4.1' }),
  spanProcessors: processors,
});
provider.register();
const tracer = trace.getTracer('support-bot');

const openai = createOpenAI({ baseURL: args['base-url'], apiKey: 'sk-test-not-a-real-key' });
// .chat(): the Chat Completions API (the default `openai(id)` is the Responses API, which the
// loopback server does not speak).
const model = openai.chat('gpt-4o-mini');

export const METADATA = {
  tenant: 'acme', userId: 'user-7', sessionId: 'sess-oncall-42', feature: 'support-bot', promptVersion: 'v13',
};
const telemetry = (functionId) => ({ isEnabled: true, functionId, metadata: METADATA });

const calls = new Set(args.calls.split(','));
await tracer.startActiveSpan('support_ticket', async (root) => {
  root.setAttribute('app.request_id', 'req-ticket-1');
  try {
    if (calls.has('plain')) {
      await generateText({ model, system: SYSTEM, prompt: QUESTION, maxRetries: 0,
                           experimental_telemetry: telemetry('answer') });
    }
    if (calls.has('tool')) {
      await generateText({
        model, prompt: TOOL_QUESTION, maxRetries: 0, stopWhen: stepCountIs(2),
        tools: {
          get_weather: tool({
            description: 'Current weather for a city',
            inputSchema: z.object({ city: z.string() }),
            execute: async ({ city }) => ({ city, temperature_c: 18, sky: 'clear' }),
          }),
        },
        experimental_telemetry: telemetry('weather'),
      });
    }
    if (calls.has('stream')) {
      const result = streamText({ model, prompt: STREAM_QUESTION, maxRetries: 0,
                                  experimental_telemetry: telemetry('cheeses') });
      for await (const _ of result.textStream) { /* consume */ }
    }
    if (calls.has('long')) {  // a prompt past util.inspect's 10,000-character string limit
      await generateText({ model, prompt: LONG_PROMPT, maxRetries: 0, experimental_telemetry: telemetry('answer') });
    }
    if (calls.has('error')) {
      try {
        await generateText({ model, prompt: ERROR_QUESTION, maxRetries: 0, headers: { 'X-Test-Fail': '429' },
                             experimental_telemetry: telemetry('answer') });
      } catch (err) {
        process.stderr.write(`expected failure: ${err.name}: ${err.statusCode}\n`);
      }
    }
  } finally {
    root.end();
  }
});
await provider.forceFlush();
await provider.shutdown();
if (args.dump) writeFileSync(args.dump, JSON.stringify(dump.spans, null, 2));
