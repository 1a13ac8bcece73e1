//! Idempotency of the HTTP API's value-moving requests: a client sends an `Idempotency-Key`
//! with each, and a retry under the same key gets the first answer instead of running again.
//!
//! Records are keyed by the calling API key's public id and the idempotency key, so two
//! clients' equal keys never meet. Each holds a fingerprint of the request: HMAC-SHA256 of its
//! method, path and body under a key derived from a lookup key under [`IDEMPOTENCY_MAC_LABEL`]
//! (for this use alone; the lookup ring, as for API keys, because every process that serves
//! the API loads it and its rotation keeps old ids; each record names the key id it used).
//! The body itself is never stored: it may hold a gift card code.
//!
//! The rules, applied by [`Idempotency::claim`] in one transaction:
//! - no record: an in-flight claim is inserted and the request runs;
//! - another fingerprint: `idempotency.key_reused` (422), whatever the record's state;
//! - done: the stored status and body are the answer;
//! - in flight, started less than the request timeout ago: `idempotency.in_flight` (409);
//! - in flight and older: the request that made it was abandoned (the API drops a request at
//!   its timeout, and its transaction rolls back), so this one takes the claim over, by one
//!   update guarded by the old claim's token: of two takers, one wins and the other meets a
//!   fresh claim.
//!
//! What is kept ([`keeps`]): answers the operation decided, a success (2xx) or a refusal of the
//! request on its merits (404, 409, 422), replayed from then on as they were. Everything else
//! is released, the claim deleted, so the retry runs afresh: a malformed request (400, 413,
//! 415: the client fixes it and retries under the same key), a key that does not authenticate
//! or may not call the route (401, 403: nothing ran), a full guessing window (429: the retry
//! after `Retry-After` must be judged anew, not replay the refusal), a failure (5xx, a timeout).
//!
//! If storing the answer fails after the operation committed, the claim stays in flight until
//! the timeout and a retry then runs the operation again: the operation's natural key (the
//! redemption's idempotency key, the POS transaction id, the order and refund ids) answers it
//! as a retry. Natural keys keep working underneath forever; these records are purged after at
//! least [`PURGE_AGE_MIN_DAYS`] days. Servers sharing a database compare claim ages with their
//! own clocks, so skew between them shortens or lengthens the in-flight bound by as much.

use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::Services;
use super::keys::KeyUseError;
use crate::codegen::CodeDigest;
use crate::error::{Classify, Kind};
use crate::keys::{KeyId, KeyPurpose, KeyRing};
use crate::store::idempotency::{IdemRecord, NewIdemClaim, StoredAnswer};
use crate::store::{IdempotencyRepo, KeyRepo, Store, StoreError, Tx};

/// The label the fingerprint's MAC key is derived from a lookup key under.
pub const IDEMPOTENCY_MAC_LABEL: &[u8] = b"tender idempotency v1";
/// The longest idempotency key: the redemption service's own limit, so every key the API
/// accepts is one the redemption takes as its natural key too.
pub const IDEMPOTENCY_KEY_MAX_CHARS: usize = super::redemption::IDEMPOTENCY_KEY_MAX_CHARS;
/// The youngest records a purge may remove: keys are kept at least 30 days (issue 12), longer
/// than any client retries a request.
pub const PURGE_AGE_MIN_DAYS: i64 = 30;
/// The oldest age a purge takes: ten years, beyond any retention, so a slip of unit or digits
/// is refused rather than read as "nothing".
pub const PURGE_AGE_MAX_DAYS: i64 = 3_650;
/// Records one purge transaction deletes: small enough that no transaction holds the table
/// (or SQLite's one write lock) for long while the API serves.
pub const PURGE_BATCH_ROWS: u32 = 1_000;

