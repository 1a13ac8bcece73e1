//! Expiry (breakage and escheat): active cards whose funds-expiry has passed become expired,
//! and the value each carried moves off it in the same transaction, to `breakage` or, where a
//! state's unclaimed-property law claims it, to that state's escheat payable.
//!
//! The funds-expiry was fixed at activation from the store's jurisdiction (a jurisdiction that
//! forbids expiry stored none, so its cards never come here); customer balances never expire.
//! A run works in chunks, each one transaction that moves the cards, posts their transfers and
//! appends their audit records: a run killed in the middle leaves whole chunks, and the next run
//! takes the cards still active, so each card expires once.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, NaiveTime, TimeDelta, Utc};
use serde::Serialize;

use super::Services;
use super::keys::KeyUseError;
use crate::audit::events::{self, ExpiryAudit};
use crate::config::BusinessTimeZone;
use crate::domain::{
    Actor, Currency, Jurisdiction, LedgerAccount, Money, Posting, Serial, wall_clock_instant,
};
use crate::error::{Classify, Kind};
use crate::store::expiry::ExpiryGroup;
use crate::store::{AuditRepo, ExpiryRepo, LedgerRepo, Store, StoreError, Tx};

/// The most cards one expiry transaction moves: its transfer's legs fit one multi-row insert
/// under SQLite's 32,766 bound parameters (9 per leg), and its audit record stays small.
pub const EXPIRY_CHUNK_MAX: usize = 3_500;
/// The furthest ahead `expire outlook` looks: a year, the horizon finance plans breakage on.
pub const OUTLOOK_DAYS_MAX: u32 = 366;

/// Why an expiry run or view was refused.
#[derive(Debug, thiserror::Error)]
pub enum ExpiryError {
    /// The as-of instant is after now: funds never expire before their date.
    #[error("cards cannot be expired as of {0}, which is still to come; preview it with --dry-run")]
    Future(DateTime<Utc>),
    /// The as-of text is neither a date nor an RFC 3339 instant.
    #[error("{0:?} is neither a date (2026-12-31) nor an RFC 3339 instant (2026-12-31T23:00:00Z)")]
    BadAsOf(String),
    /// The outlook's days are out of range.
    #[error("the outlook looks 1 to {OUTLOOK_DAYS_MAX} days ahead")]
    BadDays,
    /// The chunk size is out of range.
    #[error("an expiry chunk holds 1 to {EXPIRY_CHUNK_MAX} cards")]
    BadChunk,
    /// The audit key is missing or stale.
    #[error(transparent)]
    Keys(#[from] KeyUseError),
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Classify for ExpiryError {
    fn code(&self) -> &'static str {
        match self {
            ExpiryError::Future(_) => "expiry.future",
            ExpiryError::BadAsOf(_) => "expiry.bad_as_of",
            ExpiryError::BadDays => "expiry.bad_days",
            ExpiryError::BadChunk => "expiry.bad_chunk",
            ExpiryError::Keys(e) => e.code(),
            ExpiryError::Store(e) => e.code(),
        }
    }

    fn kind(&self) -> Kind {
        match self {
            ExpiryError::Keys(e) => e.kind(),
            ExpiryError::Store(e) => e.kind(),
            _ => Kind::Invalid,
        }
    }
}

/// Parses `--as-of`: an RFC 3339 instant, or a date meaning the end of that business day in
/// `zone` (the midnight that starts the next), so `--as-of 2031-12-31` takes every card whose
/// funds expired on the 31st.
pub fn parse_as_of(text: &str, zone: BusinessTimeZone) -> Result<DateTime<Utc>, ExpiryError> {
    let bad = || ExpiryError::BadAsOf(text.chars().take(40).collect());
    if let Ok(at) = DateTime::parse_from_rfc3339(text.trim()) {
        return Ok(at.to_utc());
    }
    let day = NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d").map_err(|_| bad())?;
    let next = day.succ_opt().ok_or_else(bad)?;
    // Where the clock skips midnight (Chile moves from 00:00 to 01:00), the day starts when
    // the gap ends, as schedules resolve a skipped time.
    wall_clock_instant(zone.get(), next.and_time(NaiveTime::MIN)).ok_or_else(bad)
}

/// Where expired funds went, per currency and destination.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExpiryLine {
    /// The currency.
    pub currency: Currency,
    /// `breakage` or `escheat_payable:{state}`.
    pub destination: String,
    /// How many cards.
    pub cards: u64,
    /// Their funds.
    pub amount: Money,
}

