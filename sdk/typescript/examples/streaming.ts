// The "WebSocket Streaming" example of the product README (seed), runnable
// against a real server. The SDK follows the output over Server-Sent Events
// (GET /api/v1/executions/{id}/events), which needs no WebSocket client; the
// events are the README's: 'output', 'error', 'complete'.
//
//   FAAS_API_KEY=… FAAS_ENDPOINT=http://127.0.0.1:8080 node build/examples/streaming.js
import { FaaSClient } from '@faas/sdk';

const client = new FaaSClient({
  apiKey: process.env.FAAS_API_KEY ?? 'your-api-key',
  endpoint: process.env.FAAS_ENDPOINT ?? 'http://localhost:8080'
});

// An execution to follow (attaching replays its output from the start, then
// follows it live; it works while it runs and for 10 minutes after).
const { executionId } = await client.execute({
  code: 'for i in range(3): print("line", i)',
  language: 'python'
});

const stream = client.stream(executionId);
stream.on('output', (data) => console.log(data));
stream.on('error', (error) => console.error(error));
stream.on('complete', (exitCode) => console.log('Done:', exitCode));