/// Why a request could not claim its key, or a purge was refused.
#[derive(Debug, thiserror::Error)]
pub enum IdempotencyError {
    /// The key is empty, too long, or not printable ASCII.
    #[error(
        "an Idempotency-Key is 1 to {IDEMPOTENCY_KEY_MAX_CHARS} printable ASCII characters without spaces"
    )]
    BadKey,
    /// The key was used before, by this client, for another request.
    #[error(
        "this Idempotency-Key was used for a different request (another method, path or body); use a new key for a new request"
    )]
    KeyReused,
    /// The first request under this key is still running.
    #[error("a request with this Idempotency-Key is still in flight; retry once it has finished")]
    InFlight,
    /// The purge age is not a number of days or hours, or is out of range.
    #[error(
        "a purge age is a number and d (days) or h (hours), from {PURGE_AGE_MIN_DAYS}d to {PURGE_AGE_MAX_DAYS}d; idempotency keys are kept at least {PURGE_AGE_MIN_DAYS} days"
    )]
    BadAge,
    /// The lookup key could not be had.
    #[error(transparent)]
    Keys(#[from] KeyUseError),
    /// Storage failed.
    #[error(transparent)]
    Storage(#[from] StoreError),
}

impl Classify for IdempotencyError {
    fn code(&self) -> &'static str {
        match self {
            IdempotencyError::BadKey => "idempotency.bad_key",
            IdempotencyError::KeyReused => "idempotency.key_reused",
            IdempotencyError::InFlight => "idempotency.in_flight",
            IdempotencyError::BadAge => "idempotency.bad_age",
            IdempotencyError::Keys(e) => e.code(),
            IdempotencyError::Storage(e) => e.code(),
        }
    }

    fn kind(&self) -> Kind {
        match self {
            IdempotencyError::BadKey | IdempotencyError::KeyReused | IdempotencyError::BadAge => {
                Kind::Invalid
            }
            IdempotencyError::InFlight => Kind::Conflict,
            IdempotencyError::Keys(e) => e.kind(),
            IdempotencyError::Storage(e) => e.kind(),
        }
    }
}

/// A request as its fingerprint sees it, under its client's key.
#[derive(Debug, Clone, Copy)]
pub struct IdemRequest<'a> {
    /// The calling API key's public id.
    pub client_key_id: &'a str,
    /// The Idempotency-Key.
    pub idem_key: &'a str,
    /// `POST`.
    pub method: &'a str,
    /// The path and query as sent.
    pub path: &'a str,
    /// The body's bytes.
    pub body: &'a [u8],
}

/// A claim this request holds: it runs, then [`Idempotency::complete`]s or
/// [`Idempotency::release`]s it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ticket {
    client_key_id: String,
    idem_key: String,
    token: String,
}

/// What a claim found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claimed {
    /// The key is this request's: run it.
    Run(Ticket),
    /// The key's request ran before: its answer.
    Replay(StoredAnswer),
}

/// Whether an answer of `status` is kept for replay (see the module's rules).
pub fn keeps(status: u16) -> bool {
    (200..300).contains(&status) || matches!(status, 404 | 409 | 422)
}

/// Parses an idempotency key: 1 to [`IDEMPOTENCY_KEY_MAX_CHARS`] printable ASCII characters.
pub fn parse_key(text: &str) -> Result<&str, IdempotencyError> {
    let ok = (1..=IDEMPOTENCY_KEY_MAX_CHARS).contains(&text.len())
        && text.bytes().all(|b| b.is_ascii_graphic());
    ok.then_some(text).ok_or(IdempotencyError::BadKey)
}

/// A purge's age bound, `<n>d` or `<n>h`, at least [`PURGE_AGE_MIN_DAYS`] days.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PurgeAge(chrono::TimeDelta);

