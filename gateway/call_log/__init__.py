"""The tool-call log's data-plane half: what each `tools/call` records (recorder.py) and the
bounded buffer a background task writes to the store in batches (buffer.py, writer.py)."""
