//! Signing customers in to their page: the store's site vouches for its customer by asking
//! tender for a single-use sign-in link, and the link opens a browser session.
//!
//! - **A link** is `PUBLIC_URL/account/sign-in?token=K.ID.MAC`: `ID` 16 random bytes (hex),
//!   `MAC` HMAC-SHA256 of `K.ID` under a key derived from lookup key `K` for this use alone
//!   ([`LINK_MAC_LABEL`]). An altered token fails its MAC before the database is asked; the
//!   stored link (by id, with its account and expiry) is used once by one guarded update, and
//!   only within [`SIGN_IN_LINK_LIFETIME`] of its minting.
//! - **A session** is a cookie of 32 random bytes; the database keeps their SHA-256 only, so a
//!   copy of it opens no session. It ends after [`SESSION_LIFETIME`] whatever the browser
//!   keeps, or at sign-out.
//! - **Forms** carry a token bound to the session ([`csrf_token`]), compared in constant time:
//!   another site can make a browser post, but cannot read the page that holds it.

use std::time::Duration;

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use rand_core::{OsRng, TryRngCore};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::Services;
use super::idempotency::PURGE_BATCH_ROWS;
use super::keys::KeyUseError;
use crate::audit::events;
use crate::domain::{Account, AccountId, Actor, LedgerValueError};
use crate::error::{Classify, Kind};
use crate::keys::{KeyId, KeyPurpose, KeyRing};
use crate::store::web::{NewLink, NewSession};
use crate::store::{AuditRepo, KeyRepo, LedgerRepo, Store, StoreError, Tx, WebRepo};

/// How long a sign-in link works after it is minted: long enough to follow it from the store's
/// page (it is handed over at once, not mailed), short enough that one found later in a
/// browser history or a proxy log opens nothing.
pub const SIGN_IN_LINK_LIFETIME: Duration = Duration::from_secs(5 * 60);

/// How long a session lasts, however active: the page moves money and is often opened on a
/// shared or borrowed device, so a forgotten tab signs itself out within the half hour.
pub const SESSION_LIFETIME: Duration = Duration::from_secs(30 * 60);

/// How long links and sessions are kept after they stop working, before the nightly purge
/// deletes them: a day, so a used link still reads as used (not unknown) to a customer who
/// tries it again that day.
pub const SIGN_IN_KEEP: Duration = Duration::from_secs(24 * 60 * 60);

/// The label the link MAC's key is derived from a lookup key under.
pub const LINK_MAC_LABEL: &[u8] = b"tender sign-in link v1";

/// The longest token read: a real one is about 100 characters; anything longer is refused
/// before it is parsed.
pub const SIGN_IN_TOKEN_MAX_CHARS: usize = 128;

/// The longest session cookie read: a real one is 64 hex digits.
pub const SESSION_COOKIE_MAX_CHARS: usize = 64;

/// The path a sign-in link opens, under the public URL.
pub const SIGN_IN_PATH: &str = "/account/sign-in";

/// Why signing in, a session or a form was refused. None of the messages names an account or
/// shows a token.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The account id was refused.
    #[error(transparent)]
    Invalid(#[from] LedgerValueError),
    /// No such account.
    #[error("there is no account {0}")]
    AccountNotFound(AccountId),
    /// The link's token is not one tender made: cut short, altered, or made up.
    #[error("this sign-in link is not valid; ask the store for a new one")]
    LinkInvalid,
    /// The link was used already.
    #[error("this sign-in link was already used; ask the store for a new one")]
    LinkUsed,
    /// The link is past its lifetime.
    #[error("this sign-in link has expired; ask the store for a new one")]
    LinkExpired,
    /// No session cookie, or one tender does not know.
    #[error("you are not signed in; open the page from the store to sign in")]
    NoSession,
    /// The session was signed out of.
    #[error("you signed out; open the page from the store to sign in again")]
    SessionEnded,
    /// The session is past its lifetime.
    #[error("your session has expired; open the page from the store to sign in again")]
    SessionExpired,
    /// A form came without its session's token.
    #[error(
        "this form is out of date or was not sent from this page; reload the page and try again"
    )]
    Csrf,
    /// The lookup key could not be had.
    #[error(transparent)]
    Keys(#[from] KeyUseError),
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Classify for SessionError {
    fn code(&self) -> &'static str {
        match self {
            SessionError::Invalid(e) => e.code(),
            SessionError::AccountNotFound(_) => "account.not_found",
            SessionError::LinkInvalid => "session.link_invalid",
            SessionError::LinkUsed => "session.link_used",
            SessionError::LinkExpired => "session.link_expired",
            SessionError::NoSession => "session.none",
            SessionError::SessionEnded => "session.ended",
            SessionError::SessionExpired => "session.expired",
            SessionError::Csrf => "session.csrf",
            SessionError::Keys(e) => e.code(),
            SessionError::Store(e) => e.code(),
        }
    }

    fn kind(&self) -> Kind {
        match self {
            SessionError::Invalid(_) | SessionError::LinkInvalid | SessionError::Csrf => {
                Kind::Invalid
            }
            SessionError::AccountNotFound(_) | SessionError::NoSession => Kind::NotFound,
            SessionError::LinkUsed
            | SessionError::LinkExpired
            | SessionError::SessionEnded
            | SessionError::SessionExpired => Kind::Conflict,
            SessionError::Keys(e) => e.kind(),
            SessionError::Store(e) => e.kind(),
        }
    }
}