impl PurgeAge {
    /// Parses `30d`, `720h`, …
    pub fn parse(text: &str) -> Result<PurgeAge, IdempotencyError> {
        let (number, hours) = match text.as_bytes().last() {
            Some(b'd') => (&text[..text.len() - 1], 24),
            Some(b'h') => (&text[..text.len() - 1], 1),
            _ => return Err(IdempotencyError::BadAge),
        };
        // Digits only: no sign, no space, no `+`.
        if number.is_empty() || number.len() > 9 || !number.bytes().all(|b| b.is_ascii_digit()) {
            return Err(IdempotencyError::BadAge);
        }
        let hours: i64 = number
            .parse::<i64>()
            .map_err(|_| IdempotencyError::BadAge)?
            * hours;
        if !(PURGE_AGE_MIN_DAYS * 24..=PURGE_AGE_MAX_DAYS * 24).contains(&hours) {
            return Err(IdempotencyError::BadAge);
        }
        Ok(PurgeAge(chrono::TimeDelta::hours(hours)))
    }

    /// The bound.
    pub fn get(self) -> chrono::TimeDelta {
        self.0
    }
}

/// The fingerprint of `request` under lookup key `id` of `ring`: each part length-prefixed, so
/// no two requests' parts run together into one. `None` if the ring lacks `id`.
pub fn fingerprint(ring: &KeyRing, id: KeyId, request: &IdemRequest<'_>) -> Option<CodeDigest> {
    let derived = ring.derive(id, IDEMPOTENCY_MAC_LABEL)?;
    let mut mac =
        Hmac::<Sha256>::new_from_slice(derived.expose()).expect("HMAC takes keys of any length");
    for part in [
        request.method.as_bytes(),
        request.path.as_bytes(),
        request.body,
    ] {
        mac.update(&(part.len() as u64).to_be_bytes());
        mac.update(part);
    }
    Some(CodeDigest(mac.finalize().into_bytes().into()))
}

/// What the rules decide about an existing record, for a request with the fingerprint the
/// record's key gives it, at `now_ms`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Judged {
    Reused,
    Replay(StoredAnswer),
    InFlight,
    TakeOver,
}

fn judge(record: &IdemRecord, same_request: bool, now_ms: i64, in_flight_for: Duration) -> Judged {
    if !same_request {
        return Judged::Reused;
    }
    let bound_ms = i64::try_from(in_flight_for.as_millis()).unwrap_or(i64::MAX);
    match &record.answer {
        Some(answer) => Judged::Replay(answer.clone()),
        None if now_ms - record.started_ms < bound_ms => Judged::InFlight,
        None => Judged::TakeOver,
    }
}

/// Idempotency use cases.
#[derive(Debug)]
pub struct Idempotency<'a, S>(pub(super) &'a Services<S>);

