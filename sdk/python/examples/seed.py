"""The Python example of the product README (seed), runnable against a real server.

Only the connection settings differ from the README (they come from
FAAS_API_KEY and FAAS_ENDPOINT when set), and the README's top-level
``async for`` is inside an ``async def``, as Python requires.

    FAAS_API_KEY=... FAAS_ENDPOINT=http://127.0.0.1:8080 python3 examples/seed.py

``client.stream`` follows an execution over Server-Sent Events; here the
execution has already finished, so its output is replayed from the start.
"""

import asyncio
import os

from faas_sdk import FaaSClient

client = FaaSClient(
    api_key=os.environ.get("FAAS_API_KEY", "your-api-key"),
    endpoint=os.environ.get("FAAS_ENDPOINT", "http://localhost:8080"),
)

# Execute with caching
result = client.execute(
    code="print('Hello World')",
    language="python",
    mode="cached",
)
print("execute:", result.status, repr(result.stdout))
execution_id = result.execution_id


async def main() -> None:
    # Stream output in real-time
    async for output in client.stream(execution_id):
        print(output.data)


asyncio.run(main())
