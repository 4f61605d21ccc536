//! meridian-protocol
