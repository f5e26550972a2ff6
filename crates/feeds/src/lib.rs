//! takedown-feeds (being written).
