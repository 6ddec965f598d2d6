"""Sessions, a checkpoint and three branches, runnable against a real server.

A session keeps one live interpreter, so state set up once (here a small
"model") is still there in the next execution. ``checkpoint_after`` snapshots
the session; three branches restored from that snapshot each start from the
same state and try something different, without touching each other.

    FAAS_API_KEY=... FAAS_ENDPOINT=http://127.0.0.1:8080 python3 examples/branching.py
"""

import os

from faas_sdk import FaaSClient

client = FaaSClient(
    api_key=os.environ.get("FAAS_API_KEY", "your-api-key"),
    endpoint=os.environ.get("FAAS_ENDPOINT", "http://localhost:8080"),
)

# 1. A session: the interpreter and its files live between executions.
setup = client.execute(
    code="weights = [1, 2, 3]\nopen('/workspace/notes.txt', 'w').write('base\\n')\nprint('setup done')",
    language="python",
    mode="checkpointed",
)
session_id = setup.session_id
print("session:", setup.status, setup.stdout.strip())

# 2. Continue in the same session, then checkpoint it.
step = client.execute(code="weights.append(4)\nprint(sum(weights))", session_id=session_id, checkpoint_after=True)
snapshot_id = step.snapshot_id
print("checkpoint:", step.stdout.strip(), "snapshot" if snapshot_id else step.snapshot_error)

# 3. Three branches of the snapshot, restored at once; each sees its state.
branches = client.branches.create(snapshot_id, code="print(len(weights), open('/workspace/notes.txt').read().strip())",
                                  count=3)
for factor, branch in zip([2, 3, 10], branches):
    # Each branch is a session of its own: continue it with its branch_id.
    r = client.execute(code=f"weights = [w * {factor} for w in weights]\nprint(sum(weights))",
                       session_id=branch.branch_id)
    print("branch:", branch.stdout.strip(), "->", r.stdout.strip())

# 4. The original session did not see the branches' changes.
print("session again:", client.execute(code="print(sum(weights))", session_id=session_id).stdout.strip())

# Clean up: end the sessions (their sandboxes go) and delete the snapshot.
for branch in branches:
    client.sessions.delete(branch.branch_id)
client.sessions.delete(session_id)
client.snapshots.delete(snapshot_id)
