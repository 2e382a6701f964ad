"""SSE fan-out: N concurrent subscribers (100 and 1,000) on one uvicorn process watch a job that streams 100
chunks/s (each chunk is a line with its index and the time it was made, in the worker). Per tick and subscriber:
delivery latency (made -> parsed by the client), ticks lost or repeated, and the server's memory.
Baseline, same run: /raw, a bare sse-starlette fan-out of the same ticks made in the server (no worker, no hub,
no coalescing). Clients are raw asyncio protocols in this process (HTTP/1.0, so the body is not chunk-framed), each parsing whole
reads into events; an event's JSON is decoded once for all clients (they all get the same bytes).
Prints markdown."""
import asyncio, json, os, subprocess, sys, tempfile, time
from pathlib import Path

import httpx

COUNT, INTERVAL = 300, 0.01   # 3 s at 100 chunks/s
HERE = Path(__file__).parent


def free_port():
    import socket
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def pct(xs, p): return sorted(xs)[min(len(xs) - 1, int(len(xs) * p))] if xs else float('nan')


_parsed: dict = {}

def ticks_of(data:bytes) -> list:
    "[(index, time made)] of a chunk event's lines; parsed once per event, not once per client (every client gets the same bytes)."
    got = _parsed.get(data)
    if got is None:
        if len(_parsed) > 64: _parsed.clear()
        got = _parsed[data] = [(int(i), float(t)) for i, t in (line.split() for line in json.loads(data)['data']['chunk'].splitlines())]
    return got


class Client(asyncio.Protocol):
    "One SSE connection (an asyncio protocol: parsing in `data_received`, no stream reader or task per read): the ticks it got and when."
    def __init__(self):
        self.got, self.lat, self.ready, self.done = {}, [], asyncio.Event(), asyncio.Event()
        self.buf, self.in_body, self.transport = b'', False, None

    async def run(self, port, path):
        loop = asyncio.get_running_loop()
        self.closed = loop.create_future()
        self.transport, _ = await loop.create_connection(lambda: self, '127.0.0.1', port)
        self.transport.write(f"GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n".encode())
        try: await asyncio.wait([asyncio.ensure_future(self.done.wait()), self.closed], return_when=asyncio.FIRST_COMPLETED)
        finally: self.transport.close()

    def data_received(self, chunk):
        buf = self.buf + chunk
        if not self.in_body:  # the response headers first
            head, sep, buf = buf.partition(b'\r\n\r\n')
            if not sep:
                self.buf = head
                return
            self.in_body = True
        # whole reads, split into events: a thousand clients in one process must not be what is measured
        *events, self.buf = buf.split(b'\r\n\r\n')
        for ev in events:
            event, data = None, []
            for line in ev.split(b'\r\n'):
                if line.startswith(b'event:'): event = line[6:].strip()
                elif line.startswith(b'data:'): data.append(line[5:].strip())
            if event: self.on_event(event, b'\n'.join(data))

    def connection_lost(self, exc):
        if not self.closed.done(): self.closed.set_result(None)

    def on_event(self, event, data):
        if event == b'snapshot': self.ready.set()
        elif event == b'chunk':
            now = time.time()
            for i, t in ticks_of(data):
                self.got[i] = self.got.get(i, 0) + 1
                self.lat.append(now - t)
            if len(self.got) == COUNT: self.done.set()
        elif event in (b'completed', b'failed', b'cancelled'): self.done.set()


async def measure(port, n, kind):
    "n clients on /raw (kind='raw') or on the mounted JSON event stream (kind='job')."
    async with httpx.AsyncClient(base_url=f'http://127.0.0.1:{port}', timeout=60) as c:
        rss0 = (await c.get('/stats')).json()['rss_mb']
        clients = [Client() for _ in range(n)]
        path = '/raw' if kind == 'raw' else '/jobs/api/events'
        tasks = [asyncio.create_task(cl.run(port, path)) for cl in clients]
        await asyncio.wait_for(asyncio.gather(*[cl.ready.wait() for cl in clients]), 120)
        rss_idle = (await c.get('/stats')).json()['rss_mb']
        if kind == 'raw': await c.post('/raw/start', params={'count': COUNT, 'interval': INTERVAL})
        else: await c.post('/jobs/api/jobs', json={'plugin': 'ticks', 'params': {'count': COUNT, 'interval': INTERVAL}})
        peak = rss_idle
        end = time.monotonic() + COUNT * INTERVAL + 60
        while not all(cl.done.is_set() for cl in clients) and time.monotonic() < end:
            peak = max(peak, (await c.get('/stats')).json()['rss_mb'])
            await asyncio.sleep(0.25)
        for cl in clients: cl.done.set()
        for t in tasks: t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        lat = [x for cl in clients for x in cl.lat]
        lost = sum(COUNT - len(cl.got) for cl in clients)
        repeated = sum(v - 1 for cl in clients for v in cl.got.values())
        return {'p50': pct(lat, 0.5) * 1000, 'p99': pct(lat, 0.99) * 1000, 'lost': lost, 'repeated': repeated,
                'rss0': rss0, 'rss_idle': rss_idle, 'peak': peak, 'per_conn_kb': (rss_idle - rss0) * 1024 / n}


class Server:
    "bench/sse_server.py under uvicorn on a free port; a fresh one per measurement, so memory figures do not mix."
    async def __aenter__(self):
        self.port = free_port()
        self.log = tempfile.TemporaryFile()
        self.p = subprocess.Popen([sys.executable, '-m', 'uvicorn', 'sse_server:app', '--app-dir', str(HERE), '--host', '127.0.0.1',
                                   '--port', str(self.port), '--log-level', 'warning', '--timeout-graceful-shutdown', '3',
                                   '--backlog', '4096'], stdout=self.log, stderr=subprocess.STDOUT)
        async with httpx.AsyncClient(timeout=2) as c:
            for _ in range(300):
                try:
                    (await c.get(f'http://127.0.0.1:{self.port}/jobs/api/health')).raise_for_status()
                    return self
                except httpx.HTTPError: await asyncio.sleep(0.1)
        raise RuntimeError("the bench server did not start")

    async def __aexit__(self, *exc):
        self.p.terminate()
        try: self.p.wait(15)
        except subprocess.TimeoutExpired: self.p.kill()
        if self.p.returncode not in (0, -15):
            self.log.seek(0)
            print(self.log.read().decode(errors='replace')[-2000:], file=sys.stderr)


async def main():
    print(f"{COUNT} chunks at {1 / INTERVAL:.0f}/s; one uvicorn process; {os.cpu_count()} CPUs shared by server, worker and clients\n")
    print("| subscribers | stream | p50 ms | p99 ms | ticks lost | repeated | server RSS idle → peak MB | KB per connection |")
    print("|---|---|---|---|---|---|---|---|")
    for n in (100, 1000):
        for kind in ('raw', 'job'):
            async with Server() as server: r = await measure(server.port, n, kind)
            name = 'baseline: bare sse-starlette fan-out' if kind == 'raw' else 'cjm_workers job stream (hub, 50 ms coalescing)'
            print(f"| {n} | {name} | {r['p50']:.1f} | {r['p99']:.1f} | {r['lost']} | {r['repeated']} | "
                  f"{r['rss_idle']:.0f} → {r['peak']:.0f} | {r['per_conn_kb']:.0f} |", flush=True)


if __name__ == '__main__': asyncio.run(main())
