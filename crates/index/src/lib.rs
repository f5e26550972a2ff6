//! takedown-index (being written).
