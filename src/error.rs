//! How every error in tender is classified where it is born: a stable code that callers and
//! tests match on, and a kind that decides what happens next (an HTTP status, a job retry, an
//! exit code). A message shown to a person never carries driver text; causes are logged.

/// What kind of failure an error is, which decides how callers react.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// The input was refused: fixing the input is the only way forward.
    Invalid,
    /// Something named in the input does not exist.
    NotFound,
    /// The input is valid but clashes with the current state (a taken name, a lost claim).
    Conflict,
    /// Trying the same thing again later may succeed (a busy or unreachable database).
    Transient,
    /// A fault on our side: stored data is inconsistent, or a dependency failed unexpectedly.
    Internal,
}

impl Kind {
    /// The kind's name, as logs and JSON show it.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Invalid => "invalid",
            Kind::NotFound => "not_found",
            Kind::Conflict => "conflict",
            Kind::Transient => "transient",
            Kind::Internal => "internal",
        }
    }
}

/// A classified error: every error type tender defines implements it.
pub trait Classify {
    /// A stable machine-readable code, `area.reason`, such as `batch.bad_count`.
    fn code(&self) -> &'static str;
    /// What kind of failure it is.
    fn kind(&self) -> Kind;
}
