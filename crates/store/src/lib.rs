//! takedown-store (being written).
