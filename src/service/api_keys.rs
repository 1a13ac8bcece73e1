//! API keys: creating one (printed once, never stored), listing, revoking, and authenticating
//! the key an HTTP client presents.
//!
//! A key reads `tdr_live_<key id>_<secret>`: the prefix makes a leaked key recognisable to
//! secret scanners and people; the key id (80 random bits, public) finds the row; the secret
//! (160 random bits from ChaCha20 seeded by the operating system) is checked against
//! HMAC-SHA256 under a key derived from a lookup key, compared in constant time. Both parts
//! are lower-case base32 (RFC 4648, no padding), which holds no `_`, so the key splits one way.
//!
//! Why the lookup ring and not a purpose of its own: the lookup key already is "the key that
//! finds a caller's secret by its MAC", every process that authenticates callers loads it, and
//! its rotation (add, copy, activate, old ids kept in the ring) is what API keys need too: each
//! row keeps the id of the lookup key its MAC was made under, so a rotation leaves every API
//! key working. A key derived under the label [`API_KEY_MAC_LABEL`] keeps these MACs apart from
//! code digests, so no key serves two uses; a new purpose would have meant a third key file,
//! environment variable and rotation for no gain in separation.

use std::fmt;

use hmac::{Hmac, Mac};
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use sha2::Sha256;
use zeroize::Zeroizing;

use super::Services;
use super::keys::KeyUseError;
use crate::audit::events;
use crate::codegen::CodeDigest;
use crate::domain::{
    Actor, ApiKeyName, ApiKeyValueError, ApiRole, PageRows, PosError, RetailerError, RetailerName,
    StoreCode,
};
use crate::error::{Classify, Kind};
use crate::keys::{KeyId, KeyPurpose, KeyRing};
use crate::store::api_keys::NewApiClient;
use crate::store::{ApiKeyRepo, AuditRepo, KeyRepo, PosRepo, RetailerRepo, Store, StoreError, Tx};

pub use crate::domain::ApiClient;

/// What every key starts with.
pub const API_KEY_PREFIX: &str = "tdr_live_";
/// Random bytes of a key id: 80 bits, so ids of keys created in a lifetime never collide.
const KEY_ID_BYTES: usize = 10;
/// Random bytes of a secret: 160 bits, beyond any guessing.
pub const API_KEY_SECRET_BITS: usize = SECRET_BYTES * 8;
const SECRET_BYTES: usize = 20;
/// Base32 characters of a key id (8 bits a byte, 5 a character).
const KEY_ID_CHARS: usize = KEY_ID_BYTES * 8 / 5;
/// Base32 characters of a secret.
const SECRET_CHARS: usize = SECRET_BYTES * 8 / 5;
/// The length of every key, and so the most a presented key may hold: anything else is refused
/// before any work.
pub const API_KEY_CHARS: usize = API_KEY_PREFIX.len() + KEY_ID_CHARS + 1 + SECRET_CHARS;
/// The label the MAC key is derived from a lookup key under.
pub const API_KEY_MAC_LABEL: &[u8] = b"tender-api-key-v1";
/// RFC 4648 base32, lower case.
const BASE32: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

