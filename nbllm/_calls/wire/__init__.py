"""One module per wire protocol: each builds the request body and turns the server's reply
into text, reasoning, tool calls, usage and the finish reason in a `ReplyState`; `protocols`
picks one by the provider's ``api``."""
