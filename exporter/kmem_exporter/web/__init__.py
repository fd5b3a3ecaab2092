"""The HTTP side: the aiohttp server and its routes, client connections and their limits, shedding, and the web
config (TLS, basic authentication, headers, rate limit)."""
