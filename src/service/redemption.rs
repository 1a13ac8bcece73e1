//! Redeeming a code into an account balance, guarded against guessing and races.
//!
//! An attempt runs in three steps:
//!
//! 1. The code is parsed (a malformed one is refused as `redeem.invalid_format`: nothing is
//!    written, nothing counted). A retry under an idempotency key the caller already used for a
//!    success is answered here, from the redemption it recorded, without a slot.
//! 2. The attempt takes a slot in the account's and the caller's hourly and daily windows by
//!    conditional increments committed in their own transaction, before the code is looked up,
//!    so parallel attempts never evaluate more codes than the limits allow. While any window is
//!    full the attempt is refused `redeem.rate_limited` with the time to retry, a valid code
//!    too.
//! 3. The code's digests find the card; one guarded update moves it from active to redeemed
//!    (comparing its funds-expiry with the clock, so an expired card never redeems before the
//!    expiry job marks it), committed with the credit of its whole value to the account, the
//!    redemption record (the caller's idempotency record too), the card's history line, one
//!    audit record, and the slot given back: a success does not count against the limits.
//!
//! A refusal keeps its slot and writes one line to the attempt log that support reads (not the
//! audit chains); a code tried on a card that was never sold (or was voided) also marks the
//! card exposed, audited, so a live sale of it is refused. No record, log line or error ever
//! holds the code or its digest.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::Services;
use super::keys::KeyUseError;
use crate::audit::events;
use crate::codegen::CodeDigest;
use crate::domain::{
    AccountId, Actor, Amount, CardAction, CardState, Code, CodeError, Currency, LedgerAccount,
    LedgerValueError, Money, PageRows, Posting, Region, Serial, SerialError, TransferId,
    TransferKind,
};
use crate::error::{Classify, Kind};
use crate::keys::KeyId;
use crate::store::pos::CardEventRow;
use crate::store::redeem::{AttemptRow, CardMatch, RedemptionRow, Window};
use crate::store::{
    AuditRepo, LedgerRepo, PosRepo, RedeemRepo, Store, StoreError, StoreResult, Tx,
};

/// The longest idempotency key: Square's cap, enough for a UUID and a prefix.
pub const IDEMPOTENCY_KEY_MAX_CHARS: usize = 128;
/// Most lines of the attempt log one listing shows.
pub const ATTEMPT_ROWS_MAX: u64 = 1_000;
/// The reason code a card's exposure records when its code was tried before it was sold.
pub const EXPOSED_BY_REDEMPTION: &str = "tried_before_sale";

const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 86_400_000;

