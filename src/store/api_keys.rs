//! The API's clients: one row per key, found by its public key id, holding a keyed hash of the
//! secret and never the secret. Which role may carry which binding, and how a presented key is
//! checked, are the service's.

use std::future::Future;

use super::StoreResult;
use crate::codegen::CodeDigest;
use crate::domain::{Actor, ApiClient, ApiKeyName, ApiRole, PageRows, RetailerId, StoreCode};
use crate::keys::KeyId;
use chrono::{DateTime, Utc};

/// A stored client with what authenticating it compares: the keyed hash of its secret and the
/// lookup key that hash was derived under.
#[derive(Debug, Clone)]
pub struct StoredApiClient {
    /// The client.
    pub client: ApiClient,
    /// The lookup key the hash's key was derived from.
    pub mac_key_id: KeyId,
    /// HMAC-SHA256 of the secret (compared in constant time; `Debug` redacts it).
    pub secret_mac: CodeDigest,
}

/// An API client as the service records it.
#[derive(Debug, Clone, Copy)]
pub struct NewApiClient<'a> {
    /// Its name.
    pub name: &'a ApiKeyName,
    /// Its role.
    pub role: ApiRole,
    /// The retailer it is bound to.
    pub retailer_id: Option<RetailerId>,
    /// The store it is bound to.
    pub store: Option<&'a StoreCode>,
    /// The key's public id.
    pub key_id: &'a str,
    /// The lookup key the hash's key is derived from.
    pub mac_key_id: KeyId,
    /// HMAC-SHA256 of the secret.
    pub secret_mac: &'a CodeDigest,
    /// When.
    pub at: DateTime<Utc>,
    /// Who.
    pub actor: &'a Actor,
}

/// API clients.
pub trait ApiKeyRepo {
    /// Inserts a client; `false` when its name or its key id is taken.
    fn insert_api_client(
        &mut self,
        new: &NewApiClient<'_>,
    ) -> impl Future<Output = StoreResult<bool>> + Send;

    /// The client named `name`, revoked or not.
    fn api_client_by_name(
        &mut self,
        name: &ApiKeyName,
    ) -> impl Future<Output = StoreResult<Option<ApiClient>>> + Send;

    /// The client whose key has public id `key_id`, revoked or not, with its hash.
    fn api_client_by_key_id(
        &mut self,
        key_id: &str,
    ) -> impl Future<Output = StoreResult<Option<StoredApiClient>>> + Send;

    /// Clients by name, at most `rows`.
    fn api_clients(
        &mut self,
        rows: PageRows,
    ) -> impl Future<Output = StoreResult<Vec<ApiClient>>> + Send;

    /// Revokes the client named `name` if it is not revoked yet; returns it as revoked, or
    /// `None` when no such unrevoked client exists.
    fn revoke_api_client(
        &mut self,
        name: &ApiKeyName,
        at: DateTime<Utc>,
        actor: &Actor,
    ) -> impl Future<Output = StoreResult<Option<ApiClient>>> + Send;
}
