// The TypeScript example of the product README (seed), runnable against a real
// server. Only the connection settings differ from the README: they come from
// FAAS_API_KEY and FAAS_ENDPOINT when set.
//
//   FAAS_API_KEY=… FAAS_ENDPOINT=http://127.0.0.1:8080 node build/examples/seed.js
//
// Today the server has no snapshots yet, so `createSnapshot` rejects with a
// FaaSError (404, "no such endpoint"; 501 once the route exists before the
// feature) and the script ends there with exit status 1. When snapshots and
// branches land it runs to the end.
import { FaaSClient } from '@faas/sdk';

const client = new FaaSClient({
  apiKey: process.env.FAAS_API_KEY ?? 'your-api-key',
  endpoint: process.env.FAAS_ENDPOINT ?? 'http://localhost:8080'
});

// Ephemeral execution
const result = await client.execute({
  code: 'console.log("Hello World")',
  language: 'javascript',
  mode: 'ephemeral'
});
console.log('execute:', result.status, JSON.stringify(result.stdout));

// Create snapshot for branching
const snapshot = await client.createSnapshot(result.executionId);
console.log('snapshot:', snapshot.id);

// Branch from snapshot
const branch = await client.createBranch(snapshot.id, {
  code: 'console.log("Branch 1")'
});
console.log('branch:', JSON.stringify(branch));
