// The TypeScript example of the product README (seed), runnable against a real
// server. Two things differ from the README: the connection settings come from
// FAAS_API_KEY and FAAS_ENDPOINT when set, and the first execution's mode is
// 'checkpointed' instead of 'ephemeral'. Only an execution that ran in a live
// session (mode checkpointed or branched) can be snapshotted; for an ephemeral
// one `createSnapshot` rejects with a FaaSError 404 saying so.
//
//   FAAS_API_KEY=… FAAS_ENDPOINT=http://127.0.0.1:8080 node build/examples/seed.js
import { FaaSClient } from '@faas/sdk';

const client = new FaaSClient({
  apiKey: process.env.FAAS_API_KEY ?? 'your-api-key',
  endpoint: process.env.FAAS_ENDPOINT ?? 'http://localhost:8080'
});

// Checkpointed execution (a live session that can be snapshotted)
const result = await client.execute({
  code: 'console.log("Hello World")',
  language: 'javascript',
  mode: 'checkpointed'
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
