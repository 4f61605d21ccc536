//! meridian-store
