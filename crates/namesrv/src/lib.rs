//! meridian-namesrv
