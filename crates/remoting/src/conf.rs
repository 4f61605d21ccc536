//! Reading RocketMQ-style `.conf` files (Java properties: `key=value`).
//!
//! Every server reads its file through [`Conf`], which remembers the keys it
//! was asked for, so that the keys nobody asked for can be named in a
//! warning instead of being silently dropped, and a malformed value stops
//! start-up with a message that names its key.

use std::collections::BTreeMap;
use std::path::Path;
use std::str::FromStr;

#[derive(thiserror::Error, Debug)]
pub enum ConfError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("config key `{key}`: cannot parse `{value}`: {reason}")]
    Invalid {
        key: String,
        value: String,
        reason: String,
    },
    #[error("config key `{0}` is required")]
    Missing(String),
}

/// The key/value pairs of a config file, with a record of which were used.
#[derive(Debug, Default, Clone)]
pub struct Conf {
    values: BTreeMap<String, String>,
    used: std::collections::BTreeSet<String>,
    ignored: std::collections::BTreeSet<String>,
}

impl Conf {
    /// Parse properties text: `key=value`, `key:value` or `key value`;
    /// lines starting with `#` or `!` are comments; a trailing `\` continues
    /// the line.
    pub fn parse(text: &str) -> Conf {
        let mut values = BTreeMap::new();
        let mut logical = String::new();
        for raw in text.lines() {
            let line = raw.trim_start();
            if logical.is_empty()
                && (line.is_empty() || line.starts_with('#') || line.starts_with('!'))
            {
                continue;
            }
            if let Some(stripped) = line.strip_suffix('\\') {
                logical.push_str(stripped);
                continue;
            }
            logical.push_str(line);
            let entry = std::mem::take(&mut logical);
            let entry = entry.trim();
            // As java.util.Properties: the key ends at the first `=`, `:` or
            // whitespace; then whitespace and at most one `=` or `:` go.
            let split = entry.find(|c: char| c == '=' || c == ':' || c.is_whitespace());
            let (k, v) = match split {
                Some(i) => {
                    let rest = entry[i..].trim_start();
                    let rest = rest
                        .strip_prefix('=')
                        .or_else(|| rest.strip_prefix(':'))
                        .unwrap_or(rest);
                    (&entry[..i], rest)
                }
                None => (entry, ""),
            };
            values.insert(k.trim().to_string(), v.trim().to_string());
        }
        Conf {
            values,
            used: Default::default(),
            ignored: Default::default(),
        }
    }

    /// Read and parse a file.
    pub fn load(path: &Path) -> Result<Conf, ConfError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Ok(Conf::parse(&text))
    }

    /// Set a value (command-line flags override the file).
    pub fn set(&mut self, key: &str, value: impl Into<String>) {
        self.values.insert(key.to_string(), value.into());
    }

    /// The raw value of `key`, marking it as known.
    pub fn str(&mut self, key: &str) -> Option<String> {
        self.used.insert(key.to_string());
        self.values.get(key).cloned()
    }

    /// The value of `key` parsed as `T`, or `None` when absent.
    pub fn get<T: FromStr>(&mut self, key: &str) -> Result<Option<T>, ConfError>
    where
        T::Err: std::fmt::Display,
    {
        match self.str(key) {
            None => Ok(None),
            Some(v) => v
                .trim()
                .parse::<T>()
                .map(Some)
                .map_err(|e| ConfError::Invalid {
                    key: key.to_string(),
                    value: v.clone(),
                    reason: e.to_string(),
                }),
        }
    }

    /// A boolean in Java's spelling (`true`/`false`, any case).
    pub fn bool(&mut self, key: &str) -> Result<Option<bool>, ConfError> {
        match self.str(key) {
            None => Ok(None),
            Some(v) => match v.trim().to_ascii_lowercase().as_str() {
                "true" => Ok(Some(true)),
                "false" => Ok(Some(false)),
                _ => Err(ConfError::Invalid {
                    key: key.to_string(),
                    value: v,
                    reason: "expected true or false".into(),
                }),
            },
        }
    }

    /// A key Meridian does not implement, set to anything but `false`,
    /// stops the start with `reason`, rather than being ignored while the
    /// operator believes it is in force (security keys above all).
    pub fn refuse_if_on(&mut self, keys: &[&str], reason: &str) -> Result<(), ConfError> {
        for key in keys {
            if let Some(v) = self.str(key) {
                if !v.trim().eq_ignore_ascii_case("false") {
                    return Err(ConfError::Invalid {
                        key: (*key).to_string(),
                        value: v,
                        reason: format!("not implemented: {reason}"),
                    });
                }
            }
        }
        Ok(())
    }

    /// Mark keys as known without reading them (accepted for compatibility
    /// but without effect); those present are named by
    /// [`Conf::ignored_keys`] for a start-up warning.
    pub fn accept(&mut self, keys: &[&str]) {
        for k in keys {
            if self.values.contains_key(*k) && !self.used.contains(*k) {
                self.ignored.insert((*k).to_string());
            }
            self.used.insert((*k).to_string());
        }
    }

    /// Keys present in the file that are accepted but have no effect.
    pub fn ignored_keys(&self) -> Vec<String> {
        self.ignored.iter().cloned().collect()
    }

    /// The keys starting with `prefix` that nothing asked for, with their
    /// values (without marking them as asked for).
    pub fn unread_under(&self, prefix: &str) -> Vec<(String, String)> {
        self.values
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .filter(|(k, _)| !self.used.contains(*k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// Keys present in the file that nothing asked for.
    pub fn unknown_keys(&self) -> Vec<String> {
        self.values
            .keys()
            .filter(|k| !self.used.contains(*k))
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_java_properties_forms() {
        let mut c = Conf::parse(
            "# comment\n! also\nbrokerName = broker-a\nlistenPort:10911\nnamesrvAddr 127.0.0.1:9876;127.0.0.1:9877\nmulti=a\\\n  b\n",
        );
        assert_eq!(c.str("brokerName").as_deref(), Some("broker-a"));
        assert_eq!(c.get::<u16>("listenPort").unwrap(), Some(10911));
        assert_eq!(
            c.str("namesrvAddr").as_deref(),
            Some("127.0.0.1:9876;127.0.0.1:9877")
        );
        assert_eq!(c.str("multi").as_deref(), Some("ab"));
    }

    #[test]
    fn malformed_value_names_the_key() {
        let mut c = Conf::parse("listenPort=abc\n");
        let err = c.get::<u16>("listenPort").unwrap_err().to_string();
        assert!(err.contains("listenPort"), "{err}");
    }

    #[test]
    fn unread_keys_under_a_prefix() {
        let mut c = Conf::parse("tls.enable=true\ntls.ciphers=X\ntlsx=1\nbrokerName=a\n");
        c.str("tls.enable");
        assert_eq!(
            c.unread_under("tls."),
            vec![("tls.ciphers".to_string(), "X".to_string())]
        );
        assert_eq!(c.unknown_keys().len(), 3, "reading them marks nothing");
    }

    #[test]
    fn unknown_keys_are_reported() {
        let mut c = Conf::parse("brokerName=a\nbrokerNmae=b\n");
        c.str("brokerName");
        assert_eq!(c.unknown_keys(), vec!["brokerNmae".to_string()]);
    }
}
