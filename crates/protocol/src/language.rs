//! RocketMQ's `LanguageCode`: which client library sent a command.
//!
//! The JSON header carries the name ("JAVA"), the binary header a byte (the
//! enum's code). [`crate::RemotingCommand::language`] is a plain string so a
//! name that Java does not know ("NODE_JS" on a 4.x broker, or something
//! newer) still reaches the log unchanged.

/// Every `LanguageCode` of RocketMQ 5.x, indexed by its byte code.
pub const NAMES: [&str; 14] = [
    "JAVA", "CPP", "DOTNET", "PYTHON", "DELPHI", "ERLANG", "RUBY", "OTHER", "HTTP", "GO", "PHP",
    "OMS", "RUST", "NODE_JS",
];

/// The language Meridian puts on its own commands. Java brokers before 5.x
/// do not know "RUST" and would fail on it, so we say what every broker
/// accepts.
pub const JAVA: &str = "JAVA";

/// What an unknown code or name maps to.
pub const OTHER: &str = "OTHER";

/// The name for a binary language byte; unknown bytes become "OTHER".
pub fn name_of(code: u8) -> &'static str {
    NAMES.get(code as usize).copied().unwrap_or(OTHER)
}

/// The binary byte for a language name (case-insensitive); unknown names
/// become OTHER's code, 7.
pub fn code_of(name: &str) -> u8 {
    NAMES
        .iter()
        .position(|n| n.eq_ignore_ascii_case(name))
        .unwrap_or(7) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_codes_match_java() {
        assert_eq!(code_of("JAVA"), 0);
        assert_eq!(code_of("CPP"), 1);
        assert_eq!(code_of("GO"), 9);
        assert_eq!(code_of("RUST"), 12);
        assert_eq!(code_of("NODE_JS"), 13);
        assert_eq!(code_of("nonsense"), 7);
        assert_eq!(name_of(7), "OTHER");
        assert_eq!(name_of(13), "NODE_JS");
        assert_eq!(name_of(200), "OTHER");
    }
}
