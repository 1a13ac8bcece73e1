//! Settings: where the data, keys and printer files live, and which database to use. The CLI
//! fills them from flags and environment variables; keys never come from flags.

use std::path::{Path, PathBuf};

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

    /// Whether the database is PostgreSQL.
    pub fn is_postgres(&self) -> bool {
        let url = self.database_url();
        url.starts_with("postgres://") || url.starts_with("postgresql://")
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