/// Why a redemption was refused or failed. Messages never hold the code, and never name the
/// card a code matched: that would confirm to a guesser that the code is real.
#[derive(Debug, thiserror::Error)]
pub enum RedeemError {
    /// The text is not a well-formed code.
    #[error("{0}")]
    InvalidFormat(CodeError),
    /// The account id was refused.
    #[error(transparent)]
    Invalid(#[from] LedgerValueError),
    /// A serial given to the attempt log was refused.
    #[error(transparent)]
    Serial(#[from] SerialError),
    /// The idempotency key is empty, too long, or not printable ASCII.
    #[error(
        "an idempotency key is 1 to {IDEMPOTENCY_KEY_MAX_CHARS} printable ASCII characters without spaces"
    )]
    BadKey,
    /// No such account.
    #[error("there is no account {0}")]
    AccountNotFound(AccountId),
    /// No card has this code.
    #[error("no gift card has this code; check it and try again")]
    NotFound,
    /// The card was never sold, or its sale was voided.
    #[error("this card has not been activated; take it back to the store that sold it")]
    NotActivated(Serial),
    /// Another account redeemed the card.
    #[error("this card has already been redeemed")]
    AlreadyRedeemed(Serial),
    /// The card's funds expired.
    #[error("this card has expired")]
    Expired(Serial),
    /// The card is blocked.
    #[error("this card is blocked; contact support")]
    Blocked(Serial),
    /// The card is for another storefront than the account's.
    #[error("this card is for the {card} store; the account is in the {account} store")]
    RegionMismatch {
        /// The card.
        serial: Serial,
        /// The card's storefront.
        card: Region,
        /// The account's.
        account: Region,
    },
    /// The card carries another currency than the account holds.
    #[error("this card carries {card}; the account holds {account}")]
    CurrencyMismatch {
        /// The card.
        serial: Serial,
        /// The card's currency.
        card: Currency,
        /// The account's.
        account: Currency,
    },
    /// The account is frozen.
    #[error("account {0} is frozen: it can neither receive nor spend")]
    AccountFrozen(AccountId),
    /// Too many attempts in a window.
    #[error(
        "too many redemption attempts; try again after {retry_at} (in {retry_after_secs} seconds)"
    )]
    RateLimited {
        /// When the window that refused ends.
        retry_at: DateTime<Utc>,
        /// Seconds until then.
        retry_after_secs: i64,
    },
    /// The idempotency key was used for another code, or by another account.
    #[error("this idempotency key was already used for another redemption")]
    KeyConflict,
    /// The lookup or audit key could not be had.
    #[error(transparent)]
    Keys(#[from] KeyUseError),
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl RedeemError {
    /// The card a refusal is about, for the attempt log; `None` when no card matched.
    fn serial(&self) -> Option<Serial> {
        match self {
            RedeemError::NotActivated(s)
            | RedeemError::AlreadyRedeemed(s)
            | RedeemError::Expired(s)
            | RedeemError::Blocked(s) => Some(*s),
            RedeemError::RegionMismatch { serial, .. }
            | RedeemError::CurrencyMismatch { serial, .. } => Some(*serial),
            _ => None,
        }
    }

    /// Whether the attempt log records it: every refusal of a well-formed code; never a
    /// malformed input, nor a failure of ours.
    fn logged(&self) -> bool {
        !matches!(
            self,
            RedeemError::InvalidFormat(_)
                | RedeemError::Invalid(_)
                | RedeemError::Serial(_)
                | RedeemError::BadKey
                | RedeemError::AccountNotFound(_)
                | RedeemError::Keys(_)
                | RedeemError::Store(_)
        )
    }
}

impl Classify for RedeemError {
    fn code(&self) -> &'static str {
        match self {
            RedeemError::InvalidFormat(_) => "redeem.invalid_format",
            RedeemError::Invalid(e) => e.code(),
            RedeemError::Serial(e) => e.code(),
            RedeemError::BadKey => "redeem.bad_key",
            RedeemError::AccountNotFound(_) => "account.not_found",
            RedeemError::NotFound => "redeem.not_found",
            RedeemError::NotActivated(_) => "redeem.not_activated",
            RedeemError::AlreadyRedeemed(_) => "redeem.already_redeemed",
            RedeemError::Expired(_) => "redeem.expired",
            RedeemError::Blocked(_) => "redeem.blocked",
            RedeemError::RegionMismatch { .. } => "redeem.region_mismatch",
            RedeemError::CurrencyMismatch { .. } => "redeem.currency_mismatch",
            RedeemError::AccountFrozen(_) => "redeem.account_frozen",
            RedeemError::RateLimited { .. } => "redeem.rate_limited",
            RedeemError::KeyConflict => "redeem.key_conflict",
            RedeemError::Keys(e) => e.code(),
            RedeemError::Store(e) => e.code(),
        }
    }

    fn kind(&self) -> Kind {
        match self {
            RedeemError::InvalidFormat(_)
            | RedeemError::Invalid(_)
            | RedeemError::Serial(_)
            | RedeemError::BadKey => Kind::Invalid,
            RedeemError::AccountNotFound(_) | RedeemError::NotFound => Kind::NotFound,
            RedeemError::Keys(e) => e.kind(),
            RedeemError::Store(e) => e.kind(),
            // Never transient, a rate limit included: running it again at once cannot help.
            _ => Kind::Conflict,
        }
    }
}

