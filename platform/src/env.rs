//! Settings from the environment. Each service reads its own typed config struct once at
//! start-up with these; defaults work against the local services.

use std::fmt;
use std::str::FromStr;

/// A secret string: `Debug` shows `***`, so a config struct can be logged whole.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// A setting that is present but unusable; the message names the variable.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// `name` from the environment, or `default`.
pub fn var(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

/// `name` parsed, or `default` when unset; an unparsable value is an error, never
/// silently the default.
pub fn parse<T: FromStr>(name: &str, default: T) -> Result<T, ConfigError> {
    parse_value(name, std::env::var(name).ok(), default)
}

fn parse_value<T: FromStr>(
    name: &str,
    value: Option<String>,
    default: T,
) -> Result<T, ConfigError> {
    match value {
        Some(v) => v
            .trim()
            .parse()
            .map_err(|_| ConfigError(format!("{name}: cannot read {v:?}"))),
        None => Ok(default),
    }
}

/// A secret from `NAME`, or from the file named by `NAME_FILE` (trimmed), or none.
pub fn secret(name: &str) -> Result<Option<Secret>, ConfigError> {
    if let Ok(v) = std::env::var(name) {
        return Ok(Some(Secret(v)));
    }
    match std::env::var(format!("{name}_FILE")) {
        Ok(path) => std::fs::read_to_string(&path)
            .map(|s| Some(Secret(s.trim().to_owned())))
            .map_err(|e| ConfigError(format!("{name}_FILE {path}: {e}"))),
        Err(_) => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print() {
        assert_eq!(format!("{:?}", Secret::new("hunter2")), "***");
    }

    #[test]
    fn unset_is_the_default_and_garbage_is_an_error() {
        assert_eq!(parse("FLOODGATE_PLATFORM_TEST_UNSET", 7u32).unwrap(), 7);
        assert_eq!(parse_value("N", Some(" 9 ".into()), 7u32).unwrap(), 9);
        let bad = parse_value("N", Some("seven".into()), 7u32).unwrap_err();
        assert!(bad.to_string().contains("N"), "{bad}");
    }
}
