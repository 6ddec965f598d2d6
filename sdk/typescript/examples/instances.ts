// The instances example of README.md, runnable against a real server: create →
// exec (state persists) → expose a web server → pause/resume → delete.
//
//   FAAS_API_KEY=… FAAS_ENDPOINT=http://127.0.0.1:8080 node build/examples/instances.js
import { FaaSClient } from '@faas/sdk';

const apiKey = process.env.FAAS_API_KEY ?? 'your-api-key';
const client = new FaaSClient({ apiKey, endpoint: process.env.FAAS_ENDPOINT ?? 'http://localhost:8080' });

const inst = await client.instances.create({ name: 'dev', language: 'python', resources: { memoryMb: 512 } });
console.log('created:', inst.id, inst.state);

await client.instances.exec(inst.id, { code: 'counter = 41' });
const r = await client.instances.exec(inst.id, { code: 'counter += 1; print(counter)' });
console.log('exec:', r.stdout.trim());

// A web server started in the background, served through the faas server.
await client.instances.upload(inst.id, '/workspace/site/index.html', '<h1>hi</h1>');
await client.instances.exec(inst.id, {
  command: 'nohup python3 -m http.server 8000 --bind 127.0.0.1 >/tmp/http.log 2>&1 &',
  workingDir: '/workspace/site',
});
const web = await client.instances.expose(inst.id, 8000);

/** GETs the exposed URL with the key until it answers 200 (the server may need a moment to listen). */
async function page(): Promise<string> {
  for (let i = 0; ; i++) {
    const resp = await fetch(web.url, { headers: { Authorization: `Bearer ${apiKey}` } });
    const body = await resp.text();
    if (resp.status === 200 || i >= 40) return `${resp.status} ${body.trim()}`;
    await new Promise((done) => setTimeout(done, 250));
  }
}
console.log('web:', web.url, await page());

await client.instances.pause(inst.id);
try {
  await client.instances.exec(inst.id, 'true');
} catch (e) {
  console.log('paused exec:', (e as { status?: number }).status);
}
await client.instances.resume(inst.id);
const again = await client.instances.exec(inst.id, { code: 'print(counter)' });
console.log('resumed:', again.stdout.trim(), await page());

await client.instances.delete(inst.id);
console.log('deleted');
