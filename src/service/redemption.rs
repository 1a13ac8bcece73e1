//! Redeeming a code into an account balance, guarded against guessing and races.
//!
//! An attempt runs in three steps:
//!
//! 1. The code is parsed (a malformed one is refused as `redeem.invalid_format`: nothing is
//!    written, nothing counted).
//! 2. One short transaction, committed before any code is evaluated: the account must exist and
//!    not be frozen; a retry under an idempotency key the caller already used for a success is
//!    answered from the redemption it recorded; otherwise the attempt takes a slot in the
//!    account's and the caller's hourly and daily windows by one conditional upsert, so
//!    parallel attempts never evaluate more codes than the limits allow. While any window is
//!    full the attempt is refused `redeem.rate_limited` with the time to retry, a valid code
//!    too.
//! 3. The code's digests find the card, read with its batch's storefront, its sale and its
//!    redemption in one statement, so every outcome costs the same reads. A refusal is logged
//!    in that transaction (the attempt log support reads, not the audit chains; a code tried on
//!    a card never sold, or voided, also marks the card exposed, audited, so a live sale of it
//!    is refused) and keeps its slot. Otherwise one guarded update moves the card from active
//!    to redeemed (comparing its funds-expiry with the clock, so an expired card never redeems
//!    before the expiry job marks it), committed with the credit of its whole value to the
//!    account, the redemption record (the caller's idempotency record too), the card's history
//!    line, one audit record, and the slots given back: a success does not count against the
//!    limits.
//!
//! In generic mode every refusal about the card reads as `redeem.not_redeemable`, answered no
//! sooner than [`GENERIC_REFUSAL_FLOOR`] after the attempt began. No record, log line or error
//! ever holds the code or its digest.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::Services;
use super::keys::KeyUseError;
use crate::audit::events;
use crate::codegen::CodeDigest;
use crate::config::WindowLimits;
use crate::domain::{
    Account, AccountId, Actor, Amount, CardAction, CardState, ClientAddress, Code, CodeError,
    Currency, LedgerAccount, LedgerValueError, Money, PageRows, Posting, Region, Serial,
    SerialError, TransferId, TransferKind,
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

/// In generic mode, the soonest a refusal about the card is answered after its attempt began:
/// well above the slowest refusal's usual time (a few milliseconds, see the README's figures),
/// so every kind is answered at the floor and none is told from another by its time.
pub const GENERIC_REFUSAL_FLOOR: Duration = Duration::from_millis(100);
/// The subject prefix of a caller's windows.
const CALLER_PREFIX: &str = "caller:";
/// How an end user's address is named as a caller (`address:203.0.113.7`), apart from every
/// actor form.
const ADDRESS_PREFIX: &str = "address:";

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
    /// Generic mode's one answer for every refusal about the card (which the attempt log
    /// records as it was).
    #[error("this code cannot be redeemed; check it, or ask the store that sold the card for help")]
    NotRedeemable,
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

    /// Whether it tells something of the card the code belongs to (or that there is none):
    /// what generic mode answers as one.
    fn about_the_card(&self) -> bool {
        matches!(
            self,
            RedeemError::NotFound
                | RedeemError::NotActivated(_)
                | RedeemError::AlreadyRedeemed(_)
                | RedeemError::Expired(_)
                | RedeemError::Blocked(_)
                | RedeemError::RegionMismatch { .. }
                | RedeemError::CurrencyMismatch { .. }
        )
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
            RedeemError::NotRedeemable => "redeem.not_redeemable",
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

/// Who an attempt counts against besides its account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    /// The actor's principal (`api:<key>`, `cli:<user>`), under the per-caller limits.
    Actor,
    /// The end user's address, under the per-address limits.
    Address(ClientAddress),
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
    /// The caller's limits.
    caller_limits: WindowLimits,
    /// Whether its refusal is in the attempt log already (written in the transaction that
    /// judged it).
    logged: AtomicBool,
}

/// What the first step decided.
enum Admission {
    /// The attempt holds a slot in every window; the account, as it was read.
    Admitted(Account),
    /// A retry of a success under the same key: its first answer.
    Replayed(Redeemed),
    /// A window is full until then; nothing taken.
    Limited(DateTime<Utc>),
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
        self.redeem_as(account, code, idempotency_key, caller, Caller::Actor)
            .await
    }

    /// As [`Redemption::redeem`], for `actor` with `caller` counting in the limits and scoping
    /// the idempotency key: the customer's page counts the end user's address, not the
    /// customer (whose account has its own windows).
    pub async fn redeem_as(
        &self,
        account: &str,
        code: &str,
        idempotency_key: Option<&str>,
        actor: &Actor,
        caller: Caller,
    ) -> Result<Redeemed, RedeemError> {
        let began = tokio::time::Instant::now();
        let account = AccountId::parse(account)?;
        let key = idempotency_key.map(parse_key).transpose()?;
        let code = Code::parse(code).map_err(|e| {
            // Counted, though nothing else is: a stream of malformed codes is a bot's mark.
            self.0.metrics.redemption("redeem.invalid_format");
            RedeemError::InvalidFormat(e)
        })?;
        let limits = self.0.redeem_limits;
        let (caller, caller_limits) = match caller {
            Caller::Actor => (actor.principal().to_string(), limits.caller),
            Caller::Address(address) => (format!("{ADDRESS_PREFIX}{address}"), limits.address),
        };
        let attempt = Attempt {
            account,
            code,
            key,
            caller,
            caller_limits,
            logged: AtomicBool::new(false),
        };
        let outcome = self.attempt(&attempt, actor).await;
        let metrics = &self.0.metrics;
        let error = match outcome {
            Ok(redeemed) => {
                metrics.redemption("ok");
                return Ok(redeemed);
            }
            Err(error) => error,
        };
        if error.logged() && !attempt.logged.load(Ordering::Relaxed) {
            rerun!(self.record_refusal(&attempt, &error, actor))?;
        }
        metrics.redemption(error.code());
        if self.0.redeem_generic && error.about_the_card() {
            // Every such refusal is answered no sooner than the floor after the attempt began,
            // so the time taken does not tell one from another either.
            tokio::time::sleep_until(began + GENERIC_REFUSAL_FLOOR).await;
            return Err(RedeemError::NotRedeemable);
        }
        Err(error)
    }

    async fn attempt(&self, attempt: &Attempt, actor: &Actor) -> Result<Redeemed, RedeemError> {
        let now = self.0.clock.now();
        let windows = self.windows(attempt, now);
        if S::ONE_WRITER {
            // One writer at a time: no other attempt can evaluate a code between the slot and
            // the lookup, so both steps share one transaction (and one flush to disk).
            return rerun!(self.admit_and_redeem(attempt, &windows, actor));
        }
        // Committed without waiting for the disk: a database crash may forget the last few
        // slots (a fraction of a second's), which costs a guesser's odds nothing worth a
        // flush on every attempt.
        let admitted = rerun!(async {
            let mut tx = self.0.store.begin_unflushed().await?;
            let admission = self.admit(&mut tx, attempt, &windows).await?;
            if matches!(admission, Admission::Admitted(_)) {
                tx.commit().await?;
            }
            Ok::<_, RedeemError>(admission)
        })?;
        let account = match admitted {
            Admission::Admitted(account) => account,
            refused => return self.unadmitted(attempt, refused).await,
        };
        rerun!(async {
            let tx = self.0.store.begin().await?;
            self.redeem_in(tx, attempt, &account, &windows, actor).await
        })
    }

    /// Both steps in one transaction.
    async fn admit_and_redeem(
        &self,
        attempt: &Attempt,
        windows: &[(Window, u32)],
        actor: &Actor,
    ) -> Result<Redeemed, RedeemError> {
        let mut tx = self.0.store.begin().await?;
        match self.admit(&mut tx, attempt, windows).await? {
            Admission::Admitted(account) => {
                self.redeem_in(tx, attempt, &account, windows, actor).await
            }
            refused => {
                drop(tx);
                self.unadmitted(attempt, refused).await
            }
        }
    }

    /// The answer to an attempt the first step did not admit: a replay, or the time to retry.
    async fn unadmitted(
        &self,
        attempt: &Attempt,
        admission: Admission,
    ) -> Result<Redeemed, RedeemError> {
        match admission {
            Admission::Replayed(first) => Ok(first),
            Admission::Admitted(_) => unreachable!("an admitted attempt goes on"),
            Admission::Limited(retry_at) => {
                // A copy of this attempt under the same key may have succeeded meanwhile: its
                // answer is owed, never a refusal.
                if attempt.key.is_some() {
                    let mut tx = self.0.store.read().await?;
                    if let Some(first) = self.replayed(&mut tx, attempt).await? {
                        return Ok(first);
                    }
                }
                let now = self.0.clock.now();
                Err(RedeemError::RateLimited {
                    retry_at,
                    retry_after_secs: (retry_at - now).num_seconds().max(1),
                })
            }
        }
    }

    /// The first step, before any code is evaluated: the account must exist and not be
    /// frozen; a retry under a key already used for a success is answered from its record;
    /// otherwise the attempt takes a slot in each of its windows, or none when one is full.
    async fn admit(
        &self,
        tx: &mut S::Tx,
        attempt: &Attempt,
        windows: &[(Window, u32)],
    ) -> Result<Admission, RedeemError> {
        let services = self.0;
        let account = tx
            .account(attempt.account)
            .await?
            .ok_or(RedeemError::AccountNotFound(attempt.account))?;
        if account.frozen_reason.is_some() {
            return Err(RedeemError::AccountFrozen(attempt.account));
        }
        if let Some(first) = self.replayed(tx, attempt).await? {
            return Ok(Admission::Replayed(first));
        }
        let used = tx.take_slots(windows).await?;
        let mut retry_ms = None;
        let mut caller_full = None;
        for ((window, _), used) in windows.iter().zip(&used) {
            match used {
                None => {
                    retry_ms = retry_ms.max(Some(window.start_ms + window.span_ms));
                    if window.subject.starts_with(CALLER_PREFIX) {
                        caller_full = Some(window);
                    }
                }
                Some(1) if window.span_ms == DAY_MS => {
                    // A subject's first attempt of a day: its windows that have ended count
                    // nothing any more, so they go (once a day per subject, not every attempt).
                    let now_ms = services.clock.now().timestamp_millis();
                    tx.prune_windows(&window.subject, now_ms).await?;
                }
                Some(_) => {}
            }
        }
        if let Some(window) = caller_full {
            // The failure-rate alarm, once per attempt: a caller serving many customers is
            // throttled (never everyone locked out), and someone should look at why.
            tracing::warn!(
                subject = %window.subject,
                span_ms = window.span_ms,
                "redemption caller throttled"
            );
            services.metrics.caller_throttled();
        }
        if let Some(ms) = retry_ms {
            // The caller drops the transaction: the slots taken in the other windows roll back.
            let at = DateTime::from_timestamp_millis(ms).ok_or(StoreError::corrupt("a window"))?;
            return Ok(Admission::Limited(at));
        }
        Ok(Admission::Admitted(account))
    }

    /// The first success of this caller's key, when the key was used before: the same account
    /// and the same code (compared with the one card the key redeemed, which tells nothing of
    /// any other code); a conflict when either differs.
    async fn replayed(
        &self,
        tx: &mut S::Tx,
        attempt: &Attempt,
    ) -> Result<Option<Redeemed>, RedeemError> {
        let Some(key) = &attempt.key else {
            return Ok(None);
        };
        let Some(first) = tx.redemption_by_key(&attempt.caller, key).await? else {
            return Ok(None);
        };
        if first.account_id != attempt.account {
            return Err(RedeemError::KeyConflict);
        }
        let digests = self.0.lookup_digests(tx, &attempt.code).await?;
        let cards = tx.cards_by_digest(&digests).await?;
        match matching(&cards, &digests) {
            Some(card) if card.serial == first.serial => Ok(Some(replay(tx, &first).await?)),
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
        let caller = format!("{CALLER_PREFIX}{}", attempt.caller);
        vec![
            (window(&account, HOUR_MS), limits.account.hour),
            (window(&account, DAY_MS), limits.account.day),
            (window(&caller, HOUR_MS), attempt.caller_limits.hour),
            (window(&caller, DAY_MS), attempt.caller_limits.day),
        ]
    }

    /// The second step, in `tx`: the code's card found, judged and, when it may, redeemed.
    /// Every refusal found by judging the card is logged in this same transaction before
    /// anything else is written, so every kind takes the same statements.
    async fn redeem_in(
        &self,
        mut tx: S::Tx,
        attempt: &Attempt,
        account: &Account,
        windows: &[(Window, u32)],
        actor: &Actor,
    ) -> Result<Redeemed, RedeemError> {
        let services = self.0;
        let at = services.clock.now();
        let now_ms = at.timestamp_millis();
        let digests = services.lookup_digests(&mut tx, &attempt.code).await?;
        let mut cards = tx.cards_by_digest(&digests).await?;
        let mut read_again = false;
        let card = loop {
            let judged = match matching(&cards, &digests) {
                None => Err(RedeemError::NotFound),
                Some(card) => judge(card, account, now_ms),
            };
            match judged {
                Ok(Judged::Redeemable(card)) => {
                    if tx.redeem_card(card.serial, now_ms).await? {
                        break card.clone();
                    }
                    if read_again {
                        return Err(StoreError::Moved("the card").into());
                    }
                    // Moved since the lookup (another redemption, a block, a void): judged
                    // again as it is now, the update having changed nothing.
                    cards = tx.cards_by_digest(&[(card.key_id, card.digest)]).await?;
                    read_again = true;
                }
                Ok(Judged::RedeemedHere(serial)) => {
                    let first = tx.redemption(serial).await?.ok_or_else(|| {
                        StoreError::corrupt("a redeemed card without its redemption")
                    })?;
                    let replayed = replay(&mut tx, &first).await?;
                    give_back(&mut tx, windows).await?;
                    tx.commit().await?;
                    return Ok(replayed);
                }
                Err(error) => {
                    self.log_refusal(&mut tx, attempt, &error, actor, at)
                        .await?;
                    tx.commit().await?;
                    attempt.logged.store(true, Ordering::Relaxed);
                    return Err(error);
                }
            }
        };
        let serial = card.serial;
        let (value_minor, currency) = card.sale.expect("judged redeemable: sold");
        let amount = Amount::new(Money::from_minor(value_minor, currency))
            .map_err(|_| StoreError::corrupt("an activation's value"))?;
        // What needs no balance comes first, so the account's row, locked by the balance's
        // update until the commit, is held for as few statements as can be.
        tx.insert_card_events(&[CardEventRow {
            serial,
            action: CardAction::Redeemed,
            reason: None,
            request_id: None,
            actor: actor.to_string(),
            at,
        }])
        .await?;
        let Some(balance_after) = tx.move_balance(attempt.account, amount.money()).await? else {
            // Frozen since the first step; the card's move rolls back with this.
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

    /// Logs a refusal that happened after the judging transaction rolled back (the account
    /// frozen meanwhile, a key taken meanwhile, a rate limit).
    async fn record_refusal(
        &self,
        attempt: &Attempt,
        error: &RedeemError,
        actor: &Actor,
    ) -> Result<(), RedeemError> {
        let mut tx = self.0.store.begin().await?;
        let at = self.0.clock.now();
        self.log_refusal(&mut tx, attempt, error, actor, at).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Writes a refused attempt to the log; for a card never sold (or voided), also marks it
    /// exposed, audited, unless it already is.
    async fn log_refusal(
        &self,
        tx: &mut S::Tx,
        attempt: &Attempt,
        error: &RedeemError,
        actor: &Actor,
        at: DateTime<Utc>,
    ) -> Result<(), RedeemError> {
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
            let signer = self.0.signer(tx).await?;
            let event =
                events::card_flagged(actor, *serial, CardAction::Exposed, EXPOSED_BY_REDEMPTION);
            tx.append(&signer, &event, at).await?;
        }
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

/// A card a code matched, as judged for an account.
enum Judged<'a> {
    /// Active, unblocked, unexpired, and of the account's storefront and currency.
    Redeemable(&'a CardMatch),
    /// Redeemed into this very account before: the caller owns the result, so it is answered
    /// with the first success, whatever key (if any) either attempt carried.
    RedeemedHere(Serial),
}

/// Whether `card` can be redeemed into `account` at `now_ms`, and why not; judged from the one
/// read of the card, so every outcome costs the same.
fn judge<'a>(
    card: &'a CardMatch,
    account: &Account,
    now_ms: i64,
) -> Result<Judged<'a>, RedeemError> {
    let serial = card.serial;
    match card.redeemed_into {
        Some(into) if into == account.id => return Ok(Judged::RedeemedHere(serial)),
        Some(_) => return Err(RedeemError::AlreadyRedeemed(serial)),
        None => {}
    }
    if card.blocked_reason.is_some() {
        return Err(RedeemError::Blocked(serial));
    }
    match card.state {
        CardState::Issued | CardState::Voided => return Err(RedeemError::NotActivated(serial)),
        CardState::Expired => return Err(RedeemError::Expired(serial)),
        CardState::Active if card.funds_expire_ms.is_some_and(|ms| ms <= now_ms) => {
            return Err(RedeemError::Expired(serial));
        }
        CardState::Active => {}
        CardState::Redeemed => {
            return Err(StoreError::corrupt("a redeemed card without its redemption").into());
        }
    }
    if card.region != account.region {
        return Err(RedeemError::RegionMismatch {
            serial,
            card: card.region,
            account: account.region,
        });
    }
    let Some((_, currency)) = card.sale else {
        return Err(StoreError::corrupt("an active card without its activation").into());
    };
    if currency != account.currency {
        return Err(RedeemError::CurrencyMismatch {
            serial,
            card: currency,
            account: account.currency,
        });
    }
    Ok(Judged::Redeemable(card))
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
    let windows: Vec<Window> = windows.iter().map(|(w, _)| w.clone()).collect();
    tx.give_slots(&windows).await
}
