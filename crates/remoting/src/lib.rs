//! meridian-remoting
