//! Trace oracles: properties every run must satisfy whatever the scenario (valid checksums, TCP sequence and window sanity, no frames to unowned MACs), checked on every frame of the trace.
