//! Money moves: customer accounts, spends and refunds, support adjustments with four-eyes
//! approval, balance and history, and `ledger check`.
//!
//! Every movement is one balanced transfer, committed with its audit record in one
//! transaction. A balance or an order's refundable remainder moves only by a conditional update
//! inside that transaction (never read, then written), so concurrent callers can never take it
//! below zero. Each request carries its own idempotency key (the order id, the refund id): a
//! replay with the same fields returns the first outcome and writes nothing; with other fields it
//! is refused, naming what differs.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::Services;
use super::keys::KeyUseError;
use crate::audit::events;
use crate::domain::{
    Account, AccountId, Actor, Adjustment, Amount, Currency, HistoryLine, LedgerAccount,
    LedgerValueError, Money, MoneyError, Name, NewAccount, PageRows, Posting, Reference, Region,
    RegionError, TransferId, TransferKind,
};
use crate::error::{Classify, Kind};
use crate::store::ledger::{
    AdjustmentRow, AdjustmentState, Discrepancy, OrderRow, RefundRow, SystemBalance,
};
use crate::store::{AuditRepo, LedgerRepo, Store, StoreError, TradeInRepo, Tx};

/// Why a ledger use case refused or failed. Nothing was written.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// An amount, id, reference or name was refused.
    #[error(transparent)]
    Invalid(#[from] LedgerValueError),
    /// The region was refused.
    #[error(transparent)]
    Region(#[from] RegionError),
    /// No such account.
    #[error("there is no account {0}")]
    AccountNotFound(AccountId),
    /// The account is frozen: it neither receives nor spends.
    #[error("account {0} is frozen: it can neither receive nor spend")]
    AccountFrozen(AccountId),
    /// The amount is in another currency than the account's.
    #[error("account {account} holds {held}, not {given}")]
    WrongCurrency {
        /// The account.
        account: AccountId,
        /// Its currency.
        held: Currency,
        /// The currency given.
        given: Currency,
    },
    /// The balance does not cover the debit.
    #[error("account {0} does not hold enough for this")]
    InsufficientFunds(AccountId),
    /// Another account has this external id.
    #[error("another account has this external id")]
    ExternalIdTaken,
    /// The order id was used before for a different spend.
    #[error("order {order} was already spent with a different {field}")]
    OrderConflict {
        /// The order.
        order: String,
        /// The first field that differs.
        field: &'static str,
    },
    /// The account has no order under this id.
    #[error("account {account} has no order {order}")]
    UnknownOrder {
        /// The account.
        account: AccountId,
        /// The order.
        order: String,
    },
    /// The refund would give back more than the order has left.
    #[error("order {order} has {refundable} left to refund")]
    RefundExceedsOrder {
        /// The order.
        order: String,
        /// What is left.
        refundable: Money,
    },
    /// The refund id was used before for a different refund.
    #[error("refund {refund} was already made with a different {field}")]
    RefundConflict {
        /// The refund.
        refund: String,
        /// The first field that differs.
        field: &'static str,
    },
    /// No such adjustment.
    #[error("there is no adjustment {0}")]
    AdjustmentNotFound(i64),
    /// The adjustment was decided already.
    #[error("adjustment {0} is not waiting for approval")]
    NotPending(i64),
    /// The requester tried to approve their own adjustment.
    #[error("adjustment {0} must be approved by someone other than its requester")]
    SelfApproval(i64),
    /// The audit key could not be had.
    #[error(transparent)]
    Keys(#[from] KeyUseError),
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<MoneyError> for LedgerError {
    fn from(error: MoneyError) -> Self {
        LedgerError::Invalid(error.into())
    }
}

impl Classify for LedgerError {
    fn code(&self) -> &'static str {
        match self {
            LedgerError::Invalid(e) => e.code(),
            LedgerError::Region(e) => e.code(),
            LedgerError::AccountNotFound(_) => "account.not_found",
            LedgerError::AccountFrozen(_) => "account.frozen",
            LedgerError::WrongCurrency { .. } => "ledger.wrong_currency",
            LedgerError::InsufficientFunds(_) => "ledger.insufficient_funds",
            LedgerError::ExternalIdTaken => "account.external_id_taken",
            LedgerError::OrderConflict { .. } => "ledger.order_conflict",
            LedgerError::UnknownOrder { .. } => "ledger.unknown_order",
            LedgerError::RefundExceedsOrder { .. } => "ledger.refund_exceeds_order",
            LedgerError::RefundConflict { .. } => "ledger.refund_conflict",
            LedgerError::AdjustmentNotFound(_) => "adjustment.not_found",
            LedgerError::NotPending(_) => "adjustment.not_pending",
            LedgerError::SelfApproval(_) => "adjustment.self_approval",
            LedgerError::Keys(e) => e.code(),
            LedgerError::Store(e) => e.code(),
        }
    }

    fn kind(&self) -> Kind {
        match self {
            LedgerError::Invalid(_) | LedgerError::Region(_) => Kind::Invalid,
            LedgerError::AccountNotFound(_)
            | LedgerError::UnknownOrder { .. }
            | LedgerError::AdjustmentNotFound(_) => Kind::NotFound,
            LedgerError::AccountFrozen(_)
            | LedgerError::WrongCurrency { .. }
            | LedgerError::InsufficientFunds(_)
            | LedgerError::ExternalIdTaken
            | LedgerError::OrderConflict { .. }
            | LedgerError::RefundExceedsOrder { .. }
            | LedgerError::RefundConflict { .. }
            | LedgerError::NotPending(_)
            | LedgerError::SelfApproval(_) => Kind::Conflict,
            LedgerError::Keys(e) => e.kind(),
            LedgerError::Store(e) => e.kind(),
        }
    }
}

/// A new account, as a caller gives it.
#[derive(Debug, Clone, Default)]
pub struct AccountForm {
    /// ISO 3166-1 alpha-2 storefront country.
    pub region: String,
    /// ISO 4217 currency.
    pub currency: String,
    /// The store's own customer reference.
    pub external_id: Option<String>,
}

/// A spend, as a caller gives it.
#[derive(Debug, Clone, Default)]
pub struct SpendForm {
    /// The account.
    pub account: String,
    /// The amount, such as `10.00`.
    pub amount: String,
    /// Its currency.
    pub currency: String,
    /// The spending service's order id: the spend's idempotency key.
    pub order: String,
    /// The spending service (`app-store`).
    pub service: String,
    /// When the order was placed; default now.
    pub effective_at: Option<DateTime<Utc>>,
}

/// A refund, as a caller gives it.
#[derive(Debug, Clone, Default)]
pub struct RefundForm {
    /// The account.
    pub account: String,
    /// The order refunded.
    pub order: String,
    /// The refund's own id: its idempotency key.
    pub refund: String,
    /// The amount.
    pub amount: String,
    /// Its currency.
    pub currency: String,
    /// When the refund was made; default now.
    pub effective_at: Option<DateTime<Utc>>,
}

/// A support adjustment, as a caller gives it.
#[derive(Debug, Clone, Default)]
pub struct AdjustForm {
    /// The account.
    pub account: String,
    /// Signed: `25.00` credits, `-25.00` debits.
    pub amount: String,
    /// Its currency.
    pub currency: String,
    /// A reason code (`goodwill`, `correction`).
    pub reason: String,
}

/// What a spend, refund or adjustment did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Posted {
    /// The transfer.
    pub transfer_id: TransferId,
    /// The account's balance right after it.
    pub balance_after: Money,
    /// Whether this was a replay of an earlier identical request (nothing new was written).
    pub replayed: bool,
}

/// What an adjustment request did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Adjusted {
    /// Posted at once: at or under the approval threshold.
    Posted {
        /// The adjustment.
        adjustment_id: i64,
        /// The posting.
        posted: Posted,
    },
    /// Waiting for a second person's approval.
    Pending {
        /// The adjustment to approve.
        adjustment_id: i64,
    },
}

