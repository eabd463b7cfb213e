//! The one error type of configuration loading. Every variant names where the
//! problem is (file path, `section.key`, or the CLI flag); it never decides
//! exit codes or prints anything, that is main's job.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file could not be read at all.
    #[error("cannot read config file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The text is not TOML. `location` is `path:line:column` (or just the
    /// path when the parser gave no position).
    #[error("{location}: invalid TOML: {message}")]
    Syntax { location: String, message: String },
    /// A top-level table synguard does not know.
    #[error("unknown section [{section}]; {expected}")]
    UnknownSection { section: String, expected: String },
    /// A key synguard does not know inside a known table.
    /// `expected` is serde's list, e.g. "expected one of `a`, `b`".
    #[error("unknown key `{key}` in [{section}]; {expected}")]
    UnknownKey {
        section: String,
        key: String,
        expected: String,
    },
    /// A required value came neither from the file nor from its flag.
    #[error("{key}: missing (set it in the file or pass {flag})")]
    Missing {
        key: &'static str,
        flag: &'static str,
    },
    /// A value is present but unusable. `key` is `section.key`, or the flag
    /// name when the value came from the command line.
    #[error("{key}: {message}")]
    Invalid { key: String, message: String },
}

impl ConfigError {
    pub(crate) fn invalid(key: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError::Invalid {
            key: key.into(),
            message: message.into(),
        }
    }
}
