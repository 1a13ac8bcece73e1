//! The HTTP API's clients: the role each key acts in and the name operators know it by.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::pos::StoreCode;
use super::retailer::RetailerId;

use crate::error::{Classify, Kind};

/// Longest API key name, in characters: the audit trail records an API call's actor as
/// `api:<name>`, so a name is no longer than an actor's user name may be.
pub const API_KEY_NAME_MAX_CHARS: usize = super::actor::ACTOR_USER_MAX_CHARS;

/// What an API client may do; which routes each role reaches is the API's table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ApiRole {
    /// A retailer's point of sale: activations and voids of its own cards.
    Pos,
    /// The customer-facing redeem service: accounts and redemptions.
    Redeem,
    /// The support desk: card and account views, the attempt log, adjustments.
    Support,
    /// Warehouse systems: batches and card stock.
    Warehouse,
    /// Finance tools: accounts, balances and the books.
    Finance,
    /// Operators: everything, batch creation and metrics included.
    Admin,
}

impl ApiRole {
    /// Every role, in the order help texts list them.
    pub const ALL: [ApiRole; 6] = [
        ApiRole::Pos,
        ApiRole::Redeem,
        ApiRole::Support,
        ApiRole::Warehouse,
        ApiRole::Finance,
        ApiRole::Admin,
    ];

    /// The role's name, as the database, the CLI and JSON spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            ApiRole::Pos => "pos",
            ApiRole::Redeem => "redeem",
            ApiRole::Support => "support",
            ApiRole::Warehouse => "warehouse",
            ApiRole::Finance => "finance",
            ApiRole::Admin => "admin",
        }
    }

    /// Parses a role's name (exactly as [`ApiRole::as_str`] spells it).
    pub fn parse(text: &str) -> Result<ApiRole, ApiKeyValueError> {
        ApiRole::ALL
            .into_iter()
            .find(|role| role.as_str() == text)
            .ok_or(ApiKeyValueError::BadRole)
    }

    /// Whether a key of this role is bound to a retailer (and may be to one of its stores).
    /// Only the point of sale acts for one retailer; every other role is tender-wide, and a
    /// retailer on it would look like a scope that nothing enforces.
    pub fn is_retailer_bound(self) -> bool {
        self == ApiRole::Pos
    }
}

impl fmt::Display for ApiRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ApiRole {
    type Err = ApiKeyValueError;

    fn from_str(text: &str) -> Result<ApiRole, ApiKeyValueError> {
        ApiRole::parse(text)
    }
}

/// An API key's name: 1 to [`API_KEY_NAME_MAX_CHARS`] of `a-z 0-9 . _ -`, not starting with
/// `-`. Lower case only, so two names that differ in case alone cannot name two clients; the
/// character set is an actor's, so `api:<name>` is always a valid actor.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct ApiKeyName(String);

impl ApiKeyName {
    /// Parses a name.
    pub fn parse(text: &str) -> Result<ApiKeyName, ApiKeyValueError> {
        let ok = (1..=API_KEY_NAME_MAX_CHARS).contains(&text.len())
            && !text.starts_with('-')
            && text
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
        ok.then(|| ApiKeyName(text.to_string()))
            .ok_or(ApiKeyValueError::BadName)
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ApiKeyName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An API client as callers see it: who it is and what it is bound to; no secret, no hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApiClient {
    /// The operator's name for it; the trail records its calls as `api:<name>`.
    pub name: ApiKeyName,
    /// What it may do.
    pub role: ApiRole,
    /// The retailer a point-of-sale key acts for.
    pub retailer_id: Option<RetailerId>,
    /// The one store of that retailer a point-of-sale key is bound to, if any.
    pub store: Option<StoreCode>,
    /// The key's public id: the part of the key between its prefix and its secret, which
    /// finds the row and may be shown and logged.
    pub key_id: String,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// Who created it.
    pub created_by: String,
    /// When it was revoked, if it was.
    pub revoked_at: Option<DateTime<Utc>>,
    /// Who revoked it.
    pub revoked_by: Option<String>,
}

/// Why an API key's role or name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiKeyValueError {
    /// Not one of the roles.
    #[error("a role is one of pos, redeem, support, warehouse, finance, admin")]
    BadRole,
    /// Empty, too long, or a character outside the set.
    #[error(
        "an API key name is 1 to {API_KEY_NAME_MAX_CHARS} characters from a-z, 0-9, '.', '_' and '-', not starting with '-'"
    )]
    BadName,
}

impl Classify for ApiKeyValueError {
    fn code(&self) -> &'static str {
        match self {
            ApiKeyValueError::BadRole => "api_key.bad_role",
            ApiKeyValueError::BadName => "api_key.bad_name",
        }
    }

    fn kind(&self) -> Kind {
        Kind::Invalid
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_parse_as_they_print() {
        for role in ApiRole::ALL {
            assert_eq!(ApiRole::parse(role.as_str()), Ok(role));
        }
        assert_eq!(ApiRole::parse("Admin"), Err(ApiKeyValueError::BadRole));
    }

    #[test]
    fn names_are_short_lower_case_and_actor_safe() {
        assert!(ApiKeyName::parse("pos-s0042.till_3").is_ok());
        let longest = "a".repeat(API_KEY_NAME_MAX_CHARS);
        assert!(ApiKeyName::parse(&longest).is_ok());
        for bad in ["", "-x", "Pos", "a:b", "a/b", "a b", &format!("{longest}a")] {
            assert_eq!(
                ApiKeyName::parse(bad),
                Err(ApiKeyValueError::BadName),
                "{bad}"
            );
        }
    }
}