/// Why an API key was not created, listed, revoked or accepted.
#[derive(Debug, thiserror::Error)]
pub enum ApiKeyError {
    /// The name or role was refused.
    #[error(transparent)]
    Invalid(#[from] ApiKeyValueError),
    /// The retailer's name was refused.
    #[error(transparent)]
    Retailer(#[from] RetailerError),
    /// The store id was refused.
    #[error(transparent)]
    Store(#[from] PosError),
    /// Another key has this name (a revoked one keeps it).
    #[error("an API key named {0} already exists; names are never reused")]
    NameTaken(ApiKeyName),
    /// No key has this name.
    #[error("there is no API key named {0}; `tender api-key list` shows them")]
    UnknownName(ApiKeyName),
    /// The key was revoked before.
    #[error("API key {0} is already revoked")]
    AlreadyRevoked(ApiKeyName),
    /// A point-of-sale key without a retailer, or a store without one.
    #[error("a pos key is bound to a retailer: give --retailer (a store belongs to a retailer)")]
    RetailerRequired,
    /// A retailer or store on a role that acts for no single retailer.
    #[error("only a pos key is bound to a retailer or a store; a {0} key acts for all of tender")]
    BindingNotAllowed(ApiRole),
    /// No retailer has this name.
    #[error("there is no retailer named {0}")]
    UnknownRetailer(RetailerName),
    /// The retailer has no store with this id.
    #[error("retailer {retailer} has no store {store}")]
    UnknownStore {
        /// The retailer.
        retailer: RetailerName,
        /// The store asked for.
        store: StoreCode,
    },
    /// The presented key is malformed, unknown or revoked: one answer for all, so a caller
    /// learns nothing about which keys exist.
    #[error("the API key is not valid")]
    Unauthenticated,
    /// The lookup or audit key could not be had.
    #[error(transparent)]
    Keys(#[from] KeyUseError),
    /// Storage failed.
    #[error(transparent)]
    Storage(#[from] StoreError),
}

impl Classify for ApiKeyError {
    fn code(&self) -> &'static str {
        match self {
            ApiKeyError::Invalid(e) => e.code(),
            ApiKeyError::Retailer(e) => e.code(),
            ApiKeyError::Store(e) => e.code(),
            ApiKeyError::NameTaken(_) => "api_key.name_taken",
            ApiKeyError::UnknownName(_) => "api_key.unknown",
            ApiKeyError::AlreadyRevoked(_) => "api_key.already_revoked",
            ApiKeyError::RetailerRequired => "api_key.retailer_required",
            ApiKeyError::BindingNotAllowed(_) => "api_key.binding_not_allowed",
            ApiKeyError::UnknownRetailer(_) => "store.unknown_retailer",
            ApiKeyError::UnknownStore { .. } => "pos.unknown_store",
            ApiKeyError::Unauthenticated => "api_key.unauthenticated",
            ApiKeyError::Keys(e) => e.code(),
            ApiKeyError::Storage(e) => e.code(),
        }
    }

    fn kind(&self) -> Kind {
        match self {
            ApiKeyError::Invalid(_)
            | ApiKeyError::Retailer(_)
            | ApiKeyError::Store(_)
            | ApiKeyError::RetailerRequired
            | ApiKeyError::BindingNotAllowed(_)
            // The API answers this code with 401; to every other caller it is refused input.
            | ApiKeyError::Unauthenticated => Kind::Invalid,
            ApiKeyError::NameTaken(_) | ApiKeyError::AlreadyRevoked(_) => Kind::Conflict,
            ApiKeyError::UnknownName(_)
            | ApiKeyError::UnknownRetailer(_)
            | ApiKeyError::UnknownStore { .. } => Kind::NotFound,
            ApiKeyError::Keys(e) => e.kind(),
            ApiKeyError::Storage(e) => e.kind(),
        }
    }
}

/// An API key to create, as the CLI takes it.
#[derive(Debug, Clone, Default)]
pub struct ApiKeyForm {
    /// Its name.
    pub name: String,
    /// Its role.
    pub role: String,
    /// The retailer's name, for a point-of-sale key.
    pub retailer: Option<String>,
    /// One store of that retailer, for a point-of-sale key bound to it.
    pub store: Option<String>,
}

/// A whole API key, secret included. Shown once to the person who created it; `Debug` never
/// shows it, and it is wiped from memory on drop.
pub struct ApiKeySecret(Zeroizing<String>);

impl ApiKeySecret {
    /// The key, to print once.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiKeySecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKeySecret([redacted])")
    }
}

/// A key just created: the client, and the key to hand over.
#[derive(Debug)]
pub struct CreatedApiKey {
    /// The client as stored.
    pub client: ApiClient,
    /// The key, which tender cannot show again.
    pub key: ApiKeySecret,
}

/// What a create validated, before its transaction.
struct Checked {
    name: ApiKeyName,
    role: ApiRole,
    retailer: Option<RetailerName>,
    store: Option<StoreCode>,
}

/// A presented key split into its parts, only if it has the exact shape of a key.
struct Presented<'a> {
    key_id: &'a str,
    secret: &'a str,
}

impl<'a> Presented<'a> {
    fn parse(text: &'a str) -> Option<Presented<'a>> {
        if text.len() != API_KEY_CHARS {
            return None;
        }
        let (key_id, secret) = text.strip_prefix(API_KEY_PREFIX)?.split_once('_')?;
        let base32 = |part: &str, chars: usize| {
            part.len() == chars && part.bytes().all(|b| BASE32.contains(&b))
        };
        (base32(key_id, KEY_ID_CHARS) && base32(secret, SECRET_CHARS))
            .then_some(Presented { key_id, secret })
    }
}

/// `bytes` in lower-case base32; their count is a multiple of 5, so no padding.
fn base32(bytes: &[u8]) -> String {
    debug_assert_eq!(bytes.len() % 5, 0);
    let mut text = String::with_capacity(bytes.len() * 8 / 5);
    for group in bytes.chunks(5) {
        let bits = group.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b));
        for i in (0..8).rev() {
            text.push(char::from(BASE32[((bits >> (i * 5)) & 31) as usize]));
        }
    }
    text
}

/// The MAC a key's row holds: over the key id and the secret, so a secret only opens its own
/// row, under a key derived from lookup key `id` for this use alone.
fn secret_mac(ring: &KeyRing, id: KeyId, key_id: &str, secret: &str) -> Option<CodeDigest> {
    let derived = ring.derive(id, API_KEY_MAC_LABEL)?;
    let mut mac =
        Hmac::<Sha256>::new_from_slice(derived.expose()).expect("HMAC takes keys of any length");
    mac.update(key_id.as_bytes());
    mac.update(b"\0");
    mac.update(secret.as_bytes());
    Some(CodeDigest(mac.finalize().into_bytes().into()))
}

/// API key use cases.
#[derive(Debug)]
pub struct ApiKeys<'a, S>(pub(super) &'a Services<S>);

