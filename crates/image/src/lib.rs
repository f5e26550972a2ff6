//! takedown-image (being written).
