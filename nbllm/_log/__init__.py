"""A record of every conversation: the opt-in SQLite log (`writer`, `database`), export and
import (`export`), and OpenTelemetry traces (`traces`). They follow the call history, so every
entry point's calls are recorded without any entry point knowing."""