/// A minted sign-in link.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SignInLink {
    /// The account it signs in to.
    pub account_id: AccountId,
    /// The whole link, to hand to the customer's browser. It opens the account: treat it as a
    /// password until it is used or expires.
    pub url: String,
    /// When it stops working.
    pub expires_at: DateTime<Utc>,
}

/// A session just opened by a link.
#[derive(Debug)]
pub struct Opened {
    /// The account signed in.
    pub account_id: AccountId,
    /// The cookie's value: the session's secret.
    pub cookie: String,
    /// When it ends.
    pub expires_at: DateTime<Utc>,
}

/// A live session, as a page reads it.
#[derive(Debug, Clone)]
pub struct Current {
    /// The account, with its balance.
    pub account: Account,
    /// The token its forms carry.
    pub csrf: String,
    /// The outcome of its last form, once: read here, cleared in the same step.
    pub notice: Option<String>,
    /// When it ends.
    pub expires_at: DateTime<Utc>,
}

/// Sign-in links and sessions.
#[derive(Debug)]
pub struct Sessions<'a, S>(pub(super) &'a Services<S>);

impl<S: Store> Sessions<'_, S> {
    /// Mints a single-use sign-in link to `account`'s page, for `actor` (the store's redeem
    /// service, an operator). Audited, by the link's id.
    pub async fn mint(&self, account: &str, actor: &Actor) -> Result<SignInLink, SessionError> {
        let account = AccountId::parse(account)?;
        rerun!(self.mint_once(account, actor))
    }

    async fn mint_once(
        &self,
        account: AccountId,
        actor: &Actor,
    ) -> Result<SignInLink, SessionError> {
        let services = self.0;
        let mut tx = services.store.begin().await?;
        tx.account(account)
            .await?
            .ok_or(SessionError::AccountNotFound(account))?;
        let key_id = tx
            .active_key(KeyPurpose::Lookup)
            .await?
            .ok_or(KeyUseError::NoActiveKey(KeyPurpose::Lookup))?;
        let ring = services.lookup_ring_holding(&[key_id])?;
        let link_id = hex::encode(random::<16>());
        let token = sign(&ring, key_id, &link_id).expect("the ring holds the key");
        let now = services.clock.now();
        let expires_at = now + SIGN_IN_LINK_LIFETIME;
        tx.insert_link(&NewLink {
            link_id: &link_id,
            account_id: account,
            minted_by: actor.principal(),
            minted_ms: now.timestamp_millis(),
            expires_ms: expires_at.timestamp_millis(),
        })
        .await?;
        let signer = services.signer(&mut tx).await?;
        let event = events::sign_in_link_minted(actor, account, &link_id, expires_at);
        tx.append(&signer, &event, now).await?;
        tx.commit().await?;
        Ok(SignInLink {
            account_id: account,
            url: format!(
                "{}{SIGN_IN_PATH}?token={token}",
                services.public_url.as_str()
            ),
            expires_at,
        })
    }

    /// Opens a session with a sign-in link's token: the link must be tender's own, unused and
    /// unexpired, and is used up by this. Audited.
    pub async fn sign_in(&self, token: &str) -> Result<Opened, SessionError> {
        let link_id = self.verified(token)?;
        rerun!(self.sign_in_once(&link_id))
    }

    /// The link id a token carries, once its MAC is checked; never a database read for a
    /// token tender did not make.
    fn verified(&self, token: &str) -> Result<String, SessionError> {
        if token.len() > SIGN_IN_TOKEN_MAX_CHARS {
            return Err(SessionError::LinkInvalid);
        }
        let mut parts = token.split('.');
        let (Some(key), Some(link_id), Some(mac), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(SessionError::LinkInvalid);
        };
        let key_id = key
            .parse::<u16>()
            .ok()
            .and_then(KeyId::new)
            .ok_or(SessionError::LinkInvalid)?;
        let mac = hex::decode(mac).map_err(|_| SessionError::LinkInvalid)?;
        let ring = self
            .0
            .lookup_ring_holding(&[key_id])
            .map_err(|_| SessionError::LinkInvalid)?;
        let derived = ring
            .derive(key_id, LINK_MAC_LABEL)
            .ok_or(SessionError::LinkInvalid)?;
        let mut check = Hmac::<Sha256>::new_from_slice(derived.expose())
            .expect("HMAC takes keys of any length");
        check.update(format!("{key_id}.{link_id}").as_bytes());
        // verify_slice compares in constant time.
        check
            .verify_slice(&mac)
            .map_err(|_| SessionError::LinkInvalid)?;
        Ok(link_id.to_string())
    }

    async fn sign_in_once(&self, link_id: &str) -> Result<Opened, SessionError> {
        let services = self.0;
        let mut tx = services.store.begin().await?;
        let now = services.clock.now();
        let now_ms = now.timestamp_millis();
        if !tx.use_link(link_id, now_ms).await? {
            let link = tx.link(link_id).await?.ok_or(SessionError::LinkInvalid)?;
            return Err(if link.used_ms.is_some() {
                SessionError::LinkUsed
            } else {
                SessionError::LinkExpired
            });
        }
        let link = tx.link(link_id).await?.ok_or(SessionError::LinkInvalid)?;
        let secret = random::<32>();
        let expires_at = now + SESSION_LIFETIME;
        tx.insert_session(&NewSession {
            session_hash: &Sha256::digest(secret).into(),
            account_id: link.account_id,
            link_id,
            created_ms: now_ms,
            expires_ms: expires_at.timestamp_millis(),
        })
        .await?;
        let signer = services.signer(&mut tx).await?;
        let actor = Actor::customer(link.account_id);
        let event = events::session_opened(&actor, link.account_id, link_id);
        tx.append(&signer, &event, now).await?;
        tx.commit().await?;
        Ok(Opened {
            account_id: link.account_id,
            cookie: hex::encode(secret),
            expires_at,
        })
    }

    /// The live session `cookie` names, with its account and, once, its notice.
    pub async fn current(&self, cookie: &str) -> Result<Current, SessionError> {
        let hash = session_hash(cookie)?;
        let services = self.0;
        let (session, account) = {
            let mut tx = services.store.read().await?;
            let session = tx.session(&hash).await?.ok_or(SessionError::NoSession)?;
            let account = tx
                .account(session.account_id)
                .await?
                .ok_or(SessionError::AccountNotFound(session.account_id))?;
            (session, account)
        };
        let now_ms = services.clock.now().timestamp_millis();
        if session.ended_ms.is_some() {
            return Err(SessionError::SessionEnded);
        }
        if session.expires_ms <= now_ms {
            return Err(SessionError::SessionExpired);
        }
        if session.notice.is_some() {
            // Shown once: cleared now, in a write only a page with something to show pays.
            rerun!(async {
                let mut tx = services.store.begin_unflushed().await?;
                tx.set_notice(&hash, None).await?;
                tx.commit().await
            })?;
        }
        Ok(Current {
            account,
            csrf: csrf_token(cookie),
            notice: session.notice,
            expires_at: DateTime::from_timestamp_millis(session.expires_ms)
                .ok_or(StoreError::corrupt("a session's expiry"))?,
        })
    }

    /// The live session, for a form: the form's `csrf` must be the session's token.
    pub async fn for_form(&self, cookie: &str, csrf: &str) -> Result<Current, SessionError> {
        let expected = csrf_token(cookie);
        if !bool::from(expected.as_bytes().ct_eq(csrf.as_bytes())) {
            return Err(SessionError::Csrf);
        }
        let mut current = self.current(cookie).await?;
        // A notice the form's own outcome replaces is not lost: it was never shown.
        current.notice = None;
        Ok(current)
    }

    /// Keeps `notice` for the page the form redirects to. A session that ended meanwhile
    /// keeps nothing.
    pub async fn leave_notice(&self, cookie: &str, notice: &str) -> Result<(), SessionError> {
        let hash = session_hash(cookie)?;
        rerun!(async {
            let mut tx = self.0.store.begin_unflushed().await?;
            tx.set_notice(&hash, Some(notice)).await?;
            tx.commit().await
        })?;
        Ok(())
    }

    /// Ends the session now (sign-out). Audited; ending one that already ended does nothing.
    pub async fn sign_out(&self, cookie: &str) -> Result<(), SessionError> {
        let hash = session_hash(cookie)?;
        rerun!(async {
            let services = self.0;
            let mut tx = services.store.begin().await?;
            let now = services.clock.now();
            let Some(session) = tx.session(&hash).await? else {
                return Ok(());
            };
            if tx.end_session(&hash, now.timestamp_millis()).await? {
                let signer = services.signer(&mut tx).await?;
                let actor = Actor::customer(session.account_id);
                let event = events::session_ended(&actor, session.account_id);
                tx.append(&signer, &event, now).await?;
                tx.commit().await?;
            }
            Ok::<_, SessionError>(())
        })
    }
}

