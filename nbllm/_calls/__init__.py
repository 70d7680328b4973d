"""One call, protocol-agnostic above the wire: the request and the pre-flight context check,
pooled clients, one HTTP exchange and its errors, the SSE decoder, `wire/` (one module per
protocol), the retry policy and rate limits, a whole call with fallbacks, results, history,
token counting, the endpoint doctor and the background event-loop thread. No IPython, no
ipywidgets.
"""