/// What an expiry run did (or, as a preview, would do).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExpiryReport {
    /// The instant cards were expired as of.
    pub as_of: DateTime<Utc>,
    /// Whether nothing was written.
    pub dry_run: bool,
    /// Cards expired.
    pub cards: u64,
    /// Transfers posted.
    pub transfers: u64,
    /// Per currency and destination, in that order.
    pub lines: Vec<ExpiryLine>,
}

impl ExpiryReport {
    fn empty(as_of: DateTime<Utc>, dry_run: bool) -> ExpiryReport {
        ExpiryReport {
            as_of,
            dry_run,
            cards: 0,
            transfers: 0,
            lines: Vec::new(),
        }
    }

    fn add(&mut self, currency: Currency, destination: &str, cards: u64, minor: i64) {
        self.cards += cards;
        match self
            .lines
            .iter_mut()
            .find(|l| l.currency == currency && l.destination == destination)
        {
            Some(line) => {
                line.cards += cards;
                line.amount = Money::from_minor(line.amount.minor() + minor, currency);
            }
            None => {
                self.lines.push(ExpiryLine {
                    currency,
                    destination: destination.to_string(),
                    cards,
                    amount: Money::from_minor(minor, currency),
                });
                self.lines.sort_by(|a, b| {
                    (a.currency.code(), &a.destination).cmp(&(b.currency.code(), &b.destination))
                });
            }
        }
    }
}

/// Cards due to expire in a window: per batch, jurisdiction and currency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OutlookLine {
    /// The batch.
    pub batch_id: i64,
    /// The selling store's jurisdiction.
    pub jurisdiction: String,
    /// How many cards.
    pub cards: u64,
    /// Their funds.
    pub amount: Money,
    /// The first of them to expire.
    pub first_expiry: DateTime<Utc>,
    /// Where their funds would go (`breakage`, or a state's escheat payable) under today's
    /// rules; one line per destination.
    pub destination: String,
}

/// Expired cards of one currency whose funds go to one account.
struct Destined {
    currency: Currency,
    to: LedgerAccount,
    cards: Vec<(Serial, i64)>,
}

/// Expiry use cases.
pub struct Expiry<'a, S>(pub(super) &'a Services<S>);