/// What a redemption did: the card's whole value credited to the account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Redeemed {
    /// The card, masked but for its last 4 digits.
    pub card: String,
    /// The account credited.
    pub account_id: AccountId,
    /// What was credited.
    pub amount: Money,
    /// The transfer.
    pub transfer_id: TransferId,
    /// The account's balance right after it.
    pub balance_after: Money,
    /// Whether this answers a retry: the first success, nothing new written.
    pub replayed: bool,
}

/// Redemption use cases.
#[derive(Debug)]
pub struct Redemption<'a, S>(pub(super) &'a Services<S>);

/// One attempt, parsed.
struct Attempt {
    account: AccountId,
    code: Code,
    key: Option<String>,
    caller: String,
}

impl<S: Store> Redemption<'_, S> {
    /// Redeems the card whose code is `code` into `account`, for `caller` (the authenticated
    /// caller: its principal scopes the idempotency key and its own limits). `idempotency_key`
    /// makes a retry answer with the first success.
    pub async fn redeem(
        &self,
        account: &str,
        code: &str,
        idempotency_key: Option<&str>,
        caller: &Actor,
    ) -> Result<Redeemed, RedeemError> {
        let account = AccountId::parse(account)?;
        let key = idempotency_key.map(parse_key).transpose()?;
        let code = Code::parse(code).map_err(RedeemError::InvalidFormat)?;
        let attempt = Attempt {
            account,
            code,
            key,
            caller: caller.principal().to_string(),
        };
        let outcome = self.attempt(&attempt, caller).await;
        if let Err(error) = &outcome
            && error.logged()
        {
            rerun!(self.record_refusal(&attempt, error, caller))?;
        }
        outcome
    }

    async fn attempt(&self, attempt: &Attempt, actor: &Actor) -> Result<Redeemed, RedeemError> {
        if let Some(replayed) = rerun!(self.precheck(attempt))? {
            return Ok(replayed);
        }
        let now = self.0.clock.now();
        let windows = self.windows(attempt, now);
        if let Some(retry_at) = rerun!(self.take_slots(&windows))? {
            // A copy of this attempt under the same key may have succeeded since the pre-check:
            // its answer is owed, never a refusal.
            if attempt.key.is_some()
                && let Some(replayed) = rerun!(self.precheck(attempt))?
            {
                return Ok(replayed);
            }
            return Err(RedeemError::RateLimited {
                retry_at,
                retry_after_secs: (retry_at - now).num_seconds().max(1),
            });
        }
        rerun!(self.redeem_once(attempt, &windows, actor))
    }

    /// Before any slot: the account must exist and not be frozen (no code is evaluated to say
    /// so), and a retry under a key already used for a success is answered from its record.
    async fn precheck(&self, attempt: &Attempt) -> Result<Option<Redeemed>, RedeemError> {
        let services = self.0;
        let mut tx = services.store.read().await?;
        let account = tx
            .account(attempt.account)
            .await?
            .ok_or(RedeemError::AccountNotFound(attempt.account))?;
        if account.frozen_reason.is_some() {
            return Err(RedeemError::AccountFrozen(attempt.account));
        }
        let Some(key) = &attempt.key else {
            return Ok(None);
        };
        let Some(first) = tx.redemption_by_key(&attempt.caller, key).await? else {
            return Ok(None);
        };
        if first.account_id != attempt.account {
            return Err(RedeemError::KeyConflict);
        }
        // Compared with the one card the key redeemed: this tells nothing of any other code.
        let digests = services.lookup_digests(&mut tx, &attempt.code).await?;
        let cards = tx.cards_by_digest(&digests).await?;
        match matching(&cards, &digests) {
            Some(card) if card.serial == first.serial => Ok(Some(replay(&mut tx, &first).await?)),
            _ => Err(RedeemError::KeyConflict),
        }
    }

    /// The windows an attempt counts in, with their limits: the account's and the caller's,
    /// hourly and daily, always in this order (so concurrent transactions lock them alike).
    fn windows(&self, attempt: &Attempt, now: DateTime<Utc>) -> Vec<(Window, u32)> {
        let limits = self.0.redeem_limits;
        let now_ms = now.timestamp_millis();
        let window = |subject: &str, span_ms: i64| Window {
            subject: subject.to_string(),
            span_ms,
            start_ms: now_ms - now_ms.rem_euclid(span_ms),
        };
        let account = format!("account:{}", attempt.account);
        let caller = format!("caller:{}", attempt.caller);
        vec![
            (window(&account, HOUR_MS), limits.account.hour),
            (window(&account, DAY_MS), limits.account.day),
            (window(&caller, HOUR_MS), limits.caller.hour),
            (window(&caller, DAY_MS), limits.caller.day),
        ]
    }

    /// Takes a slot in every window, committed on its own; `Some(retry at)` (nothing taken)
    /// when a window is full.
    async fn take_slots(
        &self,
        windows: &[(Window, u32)],
    ) -> Result<Option<DateTime<Utc>>, RedeemError> {
        let mut tx = self.0.store.begin().await?;
        let now_ms = self.0.clock.now().timestamp_millis();
        let mut retry_ms = None;
        for (window, limit) in windows {
            let Some(used) = tx.take_slot(window, *limit).await? else {
                let ends = window.start_ms + window.span_ms;
                retry_ms = retry_ms.max(Some(ends));
                if window.subject.starts_with("caller:") {
                    // The failure-rate alarm: a caller serving many customers is throttled,
                    // and someone should look at why.
                    tracing::warn!(
                        subject = %window.subject,
                        span_ms = window.span_ms,
                        "redemption caller throttled"
                    );
                }
                continue;
            };
            if used == 1 && window.span_ms == DAY_MS {
                // A subject's first attempt of a day: its windows that have ended count nothing
                // any more, so they go (once a day per subject, not on every attempt).
                tx.prune_windows(&window.subject, now_ms).await?;
            }
        }
        if let Some(ms) = retry_ms {
            // Dropped: the slots taken before the full window roll back.
            return Ok(Some(
                DateTime::from_timestamp_millis(ms).ok_or(StoreError::corrupt("a window end"))?,
            ));
        }
        tx.commit().await?;
        Ok(None)
    }

    async fn redeem_once(
        &self,
        attempt: &Attempt,
        windows: &[(Window, u32)],
        actor: &Actor,
    ) -> Result<Redeemed, RedeemError> {
        let services = self.0;
        let mut tx = services.store.begin().await?;
        let at = services.clock.now();
        let now_ms = at.timestamp_millis();
        let digests = services.lookup_digests(&mut tx, &attempt.code).await?;
        let cards = tx.cards_by_digest(&digests).await?;
        let card = matching(&cards, &digests).ok_or(RedeemError::NotFound)?;
        let serial = card.serial;
        if let Some(replayed) = judge(&mut tx, card, attempt.account, now_ms).await? {
            give_back(&mut tx, windows).await?;
            tx.commit().await?;
            return Ok(replayed);
        }
        let account = tx
            .account(attempt.account)
            .await?
            .ok_or(RedeemError::AccountNotFound(attempt.account))?;
        let batch = tx
            .batch_of(serial)
            .await?
            .ok_or_else(|| StoreError::corrupt("a card outside every batch"))?;
        if batch.region != account.region {
            return Err(RedeemError::RegionMismatch {
                serial,
                card: batch.region,
                account: account.region,
            });
        }
        let activation = tx
            .activation(serial)
            .await?
            .ok_or_else(|| StoreError::corrupt("an active card without its activation"))?;
        let currency = Currency::parse(&activation.currency)
            .map_err(|_| StoreError::corrupt("activation currency"))?;
        if currency != account.currency {
            return Err(RedeemError::CurrencyMismatch {
                serial,
                card: currency,
                account: account.currency,
            });
        }
        if !tx.redeem_card(serial, now_ms).await? {
            // Moved since the lookup (another redemption, a block, a void): read it again.
            let digest = [(card.key_id, card.digest)];
            let again = tx.cards_by_digest(&digest).await?;
            let again = again.first().ok_or(RedeemError::NotFound)?;
            return match judge(&mut tx, again, attempt.account, now_ms).await? {
                Some(replayed) => {
                    give_back(&mut tx, windows).await?;
                    tx.commit().await?;
                    Ok(replayed)
                }
                None => Err(StoreError::Moved("the card").into()),
            };
        }
        let amount = Amount::new(Money::from_minor(activation.value_minor, currency))
            .map_err(|_| StoreError::corrupt("an activation's value"))?;
        let Some(balance_after) = tx.move_balance(attempt.account, amount.money()).await? else {
            // Frozen since the pre-check; the card's move rolls back with this.
            return Err(RedeemError::AccountFrozen(attempt.account));
        };
        let posting = Posting::transfer(
            TransferKind::Redemption,
            LedgerAccount::Card(serial),
            LedgerAccount::Customer(attempt.account),
            amount,
            Some(serial.masked()),
            at,
        );
        let transfer_id = tx
            .insert_transfer(&posting, &[None, Some(balance_after)], at)
            .await?;
        let row = RedemptionRow {
            serial,
            account_id: attempt.account,
            caller: attempt.caller.clone(),
            idem_key: attempt.key.clone(),
            value_minor: amount.minor(),
            currency: currency.code().to_string(),
            transfer_id,
            actor: actor.to_string(),
            redeemed_at: at,
        };
        if !tx.insert_redemption(&row).await? {
            // The card moved here, so its serial was free: the caller's key is what is taken,
            // by a redemption of another card committed meanwhile.
            return Err(RedeemError::KeyConflict);
        }
        tx.insert_card_events(&[CardEventRow {
            serial,
            action: CardAction::Redeemed,
            reason: None,
            request_id: None,
            actor: actor.to_string(),
            at,
        }])
        .await?;
        give_back(&mut tx, windows).await?;
        let signer = services.signer(&mut tx).await?;
        let event =
            events::card_redeemed(actor, serial, attempt.account, transfer_id, amount.money());
        tx.append(&signer, &event, at).await?;
        tx.commit().await?;
        Ok(Redeemed {
            card: serial.masked(),
            account_id: attempt.account,
            amount: amount.money(),
            transfer_id,
            balance_after: Money::from_minor(balance_after, currency),
            replayed: false,
        })
    }

    /// Logs a refused attempt; for a card never sold (or voided), also marks it exposed,
    /// audited, unless it already is.
    async fn record_refusal(
        &self,
        attempt: &Attempt,
        error: &RedeemError,
        actor: &Actor,
    ) -> Result<(), RedeemError> {
        let services = self.0;
        let mut tx = services.store.begin().await?;
        let at = services.clock.now();
        tx.insert_attempt(&AttemptRow {
            attempt_id: 0,
            account_id: attempt.account,
            caller: attempt.caller.clone(),
            serial: error.serial(),
            outcome: error.code().to_string(),
            at,
        })
        .await?;
        if let RedeemError::NotActivated(serial) = error
            && tx.expose_card(*serial, at.timestamp_millis()).await?
        {
            tx.insert_card_events(&[CardEventRow {
                serial: *serial,
                action: CardAction::Exposed,
                reason: Some(EXPOSED_BY_REDEMPTION.to_string()),
                request_id: None,
                actor: actor.to_string(),
                at,
            }])
            .await?;
            let signer = services.signer(&mut tx).await?;
            let event =
                events::card_flagged(actor, *serial, CardAction::Exposed, EXPOSED_BY_REDEMPTION);
            tx.append(&signer, &event, at).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Refused attempts on an account or a card, newest first, at most `rows`.
    pub async fn attempts(
        &self,
        account: Option<&str>,
        serial: Option<&str>,
        rows: PageRows,
    ) -> Result<Vec<AttemptRow>, RedeemError> {
        let account = account.map(AccountId::parse).transpose()?;
        let serial = serial.map(Serial::parse).transpose()?;
        let mut tx = self.0.store.read().await?;
        Ok(tx.attempts(account, serial, rows).await?)
    }
}

/// Parses an idempotency key: 1 to [`IDEMPOTENCY_KEY_MAX_CHARS`] printable ASCII characters.
fn parse_key(text: &str) -> Result<String, RedeemError> {
    let ok = (1..=IDEMPOTENCY_KEY_MAX_CHARS).contains(&text.len())
        && text.bytes().all(|b| b.is_ascii_graphic());
    ok.then(|| text.to_string()).ok_or(RedeemError::BadKey)
}

/// The card whose digest is one of `digests`, under the key that made it, compared in constant
/// time.
fn matching<'a>(cards: &'a [CardMatch], digests: &[(KeyId, CodeDigest)]) -> Option<&'a CardMatch> {
    cards.iter().find(|card| {
        digests
            .iter()
            .any(|(id, digest)| *id == card.key_id && digest.ct_eq(&card.digest))
    })
}

