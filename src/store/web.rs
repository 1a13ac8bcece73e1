//! The customer page's sign-in links and browser sessions. A link is kept by its random id, a
//! session by the SHA-256 of its cookie: what a copy of the database holds opens nothing. When
//! a link or a session is good is the service's to judge.

use std::future::Future;

use super::StoreResult;
use crate::domain::AccountId;

/// A sign-in link as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkRow {
    /// The account it signs in to.
    pub account_id: AccountId,
    /// When it stops working, Unix milliseconds.
    pub expires_ms: i64,
    /// When it was used, if it was.
    pub used_ms: Option<i64>,
}

/// A new sign-in link.
#[derive(Debug, Clone, Copy)]
pub struct NewLink<'a> {
    /// Its random id, 32 hex digits.
    pub link_id: &'a str,
    /// The account it signs in to.
    pub account_id: AccountId,
    /// Who asked for it (`api:<key>`, `cli:<user>`).
    pub minted_by: &'a str,
    /// When, Unix milliseconds.
    pub minted_ms: i64,
    /// When it stops working.
    pub expires_ms: i64,
}

/// A browser session as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRow {
    /// The account signed in.
    pub account_id: AccountId,
    /// When it stops working, Unix milliseconds.
    pub expires_ms: i64,
    /// When it was signed out of, if it was.
    pub ended_ms: Option<i64>,
    /// The outcome of the last form it posted, not yet shown.
    pub notice: Option<String>,
}

/// A new browser session.
#[derive(Debug, Clone, Copy)]
pub struct NewSession<'a> {
    /// SHA-256 of its cookie.
    pub session_hash: &'a [u8; 32],
    /// The account signed in.
    pub account_id: AccountId,
    /// The link that opened it.
    pub link_id: &'a str,
    /// When, Unix milliseconds.
    pub created_ms: i64,
    /// When it stops working.
    pub expires_ms: i64,
}

/// Sign-in links and sessions.
pub trait WebRepo {
    /// Records a minted link.
    fn insert_link(&mut self, new: &NewLink<'_>) -> impl Future<Output = StoreResult<()>> + Send;

    /// Marks the link used at `now_ms` if it is unused and unexpired then, in one guarded
    /// update; whether it did.
    fn use_link(
        &mut self,
        link_id: &str,
        now_ms: i64,
    ) -> impl Future<Output = StoreResult<bool>> + Send;

    /// The link, if it was ever minted.
    fn link(&mut self, link_id: &str) -> impl Future<Output = StoreResult<Option<LinkRow>>> + Send;

    /// Records a session.
    fn insert_session(
        &mut self,
        new: &NewSession<'_>,
    ) -> impl Future<Output = StoreResult<()>> + Send;

    /// The session whose cookie hashes to `hash`.
    fn session(
        &mut self,
        hash: &[u8; 32],
    ) -> impl Future<Output = StoreResult<Option<SessionRow>>> + Send;

    /// Ends the session at `now_ms` unless it has ended; whether it did.
    fn end_session(
        &mut self,
        hash: &[u8; 32],
        now_ms: i64,
    ) -> impl Future<Output = StoreResult<bool>> + Send;

    /// Sets (or with `None` clears) the session's notice; whether the session exists.
    fn set_notice(
        &mut self,
        hash: &[u8; 32],
        notice: Option<&str>,
    ) -> impl Future<Output = StoreResult<bool>> + Send;

    /// Deletes up to `rows` sessions and then up to `rows` links that stopped working before
    /// `before_ms` (sessions first: they name their link; a link a session still names stays).
    /// How many rows went.
    fn purge_web(
        &mut self,
        before_ms: i64,
        rows: u32,
    ) -> impl Future<Output = StoreResult<u64>> + Send;
}
