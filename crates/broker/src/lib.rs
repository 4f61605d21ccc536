//! meridian-broker
