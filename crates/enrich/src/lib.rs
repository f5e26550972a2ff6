//! takedown-enrich (being written).