impl<S: Store> ApiKeys<'_, S> {
    /// Creates a key: checks the role's bindings (a pos key names its retailer, and may name
    /// one of its stores; no other role names either), stores the key's MAC and audits the
    /// creation. The key is in the answer and nowhere else.
    pub async fn create(
        &self,
        form: &ApiKeyForm,
        actor: &Actor,
    ) -> Result<CreatedApiKey, ApiKeyError> {
        let checked = Checked {
            name: ApiKeyName::parse(&form.name)?,
            role: ApiRole::parse(&form.role)?,
            retailer: form
                .retailer
                .as_deref()
                .map(RetailerName::parse)
                .transpose()?,
            store: form.store.as_deref().map(StoreCode::parse).transpose()?,
        };
        let bound = checked.retailer.is_some() || checked.store.is_some();
        if !checked.role.is_retailer_bound() && bound {
            return Err(ApiKeyError::BindingNotAllowed(checked.role));
        }
        if checked.role.is_retailer_bound() && checked.retailer.is_none() {
            return Err(ApiKeyError::RetailerRequired);
        }
        rerun!(self.create_once(&checked, actor))
    }

    async fn create_once(
        &self,
        checked: &Checked,
        actor: &Actor,
    ) -> Result<CreatedApiKey, ApiKeyError> {
        let services = self.0;
        let mut tx = services.store.begin().await?;
        let retailer = match &checked.retailer {
            Some(name) => Some(
                tx.retailer_by_name(name)
                    .await?
                    .ok_or_else(|| ApiKeyError::UnknownRetailer(name.clone()))?,
            ),
            None => None,
        };
        if let (Some(retailer), Some(store)) = (&retailer, &checked.store)
            && tx.store(retailer.id, store).await?.is_none()
        {
            return Err(ApiKeyError::UnknownStore {
                retailer: retailer.name.clone(),
                store: store.clone(),
            });
        }
        let mac_key_id = tx
            .active_key(KeyPurpose::Lookup)
            .await?
            .ok_or(KeyUseError::NoActiveKey(KeyPurpose::Lookup))?;
        let ring = services.lookup_ring_holding(&[mac_key_id])?;

        // A fresh generator per key, seeded by the operating system: nothing of one key's
        // state outlives it.
        let mut rng = ChaCha20Rng::from_os_rng();
        let mut id_bytes = [0u8; KEY_ID_BYTES];
        let mut secret_bytes = Zeroizing::new([0u8; SECRET_BYTES]);
        rng.fill_bytes(&mut id_bytes);
        rng.fill_bytes(secret_bytes.as_mut());
        let key_id = base32(&id_bytes);
        let secret = Zeroizing::new(base32(secret_bytes.as_ref()));
        let mac = secret_mac(&ring, mac_key_id, &key_id, &secret).expect("the ring holds the key");

        let at = services.clock.now();
        let new = NewApiClient {
            name: &checked.name,
            role: checked.role,
            retailer_id: retailer.as_ref().map(|r| r.id),
            store: checked.store.as_ref(),
            key_id: &key_id,
            mac_key_id,
            secret_mac: &mac,
            at,
            actor,
        };
        // A taken key id (80 random bits) would read as a taken name; it does not happen.
        if !tx.insert_api_client(&new).await? {
            return Err(ApiKeyError::NameTaken(checked.name.clone()));
        }
        let client = ApiClient {
            name: checked.name.clone(),
            role: checked.role,
            retailer_id: new.retailer_id,
            store: checked.store.clone(),
            key_id: key_id.clone(),
            created_at: at,
            created_by: actor.to_string(),
            revoked_at: None,
            revoked_by: None,
        };
        let signer = services.signer(&mut tx).await?;
        tx.append(&signer, &events::api_key_created(actor, &client), at)
            .await?;
        tx.commit().await?;
        let key = format!("{API_KEY_PREFIX}{key_id}_{}", secret.as_str());
        Ok(CreatedApiKey {
            client,
            key: ApiKeySecret(Zeroizing::new(key)),
        })
    }

    /// Clients by name, revoked ones included, at most `rows`.
    pub async fn list(&self, rows: PageRows) -> Result<Vec<ApiClient>, ApiKeyError> {
        Ok(self.0.store.read().await?.api_clients(rows).await?)
    }

    /// Revokes the key named `name`: from the commit on it authenticates nothing. Its row
    /// stays, so the name is never given to another client.
    pub async fn revoke(&self, name: &str, actor: &Actor) -> Result<ApiClient, ApiKeyError> {
        let name = ApiKeyName::parse(name)?;
        rerun!(self.revoke_once(&name, actor))
    }

    async fn revoke_once(
        &self,
        name: &ApiKeyName,
        actor: &Actor,
    ) -> Result<ApiClient, ApiKeyError> {
        let services = self.0;
        let mut tx = services.store.begin().await?;
        let at = services.clock.now();
        let Some(client) = tx.revoke_api_client(name, at, actor).await? else {
            return Err(match tx.api_client_by_name(name).await? {
                Some(_) => ApiKeyError::AlreadyRevoked(name.clone()),
                None => ApiKeyError::UnknownName(name.clone()),
            });
        };
        let signer = services.signer(&mut tx).await?;
        tx.append(&signer, &events::api_key_revoked(actor, &client), at)
            .await?;
        tx.commit().await?;
        Ok(client)
    }

    /// The client a presented key belongs to, with its role and bindings; one
    /// [`ApiKeyError::Unauthenticated`] for a malformed, unknown, tampered or revoked key
    /// alike. The secret's MAC is compared in constant time; whether a key id exists may show
    /// in the timing, which is no leak, since key ids are not secret.
    pub async fn authenticate(&self, presented: &str) -> Result<ApiClient, ApiKeyError> {
        let presented = Presented::parse(presented).ok_or(ApiKeyError::Unauthenticated)?;
        let stored = self
            .0
            .store
            .read()
            .await?
            .api_client_by_key_id(presented.key_id)
            .await?
            .ok_or(ApiKeyError::Unauthenticated)?;
        let ring = self.0.lookup_ring_holding(&[stored.mac_key_id])?;
        let mac = secret_mac(&ring, stored.mac_key_id, presented.key_id, presented.secret)
            .expect("the ring holds the key");
        if !mac.ct_eq(&stored.secret_mac) || stored.client.revoked_at.is_some() {
            return Err(ApiKeyError::Unauthenticated);
        }
        Ok(stored.client)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base32_follows_rfc_4648() {
        // RFC 4648 §10, lower case, whole groups only.
        assert_eq!(base32(b"fooba"), "mzxw6ytb");
        assert_eq!(base32(b""), "");
    }

    #[test]
    fn only_the_exact_shape_of_a_key_parses() {
        let key = format!("{API_KEY_PREFIX}{}_{}", "a".repeat(16), "b".repeat(32));
        assert_eq!(key.len(), API_KEY_CHARS);
        assert!(Presented::parse(&key).is_some());
        for bad in [
            key.replacen("tdr_live_", "tdr_test_", 1),
            key.to_uppercase(),
            format!("{key}b"),
            key.replace('_', "-"),
            key.replacen('b', "1", 1),
        ] {
            assert!(Presented::parse(&bad).is_none(), "{bad}");
        }
    }
}
