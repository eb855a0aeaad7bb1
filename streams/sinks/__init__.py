"""Side effects behind small async adapters: Alerta alerts and InfluxDB points.

Every sink keeps a bounded buffer that agents fill with a synchronous, O(1) ``enqueue``; a
background task drains it and retries with backoff, so a slow or stopped server never
stalls an agent. What does not fit is dropped and counted.
"""