impl<S: Store> Sessions<'_, S> {
    /// Deletes links and sessions that stopped working more than [`SIGN_IN_KEEP`] before
    /// `as_of`, [`PURGE_BATCH_ROWS`] of each per transaction; how many rows went.
    pub async fn purge(&self, as_of: DateTime<Utc>) -> Result<u64, SessionError> {
        let before_ms = (as_of - SIGN_IN_KEEP).timestamp_millis();
        let mut purged = 0;
        loop {
            let batch = rerun!(async {
                let mut tx = self.0.store.begin().await?;
                let batch = tx.purge_web(before_ms, PURGE_BATCH_ROWS).await?;
                tx.commit().await?;
                Ok::<_, SessionError>(batch)
            })?;
            purged += batch;
            if batch == 0 {
                return Ok(purged);
            }
        }
    }
}

/// `N` bytes from the operating system's random source.
fn random<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    OsRng
        .try_fill_bytes(&mut bytes)
        .expect("the operating system's random source failed");
    bytes
}

/// The token `K.ID.MAC` for link `link_id` under lookup key `key_id`; `None` if the ring lacks
/// the key.
pub fn sign(ring: &KeyRing, key_id: KeyId, link_id: &str) -> Option<String> {
    let derived = ring.derive(key_id, LINK_MAC_LABEL)?;
    let mut mac =
        Hmac::<Sha256>::new_from_slice(derived.expose()).expect("HMAC takes keys of any length");
    let signed = format!("{key_id}.{link_id}");
    mac.update(signed.as_bytes());
    Some(format!(
        "{signed}.{}",
        hex::encode(mac.finalize().into_bytes())
    ))
}