/// What `ledger check` found.
#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    /// Transfers checked.
    pub transfers: i64,
    /// Entries checked.
    pub entries: i64,
    /// Customer accounts checked.
    pub accounts: i64,
    /// Every system account's balance.
    pub system_balances: Vec<SystemBalance>,
    /// The first discrepancy; `None` when the books hold.
    pub discrepancy: Option<Discrepancy>,
}

/// Ledger use cases.
#[derive(Debug)]
pub struct Ledger<'a, S>(pub(super) &'a Services<S>);

impl<S: Store> Ledger<'_, S> {
    /// Creates an account with a zero balance.
    pub async fn create_account(
        &self,
        form: &AccountForm,
        actor: &Actor,
    ) -> Result<Account, LedgerError> {
        let new = NewAccount {
            region: Region::parse(&form.region)?,
            currency: Currency::parse(&form.currency)?,
            external_id: form
                .external_id
                .as_deref()
                .map(Reference::parse)
                .transpose()?,
        };
        rerun!(self.create_once(&new, actor))
    }

    async fn create_once(&self, new: &NewAccount, actor: &Actor) -> Result<Account, LedgerError> {
        let services = self.0;
        let mut tx = services.store.begin().await?;
        let at = services.clock.now();
        let id = tx
            .insert_account(new, at)
            .await?
            .ok_or(LedgerError::ExternalIdTaken)?;
        let account = tx
            .account(id)
            .await?
            .ok_or(LedgerError::AccountNotFound(id))?;
        let signer = services.signer(&mut tx).await?;
        tx.append(&signer, &events::account_created(actor, &account), at)
            .await?;
        tx.commit().await?;
        Ok(account)
    }

    /// An account, with its balance.
    pub async fn account(&self, id: &str) -> Result<Account, LedgerError> {
        let id = AccountId::parse(id)?;
        let mut tx = self.0.store.read().await?;
        tx.account(id)
            .await?
            .ok_or(LedgerError::AccountNotFound(id))
    }

    /// An account's history, newest first, after the cursor `after` (a transfer id from an
    /// earlier page), at most `rows` lines.
    pub async fn history(
        &self,
        id: &str,
        after: Option<TransferId>,
        rows: PageRows,
    ) -> Result<Vec<HistoryLine>, LedgerError> {
        let id = AccountId::parse(id)?;
        let mut tx = self.0.store.read().await?;
        tx.account(id)
            .await?
            .ok_or(LedgerError::AccountNotFound(id))?;
        Ok(tx.history(id, after, rows).await?)
    }

    /// Freezes (`frozen`) or unfreezes an account, with a reason code either way.
    pub async fn freeze(
        &self,
        id: &str,
        frozen: bool,
        reason: &str,
        actor: &Actor,
    ) -> Result<Account, LedgerError> {
        let id = AccountId::parse(id)?;
        let reason = Name::parse(reason)?;
        rerun!(self.freeze_once(id, frozen, &reason, actor))
    }

    async fn freeze_once(
        &self,
        id: AccountId,
        frozen: bool,
        reason: &Name,
        actor: &Actor,
    ) -> Result<Account, LedgerError> {
        let services = self.0;
        let mut tx = services.store.begin().await?;
        if !tx.set_frozen(id, frozen.then_some(reason.as_str())).await? {
            return Err(LedgerError::AccountNotFound(id));
        }
        let at = services.clock.now();
        let signer = services.signer(&mut tx).await?;
        let event = events::account_frozen(actor, id, frozen, reason.as_str());
        tx.append(&signer, &event, at).await?;
        let account = tx
            .account(id)
            .await?
            .ok_or(LedgerError::AccountNotFound(id))?;
        tx.commit().await?;
        Ok(account)
    }

    /// Blanks an account's personal data: its external id, and the device models, serials and
    /// IMEIs of its trade-ins and their uploaded rows. Entries and audit records hold only ids,
    /// so no chain breaks.
    pub async fn erase(&self, id: &str, actor: &Actor) -> Result<Account, LedgerError> {
        let id = AccountId::parse(id)?;
        rerun!(self.erase_once(id, actor))
    }

    async fn erase_once(&self, id: AccountId, actor: &Actor) -> Result<Account, LedgerError> {
        let services = self.0;
        let mut tx = services.store.begin().await?;
        let at = services.clock.now();
        if !tx.erase_account(id, at).await? {
            return Err(LedgerError::AccountNotFound(id));
        }
        // Its trade-ins' devices too: the valuations keep only the device's keyed digest.
        tx.erase_trade_in_devices(id).await?;
        let signer = services.signer(&mut tx).await?;
        tx.append(&signer, &events::account_erased(actor, id), at)
            .await?;
        let account = tx
            .account(id)
            .await?
            .ok_or(LedgerError::AccountNotFound(id))?;
        tx.commit().await?;
        Ok(account)
    }

    /// Debits an account for an order. The order id makes it idempotent.
    pub async fn spend(&self, form: &SpendForm, actor: &Actor) -> Result<Posted, LedgerError> {
        let account = AccountId::parse(&form.account)?;
        let amount = Amount::parse(&form.amount, Currency::parse(&form.currency)?)?;
        let order = Reference::parse(&form.order)?;
        let service = Name::parse(&form.service)?;
        let spend = Spend {
            account,
            amount,
            order,
            service,
            effective_at: form.effective_at,
        };
        rerun!(self.spend_once(&spend, actor))
    }

    async fn spend_once(&self, spend: &Spend, actor: &Actor) -> Result<Posted, LedgerError> {
        let services = self.0;
        let mut tx = services.store.begin().await?;
        let at = services.clock.now();
        let debit = Money::from_minor(-spend.amount.minor(), spend.amount.currency());
        let Some(balance_after) = tx.move_balance(spend.account, debit).await? else {
            // Refused: a replay of a spend made while the balance allowed it, or a reason.
            if let Some(order) = tx.order(spend.account, spend.order.as_str()).await? {
                return replay_spend(&mut tx, spend, &order).await;
            }
            return Err(refusal(&mut tx, spend.account, spend.amount.currency()).await?);
        };
        let posting = Posting::transfer(
            TransferKind::Spend,
            LedgerAccount::Customer(spend.account),
            LedgerAccount::Spent(spend.service.clone()),
            spend.amount,
            Some(spend.order.to_string()),
            spend.effective_at.unwrap_or(at),
        );
        let transfer_id = tx
            .insert_transfer(&posting, &[Some(balance_after), None], at)
            .await?;
        let order = OrderRow {
            account_id: spend.account,
            order_ref: spend.order.to_string(),
            service: spend.service.to_string(),
            amount: spend.amount.money(),
            refundable_minor: spend.amount.minor(),
            transfer_id,
        };
        if !tx.insert_order(&order).await? {
            // The same order, spent meanwhile: undo this one and answer as the first did.
            drop(tx);
            let mut tx = services.store.read().await?;
            let order = tx
                .order(spend.account, spend.order.as_str())
                .await?
                .ok_or(LedgerError::AccountNotFound(spend.account))?;
            return replay_spend(&mut tx, spend, &order).await;
        }
        let signer = services.signer(&mut tx).await?;
        let event = events::transfer_posted(
            actor,
            TransferKind::Spend,
            transfer_id,
            spend.account,
            debit,
        );
        tx.append(&signer, &event, at).await?;
        tx.commit().await?;
        Ok(Posted {
            transfer_id,
            balance_after: Money::from_minor(balance_after, spend.amount.currency()),
            replayed: false,
        })
    }

    /// Credits back part or all of an order. The refund id makes it idempotent; all refunds of
    /// an order together never exceed what it spent.
    pub async fn refund(&self, form: &RefundForm, actor: &Actor) -> Result<Posted, LedgerError> {
        let refund = Refund {
            account: AccountId::parse(&form.account)?,
            order: Reference::parse(&form.order)?,
            refund: Reference::parse(&form.refund)?,
            amount: Amount::parse(&form.amount, Currency::parse(&form.currency)?)?,
            effective_at: form.effective_at,
        };
        rerun!(self.refund_once(&refund, actor))
    }

    async fn refund_once(&self, refund: &Refund, actor: &Actor) -> Result<Posted, LedgerError> {
        let services = self.0;
        let mut tx = services.store.begin().await?;
        let at = services.clock.now();
        let (account, currency) = (refund.account, refund.amount.currency());
        if let Some(earlier) = tx.refund(account, refund.refund.as_str()).await? {
            return replay_refund(&mut tx, refund, &earlier).await;
        }
        let Some(order) = tx.order(account, refund.order.as_str()).await? else {
            tx.account(account)
                .await?
                .ok_or(LedgerError::AccountNotFound(account))?;
            return Err(LedgerError::UnknownOrder {
                account,
                order: refund.order.to_string(),
            });
        };
        if order.amount.currency() != currency {
            return Err(LedgerError::WrongCurrency {
                account,
                held: order.amount.currency(),
                given: currency,
            });
        }
        if tx
            .take_refundable(account, refund.order.as_str(), refund.amount.minor())
            .await?
            .is_none()
        {
            // A copy of this refund may have taken the remainder while this one waited for the
            // order's lock: its committed row is visible now, and this is its replay.
            if let Some(earlier) = tx.refund(account, refund.refund.as_str()).await? {
                return replay_refund(&mut tx, refund, &earlier).await;
            }
            let left = tx
                .order(account, refund.order.as_str())
                .await?
                .map_or(0, |o| o.refundable_minor);
            return Err(LedgerError::RefundExceedsOrder {
                order: refund.order.to_string(),
                refundable: Money::from_minor(left, currency),
            });
        }
        let Some(balance_after) = tx.move_balance(account, refund.amount.money()).await? else {
            return Err(refusal(&mut tx, account, currency).await?);
        };
        let service =
            Name::parse(&order.service).map_err(|_| StoreError::corrupt("order service"))?;
        let posting = Posting::transfer(
            TransferKind::Refund,
            LedgerAccount::Spent(service),
            LedgerAccount::Customer(account),
            refund.amount,
            Some(refund.refund.to_string()),
            refund.effective_at.unwrap_or(at),
        );
        let transfer_id = tx
            .insert_transfer(&posting, &[None, Some(balance_after)], at)
            .await?;
        let row = RefundRow {
            account_id: account,
            refund_ref: refund.refund.to_string(),
            order_ref: refund.order.to_string(),
            amount: refund.amount.money(),
            transfer_id,
        };
        if !tx.insert_refund(&row).await? {
            drop(tx);
            let mut tx = services.store.read().await?;
            let earlier = tx
                .refund(account, refund.refund.as_str())
                .await?
                .ok_or(LedgerError::AccountNotFound(account))?;
            return replay_refund(&mut tx, refund, &earlier).await;
        }
        let signer = services.signer(&mut tx).await?;
        let event = events::transfer_posted(
            actor,
            TransferKind::Refund,
            transfer_id,
            account,
            refund.amount.money(),
        );
        tx.append(&signer, &event, at).await?;
        tx.commit().await?;
        Ok(Posted {
            transfer_id,
            balance_after: Money::from_minor(balance_after, currency),
            replayed: false,
        })
    }

    /// Credits (positive) or debits (negative) an account against `adjustment`. At or under the
    /// approval threshold it posts at once; above it, it waits for another person's approval.
    pub async fn adjust(&self, form: &AdjustForm, actor: &Actor) -> Result<Adjusted, LedgerError> {
        let account = AccountId::parse(&form.account)?;
        let amount = Adjustment::parse(&form.amount, Currency::parse(&form.currency)?)?;
        let reason = Name::parse(&form.reason)?;
        rerun!(self.adjust_once(account, amount, &reason, actor))
    }

    async fn adjust_once(
        &self,
        account: AccountId,
        amount: Adjustment,
        reason: &Name,
        actor: &Actor,
    ) -> Result<Adjusted, LedgerError> {
        let services = self.0;
        let mut tx = services.store.begin().await?;
        let at = services.clock.now();
        let held = tx
            .account(account)
            .await?
            .ok_or(LedgerError::AccountNotFound(account))?;
        if held.currency != amount.money().currency() {
            return Err(LedgerError::WrongCurrency {
                account,
                held: held.currency,
                given: amount.money().currency(),
            });
        }
        let mut row = AdjustmentRow {
            id: 0,
            account_id: account,
            amount: amount.money(),
            reason: reason.to_string(),
            state: AdjustmentState::Pending,
            requested_by: actor.principal().to_string(),
            decided_by: None,
            transfer_id: None,
            requested_at: at,
        };
        let signer = services.signer(&mut tx).await?;
        if amount.size().money().to_decimal() > services.approval_over.get() {
            row.id = tx.insert_adjustment(&row).await?;
            let event = events::adjustment_requested(
                actor,
                row.id,
                account,
                amount.money(),
                reason.as_str(),
            );
            tx.append(&signer, &event, at).await?;
            tx.commit().await?;
            return Ok(Adjusted::Pending {
                adjustment_id: row.id,
            });
        }
        let posted = post_adjustment(&mut tx, account, amount, at).await?;
        row.state = AdjustmentState::Posted;
        row.decided_by = Some(row.requested_by.clone());
        row.transfer_id = Some(posted.transfer_id);
        row.id = tx.insert_adjustment(&row).await?;
        let event = events::transfer_posted(
            actor,
            TransferKind::Adjustment,
            posted.transfer_id,
            account,
            amount.money(),
        );
        tx.append(&signer, &event, at).await?;
        tx.commit().await?;
        Ok(Adjusted::Posted {
            adjustment_id: row.id,
            posted,
        })
    }

    /// Approves and posts a pending adjustment. The approver's principal must differ from the
    /// requester's (the note after a CLI user's name does not count).
    pub async fn approve(&self, id: i64, actor: &Actor) -> Result<Posted, LedgerError> {
        rerun!(self.approve_once(id, actor))
    }

    async fn approve_once(&self, id: i64, actor: &Actor) -> Result<Posted, LedgerError> {
        let services = self.0;
        let mut tx = services.store.begin().await?;
        let at = services.clock.now();
        let row = tx
            .adjustment(id)
            .await?
            .ok_or(LedgerError::AdjustmentNotFound(id))?;
        if row.state != AdjustmentState::Pending {
            return Err(LedgerError::NotPending(id));
        }
        if row.requested_by == actor.principal() {
            return Err(LedgerError::SelfApproval(id));
        }
        let amount = Adjustment::new(row.amount)?;
        let posted = match post_adjustment(&mut tx, row.account_id, amount, at).await {
            Ok(posted) => posted,
            Err(refused) => {
                // Another approver may have posted it while this one waited for the account's
                // lock (a debit it covered once): their commit is visible now.
                let now = tx.adjustment(id).await?;
                if now.is_some_and(|r| r.state != AdjustmentState::Pending) {
                    return Err(LedgerError::NotPending(id));
                }
                return Err(refused);
            }
        };
        let principal = actor.principal();
        if !tx
            .decide_adjustment(
                id,
                AdjustmentState::Posted,
                principal,
                Some(posted.transfer_id),
                at,
            )
            .await?
        {
            return Err(LedgerError::NotPending(id));
        }
        let signer = services.signer(&mut tx).await?;
        let event = events::transfer_posted(
            actor,
            TransferKind::Adjustment,
            posted.transfer_id,
            row.account_id,
            row.amount,
        );
        tx.append(&signer, &event, at).await?;
        tx.commit().await?;
        Ok(posted)
    }

    /// Proves the books from one snapshot: every transfer balances, every customer leg is in
    /// its account's currency, every stored balance and balance-after is the sum of entries,
    /// every order's refundable remainder is what it spent less its refunds.
    pub async fn check(&self) -> Result<CheckReport, StoreError> {
        let mut tx = self.0.store.read().await?;
        let (transfers, entries, accounts) = tx.ledger_counts().await?;
        let discrepancy = tx.first_discrepancy().await?;
        let system_balances = tx.system_balances().await?;
        tx.commit().await?;
        Ok(CheckReport {
            transfers,
            entries,
            accounts,
            system_balances,
            discrepancy,
        })
    }
}

