//! takedown-bank (being written).
