//! takedown-ingest (being written).
