//! takedown-sinkhole (being written).