/// A parsed spend.
struct Spend {
    account: AccountId,
    amount: Amount,
    order: Reference,
    service: Name,
    effective_at: Option<DateTime<Utc>>,
}

/// A parsed refund.
struct Refund {
    account: AccountId,
    order: Reference,
    refund: Reference,
    amount: Amount,
    effective_at: Option<DateTime<Utc>>,
}

/// Posts an adjustment's transfer: a credit from `adjustment`, or a debit to it.
async fn post_adjustment<T: LedgerRepo>(
    tx: &mut T,
    account: AccountId,
    amount: Adjustment,
    at: DateTime<Utc>,
) -> Result<Posted, LedgerError> {
    let currency = amount.money().currency();
    let Some(balance_after) = tx.move_balance(account, amount.money()).await? else {
        return Err(refusal(tx, account, currency).await?);
    };
    let customer = LedgerAccount::Customer(account);
    let (from, to, after) = if amount.is_credit() {
        (
            LedgerAccount::Adjustment,
            customer,
            [None, Some(balance_after)],
        )
    } else {
        (
            customer,
            LedgerAccount::Adjustment,
            [Some(balance_after), None],
        )
    };
    let posting = Posting::transfer(TransferKind::Adjustment, from, to, amount.size(), None, at);
    let transfer_id = tx.insert_transfer(&posting, &after, at).await?;
    Ok(Posted {
        transfer_id,
        balance_after: Money::from_minor(balance_after, currency),
        replayed: false,
    })
}