impl<S: Store> Idempotency<'_, S> {
    /// Claims `request`'s key for it, or says why not: see the module's rules. A claim in
    /// flight for `in_flight_for` or longer is taken over.
    pub async fn claim(
        &self,
        request: &IdemRequest<'_>,
        in_flight_for: Duration,
    ) -> Result<Claimed, IdempotencyError> {
        parse_key(request.idem_key)?;
        rerun!(self.claim_once(request, in_flight_for))
    }

    async fn claim_once(
        &self,
        request: &IdemRequest<'_>,
        in_flight_for: Duration,
    ) -> Result<Claimed, IdempotencyError> {
        let services = self.0;
        let mut tx = services.store.begin().await?;
        let now_ms = services.clock.now().timestamp_millis();
        let token = ulid::Ulid::generate().to_string();
        let ticket = Ticket {
            client_key_id: request.client_key_id.to_string(),
            idem_key: request.idem_key.to_string(),
            token: token.clone(),
        };
        let Some(record) = tx
            .idem_record(request.client_key_id, request.idem_key)
            .await?
        else {
            let mac_key_id = tx
                .active_key(KeyPurpose::Lookup)
                .await?
                .ok_or(KeyUseError::NoActiveKey(KeyPurpose::Lookup))?;
            let ring = services.lookup_ring_holding(&[mac_key_id])?;
            let print = fingerprint(&ring, mac_key_id, request).expect("the ring holds the key");
            let new = NewIdemClaim {
                client_key_id: request.client_key_id,
                idem_key: request.idem_key,
                mac_key_id,
                fingerprint: &print,
                claim_token: &token,
                now_ms,
            };
            if !tx.insert_idem_claim(&new).await? {
                // Another request claimed the key since the read: run again, and judge its
                // record.
                return Err(StoreError::Moved("an idempotency record").into());
            }
            tx.commit().await?;
            return Ok(Claimed::Run(ticket));
        };
        let ring = services.lookup_ring_holding(&[record.mac_key_id])?;
        let print = fingerprint(&ring, record.mac_key_id, request).expect("the ring holds the key");
        match judge(
            &record,
            print.ct_eq(&record.fingerprint),
            now_ms,
            in_flight_for,
        ) {
            Judged::Reused => Err(IdempotencyError::KeyReused),
            Judged::InFlight => Err(IdempotencyError::InFlight),
            Judged::Replay(answer) => Ok(Claimed::Replay(answer)),
            Judged::TakeOver => {
                let taken = tx
                    .take_over_idem_claim(
                        request.client_key_id,
                        request.idem_key,
                        &record.claim_token,
                        &token,
                        now_ms,
                    )
                    .await?;
                if !taken {
                    // Another request took it over, completed or released it first.
                    return Err(StoreError::Moved("an idempotency record").into());
                }
                tx.commit().await?;
                tracing::info!("took over an idempotency claim abandoned in flight");
                Ok(Claimed::Run(ticket))
            }
        }
    }

    /// Stores `answer` as the claim's, for replay; `false` when the claim was no longer this
    /// request's (taken over after the timeout).
    pub async fn complete(
        &self,
        ticket: &Ticket,
        answer: &StoredAnswer,
    ) -> Result<bool, IdempotencyError> {
        rerun!(async {
            let mut tx = self.0.store.begin().await?;
            let held = tx
                .complete_idem_claim(
                    &ticket.client_key_id,
                    &ticket.idem_key,
                    &ticket.token,
                    answer,
                )
                .await?;
            tx.commit().await?;
            Ok::<_, IdempotencyError>(held)
        })
    }

    /// Deletes the claim, so a retry under the key runs afresh; `false` when it was no longer
    /// this request's.
    pub async fn release(&self, ticket: &Ticket) -> Result<bool, IdempotencyError> {
        rerun!(async {
            let mut tx = self.0.store.begin().await?;
            let held = tx
                .release_idem_claim(&ticket.client_key_id, &ticket.idem_key, &ticket.token)
                .await?;
            tx.commit().await?;
            Ok::<_, IdempotencyError>(held)
        })
    }

    /// Deletes every record created more than `age` ago, [`PURGE_BATCH_ROWS`] per
    /// transaction; how many.
    pub async fn purge(&self, age: PurgeAge) -> Result<u64, IdempotencyError> {
        let before_ms = (self.0.clock.now() - age.get()).timestamp_millis();
        let mut purged = 0;
        loop {
            let batch = rerun!(async {
                let mut tx = self.0.store.begin().await?;
                let batch = tx.purge_idem_records(before_ms, PURGE_BATCH_ROWS).await?;
                tx.commit().await?;
                Ok::<_, IdempotencyError>(batch)
            })?;
            purged += batch;
            if batch < u64::from(PURGE_BATCH_ROWS) {
                return Ok(purged);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::SecretKey;

    fn ring() -> KeyRing {
        KeyRing::single(
            KeyPurpose::Lookup,
            KeyId::new(1).unwrap(),
            SecretKey::generate(),
        )
    }

    fn request<'a>(path: &'a str, body: &'a [u8]) -> IdemRequest<'a> {
        IdemRequest {
            client_key_id: "client",
            idem_key: "k-1",
            method: "POST",
            path,
            body,
        }
    }

    #[test]
    fn the_fingerprint_covers_method_path_and_body_and_nothing_runs_together() {
        let ring = ring();
        let id = KeyId::new(1).unwrap();
        let print = |r: &IdemRequest<'_>| fingerprint(&ring, id, r).unwrap().0;
        let base = request("/v1/accounts/1/redemptions", b"{\"code\":\"1\"}");
        assert_eq!(print(&base), print(&base));
        assert_ne!(
            print(&base),
            print(&request("/v1/accounts/2/redemptions", base.body))
        );
        assert_ne!(
            print(&base),
            print(&request(base.path, b"{\"code\":\"2\"}"))
        );
        assert_ne!(
            print(&base),
            print(&IdemRequest {
                method: "PUT",
                ..base
            })
        );
        // A byte moved from the path to the body is another request.
        assert_ne!(print(&request("/a", b"bc")), print(&request("/ab", b"c")));
        // The key is part of it: another ring, another fingerprint.
        assert_ne!(
            print(&base),
            fingerprint(&self::ring(), id, &base).unwrap().0
        );
        assert!(fingerprint(&ring, KeyId::new(2).unwrap(), &base).is_none());
    }

    #[test]
    fn the_fingerprint_is_under_a_key_of_its_own() {
        let ring = ring();
        let id = KeyId::new(1).unwrap();
        let derived = ring.derive(id, IDEMPOTENCY_MAC_LABEL).unwrap();
        assert_ne!(derived.expose(), ring.get(id).unwrap().expose());
        assert_ne!(
            derived.expose(),
            ring.derive(id, super::super::api_keys::API_KEY_MAC_LABEL)
                .unwrap()
                .expose()
        );
    }

    fn record(answer: Option<StoredAnswer>, started_ms: i64) -> IdemRecord {
        IdemRecord {
            mac_key_id: KeyId::new(1).unwrap(),
            fingerprint: CodeDigest([0; 32]),
            claim_token: "t".into(),
            answer,
            created_ms: 0,
            started_ms,
        }
    }

    #[test]
    fn the_rules_judge_a_record() {
        let bound = Duration::from_secs(15);
        let done = StoredAnswer {
            status: 201,
            body: "{}".into(),
        };
        let finished = record(Some(done.clone()), 0);
        assert_eq!(judge(&finished, true, 1, bound), Judged::Replay(done));
        // Another body is refused whatever the state.
        assert_eq!(judge(&finished, false, 1, bound), Judged::Reused);
        let running = record(None, 1_000);
        assert_eq!(judge(&running, false, 1_001, bound), Judged::Reused);
        assert_eq!(judge(&running, true, 1_000, bound), Judged::InFlight);
        assert_eq!(judge(&running, true, 15_999, bound), Judged::InFlight);
        assert_eq!(judge(&running, true, 16_000, bound), Judged::TakeOver);
    }

    #[test]
    fn only_decided_answers_are_kept() {
        for kept in [200, 201, 204, 404, 409, 422] {
            assert!(keeps(kept), "{kept}");
        }
        for released in [400, 401, 403, 405, 408, 413, 415, 429, 500, 502, 503, 504] {
            assert!(!keeps(released), "{released}");
        }
    }

    #[test]
    fn keys_are_printable_ascii_within_the_limit() {
        assert!(parse_key("R-9").is_ok());
        assert!(parse_key(&"k".repeat(IDEMPOTENCY_KEY_MAX_CHARS)).is_ok());
        for bad in [
            String::new(),
            "k".repeat(IDEMPOTENCY_KEY_MAX_CHARS + 1),
            "a b".into(),
            "a\tb".into(),
            "clé".into(),
        ] {
            assert!(parse_key(&bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_purge_keeps_thirty_days_at_least() {
        assert_eq!(
            PurgeAge::parse("30d").unwrap().get(),
            chrono::TimeDelta::days(30)
        );
        assert_eq!(
            PurgeAge::parse("720h").unwrap().get(),
            chrono::TimeDelta::days(30)
        );
        for bad in [
            "7d", "29d", "719h", "3651d", "30", "d", "-30d", "+30d", " 30d", "30 d", "30m",
        ] {
            assert!(PurgeAge::parse(bad).is_err(), "{bad}");
        }
    }
}
