"""An async streaming server: each response is an async generator of tokens, and the request
span joins the caller's trace through the ``traceparent`` header it sent.

    python examples/async_streaming_server.py [OUTPUT_DIR]
    python examples/async_streaming_server.py --show-trace     # in memory, and the parent span id too

It starts a small HTTP server on 127.0.0.1 (a free port), sends it one request with a
traceparent header, prints the streamed tokens and the trace id the server's request span
joined (the caller's), and where the telemetry went.
"""

from __future__ import annotations

import asyncio
import sys

import ferrum_otel

CALLER_TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{CALLER_TRACE_ID}-00f067aa0ba902b7-01"
JOINED: list[str] = []  # the trace id each request span joined


@ferrum_otel.instrument(
    model="tiny-llm",
    stream=True,
    context=lambda prompt, headers: headers,
    input_tokens=lambda prompt, headers: len(prompt.split()),
)
async def stream_tokens(prompt: str, headers: dict[str, str]):
    """The model: yields one token every couple of milliseconds after a short prefill."""
    req = ferrum_otel.current_request()
    if req is not None:
        JOINED.append(format(req.span.get_span_context().trace_id, "032x"))
    await asyncio.sleep(0.01)
    for word in ("Streaming", " tokens", " from", " an", " async", " generator", "."):
        await asyncio.sleep(0.002)
        yield word


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    request_line = (await reader.readline()).decode()
    headers = {}
    while line := (await reader.readline()).decode().strip():
        key, _, value = line.partition(":")
        headers[key.strip().lower()] = value.strip()
    prompt = request_line.split(" ")[1].lstrip("/").replace("%20", " ")
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n")
    async for token in stream_tokens(prompt, headers):
        data = token.encode()
        writer.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        await writer.drain()
    writer.write(b"0\r\n\r\n")
    await writer.drain()
    writer.close()


async def client(port: int) -> str:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET /say%20something HTTP/1.1\r\nHost: x\r\ntraceparent: {TRACEPARENT}\r\n\r\n".encode())
    await writer.drain()
    while (await reader.readline()).strip():
        pass  # status line and headers
    body = []
    while True:
        size = int((await reader.readline()).strip(), 16)
        if size == 0:
            break
        body.append((await reader.readexactly(size)).decode())
        await reader.readline()
        print("streamed:", repr(body[-1]))
    writer.close()
    return "".join(body)


async def main() -> None:
    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        text = await client(port)
    print("response:", text)
    if JOINED:
        print("server span joined trace", JOINED[-1], "(the caller's)" if JOINED[-1] == CALLER_TRACE_ID else "")


if __name__ == "__main__":
    from ferrum_otel.testing import capture

    output = sys.argv[1] if len(sys.argv) > 1 else None
    if output == "--show-trace":
        # Show the recorded trace in memory instead of writing files.
        with capture() as cap:
            asyncio.run(main())
            (span,) = cap.spans("text_completion tiny-llm")
            print(
                "server span joined trace",
                format(span.context.trace_id, "032x"),
                "as a child of",
                format(span.parent.span_id, "016x"),
            )
    else:
        telemetry = ferrum_otel.configure(service_name="streaming-example", output=output, console=False)
        asyncio.run(main())
        telemetry.shutdown()
        print("telemetry went to", "; ".join(telemetry.destinations))
