//! Next-hop routing (being written).
