"""Low-level safetensors file handling shared by the codecs and aggregation.

Split out of `plantfed.formats.codecs` so the update codecs stay about encoding, while atomic writes, streaming
writes, live-buffer accounting and float64 reductions are reused by aggregation without duplication.
"""
