//! Settings: where the data, keys and printer files live, and which database to use. The CLI
//! fills them from flags and environment variables; keys never come from flags.

use std::path::{Path, PathBuf};

use crate::error::{Classify, Kind};

/// Default data directory, relative to the working directory.
pub const DEFAULT_DATA_DIR: &str = "tender-data";

/// Resolved settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Holds the SQLite file and, unless overridden, the keys and printer files.
    pub data_dir: PathBuf,
    /// `sqlite://…` or `postgres://…`; `None` for the SQLite file in the data directory.
    pub database_url: Option<String>,
    /// Where the key files are; default `<data_dir>/keys`.
    pub key_dir: Option<PathBuf>,
    /// Where printer files are written; default `<data_dir>/exports`.
    pub export_dir: Option<PathBuf>,
    /// Where job definitions that replace the built-in ones are; `None` for the built-in ones.
    pub jobs_dir: Option<PathBuf>,
}

impl Settings {
    /// Settings that keep everything in `data_dir`.
    pub fn in_dir(data_dir: impl Into<PathBuf>) -> Settings {
        Settings {
            data_dir: data_dir.into(),
            database_url: None,
            key_dir: None,
            export_dir: None,
            jobs_dir: None,
        }
    }

    /// The database URL in force.
    pub fn database_url(&self) -> String {
        self.database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", self.data_dir.join("tender.db").display()))
    }

    /// Which database the URL names; refuses any scheme but the two tender speaks.
    pub fn database(&self) -> Result<Database, ConfigError> {
        Database::parse(&self.database_url())
    }

    /// The key directory in force.
    pub fn key_dir(&self) -> PathBuf {
        self.key_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("keys"))
    }

    /// The printer file directory in force.
    pub fn export_dir(&self) -> PathBuf {
        self.export_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("exports"))
    }

    /// The jobs directory, if any.
    pub fn jobs_dir(&self) -> Option<&Path> {
        self.jobs_dir.as_deref()
    }
}

/// Which database a URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Database {
    /// `sqlite://PATH`: the embedded default.
    Sqlite,
    /// `postgres://…` or `postgresql://…`: production, shared by many processes.
    Postgres,
}

impl Database {
    /// The database a URL names, from its scheme.
    pub fn parse(url: &str) -> Result<Database, ConfigError> {
        let scheme = url.split_once("://").map(|(scheme, _)| scheme);
        match scheme {
            Some("sqlite") => Ok(Database::Sqlite),
            Some("postgres" | "postgresql") => Ok(Database::Postgres),
            _ => Err(ConfigError::UnknownScheme),
        }
    }
}

/// Why the settings cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The database URL's scheme is neither SQLite's nor PostgreSQL's.
    #[error("the database URL must start with sqlite:// or postgres://")]
    UnknownScheme,
}

impl Classify for ConfigError {
    fn code(&self) -> &'static str {
        match self {
            ConfigError::UnknownScheme => "config.unknown_scheme",
        }
    }

    fn kind(&self) -> Kind {
        Kind::Invalid
    }
}

/// The URL with any password replaced by `***`, for messages and logs.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    // The authority ends at the first '/', '?' or '#'; its credentials end at its last '@'.
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((credentials, host)) => match credentials.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}{tail}"),
            None => url.to_string(),
        },
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_two_schemes_are_accepted() {
        assert_eq!(Database::parse("sqlite://x.db"), Ok(Database::Sqlite));
        assert_eq!(Database::parse("postgres://u@h/db"), Ok(Database::Postgres));
        assert_eq!(
            Database::parse("postgresql://u@h/db"),
            Ok(Database::Postgres)
        );
        for url in ["mysql://u@h/db", "sqlite:x.db", "x.db", ""] {
            let error = Database::parse(url).unwrap_err();
            assert!(
                error.to_string().contains("sqlite:// or postgres://"),
                "{url}"
            );
        }
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact_url("postgres://u:secret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(
            redact_url("postgres://u:p@ss:w@rd@h/db?sslmode=require"),
            "postgres://u:***@h/db?sslmode=require"
        );
        assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(
            redact_url("sqlite:///tmp/a@b/t.db"),
            "sqlite:///tmp/a@b/t.db"
        );
    }
}
