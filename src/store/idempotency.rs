//! The HTTP API's idempotency records: a claim on a (client, key) pair while its request runs,
//! then the answer it got. Which answer is kept, when a claim is stale and who may take it over
//! are the service's; every change here is one guarded statement.

use std::future::Future;

use super::StoreResult;
use crate::codegen::CodeDigest;
use crate::keys::KeyId;

/// An answer as stored: its status and its JSON body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredAnswer {
    /// The HTTP status.
    pub status: u16,
    /// The body, JSON text.
    pub body: String,
}

/// An idempotency record as stored.
#[derive(Debug, Clone)]
pub struct IdemRecord {
    /// The lookup key the fingerprint's key was derived from.
    pub mac_key_id: KeyId,
    /// HMAC-SHA256 of the request's method, path and body (compared in constant time).
    pub fingerprint: CodeDigest,
    /// The token of the request holding the claim (the last one, once done).
    pub claim_token: String,
    /// The answer, once done; `None` while in flight.
    pub answer: Option<StoredAnswer>,
    /// When the claim was first made, Unix ms.
    pub created_ms: i64,
    /// When the current claim was made (or taken over), Unix ms.
    pub started_ms: i64,
}

/// A claim as the service makes it.
#[derive(Debug, Clone, Copy)]
pub struct NewIdemClaim<'a> {
    /// The calling API key's public id.
    pub client_key_id: &'a str,
    /// The Idempotency-Key.
    pub idem_key: &'a str,
    /// The lookup key the fingerprint's key is derived from.
    pub mac_key_id: KeyId,
    /// The request's fingerprint.
    pub fingerprint: &'a CodeDigest,
    /// The claiming request's token.
    pub claim_token: &'a str,
    /// Now, Unix ms.
    pub now_ms: i64,
}

/// Idempotency records.
pub trait IdempotencyRepo {
    /// Inserts an in-flight claim; `false` (nothing written) when the pair has a record.
    fn insert_idem_claim(
        &mut self,
        new: &NewIdemClaim<'_>,
    ) -> impl Future<Output = StoreResult<bool>> + Send;

    /// The record of `client_key_id`'s `idem_key`.
    fn idem_record(
        &mut self,
        client_key_id: &str,
        idem_key: &str,
    ) -> impl Future<Output = StoreResult<Option<IdemRecord>>> + Send;

    /// Hands an in-flight claim held by `old_token` to `new_token`, started at `now_ms`;
    /// whether it moved (`false`: another request took it, completed or released it first).
    fn take_over_idem_claim(
        &mut self,
        client_key_id: &str,
        idem_key: &str,
        old_token: &str,
        new_token: &str,
        now_ms: i64,
    ) -> impl Future<Output = StoreResult<bool>> + Send;

    /// Stores the answer of the in-flight claim `token` holds; whether it still held it.
    fn complete_idem_claim(
        &mut self,
        client_key_id: &str,
        idem_key: &str,
        token: &str,
        answer: &StoredAnswer,
    ) -> impl Future<Output = StoreResult<bool>> + Send;

    /// Deletes the in-flight claim `token` holds; whether it still held it.
    fn release_idem_claim(
        &mut self,
        client_key_id: &str,
        idem_key: &str,
        token: &str,
    ) -> impl Future<Output = StoreResult<bool>> + Send;

    /// Deletes up to `rows` records created before `before_ms`, oldest first; how many.
    fn purge_idem_records(
        &mut self,
        before_ms: i64,
        rows: u32,
    ) -> impl Future<Output = StoreResult<u64>> + Send;
}
