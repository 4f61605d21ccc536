//! Typed request and response headers.
//!
//! A RocketMQ header is a Java class whose fields travel as the command's
//! ext fields, one string per field, under the Java field name. Here each
//! header is a plain struct with Rust names for the same fields and two
//! functions:
//!
//! - `parse(cmd)` reads the ext fields. A field Java marks `@CFNotNull` is
//!   required (`MissingHeader` when absent); every other field is an
//!   `Option`, or has Java's default when Java's field is a primitive with
//!   one. Values are read as leniently as [`RemotingCommand`]'s accessors
//!   read them.
//! - `write(&self, cmd)` sets the ext fields exactly as the Java client
//!   does: every field that has a value, under its Java name.
//!
//! One file per family of requests: [`send`], [`pull`], [`offset`],
//! [`consumer`], [`query`], [`transaction`], [`namesrv`], [`admin`],
//! [`relay`].

use crate::command::RemotingCommand;
use crate::error::ProtocolError;

pub mod admin;
pub mod consumer;
pub mod namesrv;
pub mod offset;
pub mod pull;
pub mod query;
pub mod relay;
pub mod send;
pub mod transaction;

/// A type that a header field can have, and how it is read from and written
/// to an ext field.
pub(crate) trait FieldValue: Sized {
    /// Reads the field `key`; absent is an error unless `Self` is an Option.
    fn read(cmd: &RemotingCommand, key: &'static str) -> Result<Self, ProtocolError>;
    /// Writes the field `key`; `None` writes nothing.
    fn write(&self, cmd: &mut RemotingCommand, key: &str);
}

/// A field type that can also be optional.
pub(crate) trait OptionalValue: Sized + std::fmt::Display {
    fn read_opt(cmd: &RemotingCommand, key: &'static str) -> Result<Option<Self>, ProtocolError>;
}

impl OptionalValue for String {
    fn read_opt(cmd: &RemotingCommand, key: &'static str) -> Result<Option<Self>, ProtocolError> {
        Ok(cmd.opt_str(key).map(str::to_string))
    }
}

impl OptionalValue for i32 {
    fn read_opt(cmd: &RemotingCommand, key: &'static str) -> Result<Option<Self>, ProtocolError> {
        cmd.opt_i32(key)
    }
}

impl OptionalValue for i64 {
    fn read_opt(cmd: &RemotingCommand, key: &'static str) -> Result<Option<Self>, ProtocolError> {
        cmd.opt_i64(key)
    }
}

impl OptionalValue for bool {
    fn read_opt(cmd: &RemotingCommand, key: &'static str) -> Result<Option<Self>, ProtocolError> {
        cmd.opt_bool(key)
    }
}

impl<T: OptionalValue> FieldValue for T {
    fn read(cmd: &RemotingCommand, key: &'static str) -> Result<Self, ProtocolError> {
        T::read_opt(cmd, key)?.ok_or(ProtocolError::MissingHeader(key))
    }
    fn write(&self, cmd: &mut RemotingCommand, key: &str) {
        cmd.set_ext(key, self);
    }
}

impl<T: OptionalValue> FieldValue for Option<T> {
    fn read(cmd: &RemotingCommand, key: &'static str) -> Result<Self, ProtocolError> {
        T::read_opt(cmd, key)
    }
    fn write(&self, cmd: &mut RemotingCommand, key: &str) {
        if let Some(v) = self {
            cmd.set_ext(key, v);
        }
    }
}

/// Declares a header struct with its `parse` and `write`.
///
/// Each field is `name: Type = "javaName"`; a non-Option field is required.
/// `name: Type = "javaName" or default` makes a field that may be absent on
/// input (Java primitives with a default) but is always written.
macro_rules! header {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            $(
                $(#[$fmeta:meta])*
                $field:ident : $ty:ty = $key:literal $(or $default:expr)?
            ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Debug, Default, PartialEq, Eq)]
        pub struct $name {
            $( $(#[$fmeta])* pub $field: $ty, )*
        }

        impl $name {
            /// Reads this header from `cmd`'s ext fields.
            #[allow(unused_variables)]
            pub fn parse(cmd: &$crate::RemotingCommand) -> Result<Self, $crate::ProtocolError> {
                Ok($name {
                    $( $field: header!(@read cmd, $ty, $key $(, $default)?), )*
                })
            }

            /// Writes this header into `cmd`'s ext fields, as the Java client does.
            #[allow(unused_variables)]
            pub fn write(&self, cmd: &mut $crate::RemotingCommand) {
                $( $crate::header::FieldValue::write(&self.$field, cmd, $key); )*
            }
        }
    };
    (@read $cmd:ident, $ty:ty, $key:literal) => {
        <$ty as $crate::header::FieldValue>::read($cmd, $key)?
    };
    (@read $cmd:ident, $ty:ty, $key:literal, $default:expr) => {
        <Option<$ty> as $crate::header::FieldValue>::read($cmd, $key)?.unwrap_or($default)
    };
}
pub(crate) use header;

#[cfg(test)]
mod tests {
    use super::*;

    header! {
        /// A header exercising every field form.
        pub struct Example {
            name: String = "name",
            count: i32 = "count",
            big: i64 = "big",
            flag: Option<bool> = "flag",
            note: Option<String> = "note",
            mode: bool = "mode" or false,
            limit: i32 = "limit" or -1,
        }
    }

    #[test]
    fn parse_and_write_roundtrip() {
        let h = Example {
            name: "n".into(),
            count: 3,
            big: 1 << 40,
            flag: Some(true),
            note: None,
            mode: true,
            limit: 5,
        };
        let mut cmd = RemotingCommand::request(1);
        h.write(&mut cmd);
        assert_eq!(cmd.ext_fields.len(), 6);
        assert_eq!(cmd.ext("note"), None);
        assert_eq!(cmd.ext("big"), Some("1099511627776"));
        assert_eq!(Example::parse(&cmd).unwrap(), h);
    }

    #[test]
    fn required_fields_and_defaults() {
        let cmd = RemotingCommand::request(1)
            .with_ext("name", "n")
            .with_ext("count", "1")
            .with_ext("big", "2");
        let h = Example::parse(&cmd).unwrap();
        assert_eq!((h.mode, h.limit, h.flag), (false, -1, None));
        let cmd = RemotingCommand::request(1)
            .with_ext("name", "n")
            .with_ext("big", "2");
        assert_eq!(
            Example::parse(&cmd).unwrap_err(),
            ProtocolError::MissingHeader("count")
        );
        let cmd = cmd.with_ext("count", "many");
        assert!(matches!(
            Example::parse(&cmd),
            Err(ProtocolError::InvalidHeader { .. })
        ));
    }
}