impl<S: Store> Expiry<'_, S> {
    /// Expires every active card whose funds expire at or before `as_of` (never after now),
    /// `chunk` cards per transaction; what it did.
    pub async fn run(
        &self,
        as_of: DateTime<Utc>,
        chunk: usize,
        actor: &Actor,
    ) -> Result<ExpiryReport, ExpiryError> {
        if !(1..=EXPIRY_CHUNK_MAX).contains(&chunk) {
            return Err(ExpiryError::BadChunk);
        }
        if as_of > self.0.clock.now() {
            return Err(ExpiryError::Future(as_of));
        }
        let mut report = ExpiryReport::empty(as_of, false);
        loop {
            let moved = rerun!(self.chunk(as_of, chunk, actor))?;
            // A short chunk is not the end: a redemption or another run may have taken some of
            // the cards it chose. Only an empty one is.
            let done = moved.cards == 0;
            for line in moved.lines {
                report.add(
                    line.currency,
                    &line.destination,
                    line.cards,
                    line.amount.minor(),
                );
            }
            report.transfers += moved.transfers;
            if done {
                return Ok(report);
            }
        }
    }

    /// One transaction: up to `chunk` due cards expired and their transfers posted.
    async fn chunk(
        &self,
        as_of: DateTime<Utc>,
        chunk: usize,
        actor: &Actor,
    ) -> Result<ExpiryReport, ExpiryError> {
        let services = self.0;
        let mut tx = services.store.begin().await?;
        let at = services.clock.now();
        let serials = tx
            .expire_due_cards(
                as_of.timestamp_millis(),
                i64::try_from(chunk).unwrap_or(i64::MAX),
            )
            .await?;
        let mut report = ExpiryReport::empty(as_of, false);
        if serials.is_empty() {
            tx.commit().await?;
            return Ok(report);
        }
        let cards = tx.expired_cards(&serials).await?;
        if cards.len() != serials.len() {
            return Err(StoreError::corrupt("an active card without its activation").into());
        }
        // One transfer per currency and destination, in a fixed order.
        let mut groups: BTreeMap<(String, String), Destined> = BTreeMap::new();
        for card in &cards {
            let currency = Currency::parse(&card.currency)
                .map_err(|_| StoreError::corrupt("activation currency"))?;
            let to = self.destination(&card.jurisdiction, card.purchaser_state.as_deref())?;
            groups
                .entry((card.currency.clone(), to.key()))
                .or_insert_with(|| Destined {
                    currency,
                    to,
                    cards: Vec::new(),
                })
                .cards
                .push((card.serial, card.value_minor));
        }
        let signer = services.signer(&mut tx).await?;
        for (
            (_, destination),
            Destined {
                currency,
                to,
                cards,
            },
        ) in groups
        {
            let posting = Posting::expiry(currency, &cards, to, as_of);
            let total = posting.legs.last().map_or(0, |leg| leg.amount_minor);
            let transfer_id = tx
                .insert_transfer(&posting, &vec![None; posting.legs.len()], at)
                .await?;
            let audit = ExpiryAudit {
                as_of,
                transfer_id,
                destination: &destination,
                amount: Money::from_minor(total, currency),
                cards: super::cards::runs(cards.iter().map(|(serial, _)| *serial)),
            };
            tx.append(&signer, &events::cards_expired(actor, &audit), at)
                .await?;
            report.add(currency, &destination, cards.len() as u64, total);
            report.transfers += 1;
        }
        tx.commit().await?;
        Ok(report)
    }

    /// What [`Expiry::run`] would do as of `as_of` (which may be ahead), from one snapshot,
    /// writing nothing.
    pub async fn preview(&self, as_of: DateTime<Utc>) -> Result<ExpiryReport, ExpiryError> {
        let mut tx = self.0.store.read().await?;
        let groups = tx.expiry_groups(None, as_of.timestamp_millis()).await?;
        tx.commit().await?;
        let mut report = ExpiryReport::empty(as_of, true);
        for group in groups {
            let (currency, to) = self.group_destination(&group)?;
            report.add(currency, &to.key(), count(group.cards), group.value_minor);
        }
        Ok(report)
    }

    /// The active cards whose funds expire in the next `days` days, per batch, jurisdiction,
    /// currency and destination, soonest batch first.
    pub async fn outlook(&self, days: u32) -> Result<Vec<OutlookLine>, ExpiryError> {
        if !(1..=OUTLOOK_DAYS_MAX).contains(&days) {
            return Err(ExpiryError::BadDays);
        }
        let now = self.0.clock.now();
        let until = now + TimeDelta::days(i64::from(days));
        let mut tx = self.0.store.read().await?;
        let groups = tx
            .expiry_groups(Some(now.timestamp_millis()), until.timestamp_millis())
            .await?;
        tx.commit().await?;
        let mut lines: Vec<OutlookLine> = Vec::new();
        for group in groups {
            let (currency, to) = self.group_destination(&group)?;
            let destination = to.key();
            let first_expiry = DateTime::from_timestamp_millis(group.first_ms)
                .ok_or_else(|| StoreError::corrupt("funds-expiry"))?;
            match lines.iter_mut().find(|l| {
                l.batch_id == group.batch_id
                    && l.jurisdiction == group.jurisdiction
                    && l.amount.currency() == currency
                    && l.destination == destination
            }) {
                Some(line) => {
                    line.cards += count(group.cards);
                    line.amount =
                        Money::from_minor(line.amount.minor() + group.value_minor, currency);
                    line.first_expiry = line.first_expiry.min(first_expiry);
                }
                None => lines.push(OutlookLine {
                    batch_id: group.batch_id,
                    jurisdiction: group.jurisdiction,
                    cards: count(group.cards),
                    amount: Money::from_minor(group.value_minor, currency),
                    first_expiry,
                    destination,
                }),
            }
        }
        // Ties broken on every key, so both databases list the lines in one order (their
        // groups come in an order that differs where the purchaser's state is NULL).
        lines.sort_by_key(|l| {
            (
                l.first_expiry,
                l.batch_id,
                l.jurisdiction.clone(),
                l.amount.currency().code(),
                l.destination.clone(),
            )
        });
        Ok(lines)
    }

    fn group_destination(
        &self,
        group: &ExpiryGroup,
    ) -> Result<(Currency, LedgerAccount), ExpiryError> {
        let currency = Currency::parse(&group.currency)
            .map_err(|_| StoreError::corrupt("activation currency"))?;
        let to = self.destination(&group.jurisdiction, group.purchaser_state.as_deref())?;
        Ok((currency, to))
    }

    /// Where the funds of a card sold in `jurisdiction` go when it expires.
    fn destination(
        &self,
        jurisdiction: &str,
        purchaser_state: Option<&str>,
    ) -> Result<LedgerAccount, StoreError> {
        let corrupt = |_| StoreError::corrupt("a stored jurisdiction");
        let sold_in = Jurisdiction::parse(jurisdiction).map_err(corrupt)?;
        let purchaser = purchaser_state
            .map(Jurisdiction::parse)
            .transpose()
            .map_err(corrupt)?;
        Ok(
            match sold_in.escheat_state(purchaser.as_ref(), &self.0.issuer_state) {
                Some(state) => LedgerAccount::EscheatPayable(state),
                None => LedgerAccount::Breakage,
            },
        )
    }
}

fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or_default()
}
