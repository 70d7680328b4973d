"""One call, protocol-agnostic above the wire: the request and its preparation (options and the
capability and context pre-flight), pooled clients, one HTTP exchange and its errors, the SSE
decoder, `wire/` (one module per protocol, leaves under the core), the retry policy, pacing and
rate limits, fallback routes, a whole call, results, history, token counting, the endpoint
doctor and the background event-loop thread. No IPython, no ipywidgets.
"""