/// Why an account refused a balance move: it is missing, frozen, in another currency, or
/// holds too little. Read after the refused update, in the same transaction.
async fn refusal<T: LedgerRepo>(
    tx: &mut T,
    id: AccountId,
    given: Currency,
) -> Result<LedgerError, StoreError> {
    Ok(match tx.account(id).await? {
        None => LedgerError::AccountNotFound(id),
        Some(account) if account.frozen_reason.is_some() => LedgerError::AccountFrozen(id),
        Some(account) if account.currency != given => LedgerError::WrongCurrency {
            account: id,
            held: account.currency,
            given,
        },
        Some(_) => LedgerError::InsufficientFunds(id),
    })
}

/// The first outcome of a spend with this order id, if the fields match.
async fn replay_spend<T: LedgerRepo>(
    tx: &mut T,
    spend: &Spend,
    order: &OrderRow,
) -> Result<Posted, LedgerError> {
    let conflict = |field| LedgerError::OrderConflict {
        order: spend.order.to_string(),
        field,
    };
    if order.amount != spend.amount.money() {
        return Err(conflict("amount"));
    }
    if order.service != spend.service.as_str() {
        return Err(conflict("service"));
    }
    replayed(
        tx,
        order.transfer_id,
        spend.account,
        order.amount.currency(),
    )
    .await
}

/// The first outcome of a refund with this id, if the fields match.
async fn replay_refund<T: LedgerRepo>(
    tx: &mut T,
    refund: &Refund,
    earlier: &RefundRow,
) -> Result<Posted, LedgerError> {
    let conflict = |field| LedgerError::RefundConflict {
        refund: refund.refund.to_string(),
        field,
    };
    if earlier.order_ref != refund.order.as_str() {
        return Err(conflict("order"));
    }
    if earlier.amount != refund.amount.money() {
        return Err(conflict("amount"));
    }
    replayed(
        tx,
        earlier.transfer_id,
        refund.account,
        earlier.amount.currency(),
    )
    .await
}

async fn replayed<T: LedgerRepo>(
    tx: &mut T,
    transfer_id: TransferId,
    account: AccountId,
    currency: Currency,
) -> Result<Posted, LedgerError> {
    let balance_after = tx
        .balance_after(transfer_id, account)
        .await?
        .ok_or_else(|| StoreError::corrupt("a transfer without its customer leg"))?;
    Ok(Posted {
        transfer_id,
        balance_after: Money::from_minor(balance_after, currency),
        replayed: true,
    })
}