/// Why `card` cannot be redeemed into `account` now, or its redemption into that very account
/// replayed; `Ok(None)` when it is active, unblocked and its funds have not expired.
async fn judge<T: RedeemRepo + LedgerRepo>(
    tx: &mut T,
    card: &CardMatch,
    account: AccountId,
    now_ms: i64,
) -> Result<Option<Redeemed>, RedeemError> {
    let serial = card.serial;
    if card.state == CardState::Redeemed {
        let first = tx
            .redemption(serial)
            .await?
            .ok_or_else(|| StoreError::corrupt("a redeemed card without its redemption"))?;
        // Already redeemed to this account: the caller owns the result, so it is answered
        // with the first success, whatever key (if any) either attempt carried.
        if first.account_id == account {
            return Ok(Some(replay(tx, &first).await?));
        }
        return Err(RedeemError::AlreadyRedeemed(serial));
    }
    if card.blocked_reason.is_some() {
        return Err(RedeemError::Blocked(serial));
    }
    match card.state {
        CardState::Issued | CardState::Voided => Err(RedeemError::NotActivated(serial)),
        CardState::Expired => Err(RedeemError::Expired(serial)),
        CardState::Active if card.funds_expire_ms.is_some_and(|ms| ms <= now_ms) => {
            Err(RedeemError::Expired(serial))
        }
        CardState::Active | CardState::Redeemed => Ok(None),
    }
}

/// The first success of a redemption, as recorded.
async fn replay<T: LedgerRepo>(tx: &mut T, first: &RedemptionRow) -> StoreResult<Redeemed> {
    let currency =
        Currency::parse(&first.currency).map_err(|_| StoreError::corrupt("redemption currency"))?;
    let balance_after = tx
        .balance_after(first.transfer_id, first.account_id)
        .await?
        .ok_or_else(|| StoreError::corrupt("a redemption without its customer leg"))?;
    Ok(Redeemed {
        card: first.serial.masked(),
        account_id: first.account_id,
        amount: Money::from_minor(first.value_minor, currency),
        transfer_id: first.transfer_id,
        balance_after: Money::from_minor(balance_after, currency),
        replayed: true,
    })
}

/// Gives back the slot an attempt took in each window: a success does not count.
async fn give_back<T: RedeemRepo>(tx: &mut T, windows: &[(Window, u32)]) -> StoreResult<()> {
    for (window, _) in windows {
        tx.give_slot(window).await?;
    }
    Ok(())
}