/// The SHA-256 a session cookie is stored as; a cookie that is not 64 hex digits names none.
fn session_hash(cookie: &str) -> Result<[u8; 32], SessionError> {
    if cookie.len() != SESSION_COOKIE_MAX_CHARS {
        return Err(SessionError::NoSession);
    }
    let secret = hex::decode(cookie).map_err(|_| SessionError::NoSession)?;
    Ok(Sha256::digest(secret).into())
}

/// The token a session's forms carry: SHA-256 of a label and the session's secret. Another
/// site cannot read it (it is only in the session's own pages) nor make it (the secret is in
/// an HttpOnly cookie), and it shows nothing of the cookie it is made from.
pub fn csrf_token(cookie: &str) -> String {
    let mut digest = Sha256::new();
    digest.update(b"tender csrf v1\0");
    digest.update(cookie.as_bytes());
    hex::encode(digest.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::SecretKey;

    #[test]
    fn a_token_is_bound_to_its_key_and_link() {
        let id = KeyId::new(1).unwrap();
        let ring = KeyRing::single(KeyPurpose::Lookup, id, SecretKey::generate());
        let token = sign(&ring, id, "00ff").unwrap();
        assert!(token.starts_with("1.00ff."));
        assert_ne!(token, sign(&ring, id, "00fe").unwrap());
        let other = KeyRing::single(KeyPurpose::Lookup, id, SecretKey::generate());
        assert_ne!(token, sign(&other, id, "00ff").unwrap());
        assert!(sign(&ring, KeyId::new(2).unwrap(), "00ff").is_none());
    }

    #[test]
    fn only_a_64_digit_cookie_names_a_session() {
        assert!(session_hash(&"ab".repeat(32)).is_ok());
        assert!(session_hash(&"ab".repeat(31)).is_err());
        assert!(session_hash(&"zz".repeat(32)).is_err());
        assert_ne!(csrf_token("a"), csrf_token("b"));
        assert_eq!(csrf_token("a").len(), 64);
    }
}
