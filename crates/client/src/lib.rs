//! meridian-client
