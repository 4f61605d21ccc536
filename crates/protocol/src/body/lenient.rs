//! Forgiving serde readers for body fields, and the enum macro.
//!
//! Java's fastjson turns "12" into 12, null into 0 or an empty collection,
//! and an enum's ordinal into the enum; clients in other languages rely on
//! that. These readers do the same, so a body that a Java broker accepts is
//! accepted here too.

use serde::de::Error as _;
use serde::{Deserialize, Deserializer};
use serde_json::Value;

use crate::command::parse_bool;

/// A string; null becomes "", numbers and booleans their text.
pub fn string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::Null => String::new(),
        Value::String(s) => s,
        other => other.to_string(),
    })
}

/// An integer given as a number or a numeric string; null becomes 0.
pub fn i64<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    let v = Value::deserialize(d)?;
    int_of(&v).ok_or_else(|| D::Error::custom(format!("expected an integer, got {}", short(&v))))
}

/// Like [`i64()`], for 32-bit fields.
pub fn i32<'de, D: Deserializer<'de>>(d: D) -> Result<i32, D::Error> {
    let v = Value::deserialize(d)?;
    int_of(&v)
        .and_then(|n| i32::try_from(n).ok())
        .ok_or_else(|| D::Error::custom(format!("expected a 32-bit integer, got {}", short(&v))))
}

fn int_of(v: &Value) -> Option<i64> {
    match v {
        Value::Null => Some(0),
        Value::Number(n) => n.as_i64().or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e18)
                .map(|f| f as i64)
        }),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// A floating-point number given as a number or a numeric string; null
/// becomes 0.
pub fn f64<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    let v = Value::deserialize(d)?;
    match &v {
        Value::Null => Some(0.0),
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
    .ok_or_else(|| D::Error::custom(format!("expected a number, got {}", short(&v))))
}

/// A boolean given as true/false, "true"/"false" in any case, 1/0 or "1"/"0";
/// null becomes false.
pub fn bool<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    let v = Value::deserialize(d)?;
    match &v {
        Value::Null => Some(false),
        Value::Bool(b) => Some(*b),
        Value::Number(n) => match n.as_i64() {
            Some(0) => Some(false),
            Some(1) => Some(true),
            _ => None,
        },
        Value::String(s) => parse_bool(s.trim()),
        _ => None,
    }
    .ok_or_else(|| D::Error::custom(format!("expected a boolean, got {}", short(&v))))
}

/// Any type with a default (collections above all); null becomes the default.
pub fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// A `LanguageCode`, given as its name or its byte; null becomes "JAVA".
pub fn language<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::Null => crate::language::JAVA.to_string(),
        Value::String(s) => s,
        Value::Number(n) => match n.as_u64().and_then(|n| u8::try_from(n).ok()) {
            Some(code) => crate::language::name_of(code).to_string(),
            None => crate::language::OTHER.to_string(),
        },
        other => other.to_string(),
    })
}

/// A value for an error message, shortened.
pub(crate) fn short(v: &Value) -> String {
    crate::error::truncate(&v.to_string(), 64)
}

/// Declares a Java enum: serialized as its Java name, read from the name (in
/// any case), from an alias, from its ordinal (C++ clients send numbers), or
/// from the ordinal as a string. Null reads as the default.
macro_rules! java_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident = $java:literal $(| $alias:literal)* ),+ $(,)?
        }
        default $default:ident
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )+
        }

        impl $name {
            /// Every value, in Java's declaration (ordinal) order.
            pub const ALL: &'static [$name] = &[ $( $name::$variant, )+ ];

            /// The Java name.
            pub fn java_name(self) -> &'static str {
                match self { $( $name::$variant => $java, )+ }
            }

            /// The Java ordinal.
            pub fn ordinal(self) -> usize {
                Self::ALL.iter().position(|v| *v == self).unwrap_or(0)
            }

            /// The value with Java ordinal `n`.
            pub fn from_ordinal(n: usize) -> Option<Self> {
                Self::ALL.get(n).copied()
            }

            /// The value named `s` (Java name or alias, any case).
            pub fn from_java_name(s: &str) -> Option<Self> {
                $(
                    if s.eq_ignore_ascii_case($java) $(|| s.eq_ignore_ascii_case($alias))* {
                        return Some($name::$variant);
                    }
                )+
                None
            }
        }

        impl Default for $name {
            fn default() -> Self {
                $name::$default
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.java_name())
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.java_name())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                use serde::de::Error as _;
                let v = serde_json::Value::deserialize(d)?;
                let found = match &v {
                    serde_json::Value::Null => Some($name::default()),
                    serde_json::Value::String(s) => $name::from_java_name(s.trim()).or_else(|| {
                        s.trim().parse::<usize>().ok().and_then($name::from_ordinal)
                    }),
                    serde_json::Value::Number(n) => n
                        .as_u64()
                        .and_then(|n| usize::try_from(n).ok())
                        .and_then($name::from_ordinal),
                    _ => None,
                };
                found.ok_or_else(|| {
                    D::Error::custom(format!(
                        "{} is not a {}",
                        $crate::body::lenient::short(&v),
                        stringify!($name)
                    ))
                })
            }
        }
    };
}
pub(crate) use java_enum;

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    #[derive(Deserialize, Debug, Default)]
    #[serde(default)]
    struct Sample {
        #[serde(deserialize_with = "super::string")]
        s: String,
        #[serde(deserialize_with = "super::i32")]
        a: i32,
        #[serde(deserialize_with = "super::i64")]
        b: i64,
        #[serde(deserialize_with = "super::f64")]
        c: f64,
        #[serde(deserialize_with = "super::bool")]
        d: bool,
        #[serde(deserialize_with = "super::null_default")]
        e: Vec<i32>,
    }

    #[test]
    fn accepts_what_fastjson_accepts() {
        let s: Sample = serde_json::from_str(
            r#"{"s":12,"a":"7","b":"-9000000000","c":"1.5","d":"TRUE","e":null}"#,
        )
        .unwrap();
        assert_eq!(
            (s.s.as_str(), s.a, s.b, s.c, s.d),
            ("12", 7, -9_000_000_000, 1.5, true)
        );
        assert!(s.e.is_empty());
        let s: Sample = serde_json::from_str(r#"{"s":null,"a":null,"b":3.0,"d":1}"#).unwrap();
        assert_eq!((s.s.as_str(), s.a, s.b, s.d), ("", 0, 3, true));
        let s: Sample = serde_json::from_str("{}").unwrap();
        assert_eq!(s.a, 0);
    }

    #[test]
    fn rejects_nonsense() {
        assert!(serde_json::from_str::<Sample>(r#"{"a":"x"}"#).is_err());
        assert!(serde_json::from_str::<Sample>(r#"{"a":4294967296}"#).is_err());
        assert!(serde_json::from_str::<Sample>(r#"{"d":"maybe"}"#).is_err());
        assert!(serde_json::from_str::<Sample>(r#"{"b":[1]}"#).is_err());
    }
}
