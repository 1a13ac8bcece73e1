//! The ledger's repository: customer accounts, transfers and their entries, orders, refunds,
//! adjustments, and the queries `ledger check` proves the books with.

use std::future::Future;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::StoreResult;
use crate::domain::{
    Account, AccountId, CardState, HistoryLine, Money, NewAccount, PageRows, Posting, Serial,
    TransferId,
};

/// An order a spend paid for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderRow {
    /// The account that paid.
    pub account_id: AccountId,
    /// The spending service's order id.
    pub order_ref: String,
    /// The service paid.
    pub service: String,
    /// What was spent.
    pub amount: Money,
    /// What can still be refunded.
    pub refundable_minor: i64,
    /// The spend's transfer.
    pub transfer_id: TransferId,
}

/// A refund against an order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundRow {
    /// The account refunded.
    pub account_id: AccountId,
    /// The refund's own id.
    pub refund_ref: String,
    /// The order it refunds.
    pub order_ref: String,
    /// What it gave back.
    pub amount: Money,
    /// Its transfer.
    pub transfer_id: TransferId,
}

/// Where a support adjustment is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AdjustmentState {
    /// Waiting for a second person.
    Pending,
    /// Its transfer is posted.
    Posted,
}

impl AdjustmentState {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            AdjustmentState::Pending => "pending",
            AdjustmentState::Posted => "posted",
        }
    }
}

/// A support adjustment as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AdjustmentRow {
    /// Its id.
    pub id: i64,
    /// The account.
    pub account_id: AccountId,
    /// Signed: a credit when positive.
    pub amount: Money,
    /// The reason code.
    pub reason: String,
    /// Where it is.
    pub state: AdjustmentState,
    /// The requester's principal.
    pub requested_by: String,
    /// The approver's principal, once decided.
    pub decided_by: Option<String>,
    /// Its transfer, once posted.
    pub transfer_id: Option<TransferId>,
    /// When it was asked for.
    pub requested_at: DateTime<Utc>,
}

/// The first thing `ledger check` finds wrong with the books.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "discrepancy", rename_all = "snake_case")]
pub enum Discrepancy {
    /// A transfer's entries do not sum to zero, or it has fewer than two.
    Unbalanced {
        /// The transfer.
        transfer_id: TransferId,
        /// The sum of its entries, in minor units.
        sum_minor: i64,
        /// How many entries it has.
        entries: i64,
    },
    /// A customer leg is in another currency than its transfer or its account.
    CurrencyMismatch {
        /// The transfer.
        transfer_id: TransferId,
        /// The account.
        account_id: AccountId,
    },
    /// An account's stored balance is not the sum of its entries.
    BalanceDrift {
        /// The account.
        account_id: AccountId,
        /// The stored balance, in minor units.
        stored_minor: i64,
        /// The sum of its entries.
        summed_minor: i64,
    },
    /// An entry's recorded balance-after is not the running sum of the account's entries.
    HistoryDrift {
        /// The account.
        account_id: AccountId,
        /// The first transfer whose balance-after is wrong.
        transfer_id: TransferId,
    },
    /// An order's refundable remainder is not what it spent less its refunds.
    RefundableDrift {
        /// The account.
        account_id: AccountId,
        /// The order.
        order_ref: String,
    },
    /// A card's entries do not sum to what its state says it carries: its face value while
    /// active, nothing otherwise; or a voided card's activation names no void, or a redeemed
    /// card has no redemption (or the reverse of either).
    CardDrift {
        /// The card.
        serial: Serial,
        /// Its state.
        state: CardState,
        /// The sum of its entries, in minor units.
        summed_minor: i64,
    },
    /// A card past issued without an activation, or with entries but no activation.
    CardWithoutActivation {
        /// The card.
        serial: Serial,
    },
}

impl std::fmt::Display for Discrepancy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Discrepancy::Unbalanced {
                transfer_id,
                sum_minor,
                entries,
            } => write!(
                f,
                "transfer {transfer_id} does not balance: its {entries} entries sum to {sum_minor} minor units"
            ),
            Discrepancy::CurrencyMismatch {
                transfer_id,
                account_id,
            } => write!(
                f,
                "transfer {transfer_id} moves another currency than account {account_id} holds"
            ),
            Discrepancy::BalanceDrift {
                account_id,
                stored_minor,
                summed_minor,
            } => write!(
                f,
                "account {account_id} stores a balance of {stored_minor} minor units but its entries sum to {summed_minor}"
            ),
            Discrepancy::HistoryDrift {
                account_id,
                transfer_id,
            } => write!(
                f,
                "account {account_id}'s balance after transfer {transfer_id} is not the sum of its entries up to it"
            ),
            Discrepancy::RefundableDrift {
                account_id,
                order_ref,
            } => write!(
                f,
                "order {order_ref} of account {account_id} has a refundable remainder other than what it spent less its refunds"
            ),
            Discrepancy::CardDrift {
                serial,
                state,
                summed_minor,
            } => write!(
                f,
                "card {serial} is {} but its entries sum to {summed_minor} minor units",
                state.as_str()
            ),
            Discrepancy::CardWithoutActivation { serial } => write!(
                f,
                "card {serial} has left issued or has entries, but no activation"
            ),
        }
    }
}

/// The one line that stands for every card's account in [`SystemBalance`]: a line per card
/// would grow with the cards sold.
pub const ALL_CARDS: &str = "card:*";

/// One system account's aggregate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SystemBalance {
    /// The account (`spent:app-store`, `adjustment`, …), or [`ALL_CARDS`] for every card
    /// together.
    pub ledger_account: String,
    /// Its currency.
    pub currency: String,
    /// The sum of its entries: positive when credited on balance.
    pub balance_minor: i64,
}

/// Customer accounts, transfers, orders, refunds and adjustments.
pub trait LedgerRepo {
    /// Creates an account with a zero balance; `None` when its external id is taken.
    fn insert_account(
        &mut self,
        new: &NewAccount,
        at: DateTime<Utc>,
    ) -> impl Future<Output = StoreResult<Option<AccountId>>> + Send;

    /// One account.
    fn account(
        &mut self,
        id: AccountId,
    ) -> impl Future<Output = StoreResult<Option<Account>>> + Send;

    /// Freezes (with a reason) or unfreezes (`None`) an account; whether it exists.
    fn set_frozen(
        &mut self,
        id: AccountId,
        reason: Option<&str>,
    ) -> impl Future<Output = StoreResult<bool>> + Send;

    /// Blanks an account's personal data; whether it exists.
    fn erase_account(
        &mut self,
        id: AccountId,
        at: DateTime<Utc>,
    ) -> impl Future<Output = StoreResult<bool>> + Send;

    /// Adds `delta` (negative to debit) to an unfrozen account in `currency`, in one
    /// conditional update that never lets the balance go below zero; the balance after, or
    /// `None` when the account refused it (missing, frozen, another currency, too little).
    fn move_balance(
        &mut self,
        id: AccountId,
        delta: Money,
    ) -> impl Future<Output = StoreResult<Option<i64>>> + Send;

    /// Posts a transfer and its entries; `balances_after` holds, leg by leg, the customer's
    /// balance after it (`None` for every other leg). Returns its id.
    fn insert_transfer(
        &mut self,
        posting: &Posting,
        balances_after: &[Option<i64>],
        at: DateTime<Utc>,
    ) -> impl Future<Output = StoreResult<TransferId>> + Send;

    /// The balance a customer leg of `transfer` left `account` with.
    fn balance_after(
        &mut self,
        transfer: TransferId,
        account: AccountId,
    ) -> impl Future<Output = StoreResult<Option<i64>>> + Send;

    /// An order by its id.
    fn order(
        &mut self,
        account: AccountId,
        order_ref: &str,
    ) -> impl Future<Output = StoreResult<Option<OrderRow>>> + Send;

    /// Records an order; `false` when the account already has one under this id.
    fn insert_order(&mut self, order: &OrderRow) -> impl Future<Output = StoreResult<bool>> + Send;

    /// Takes `amount` off an order's refundable remainder in one conditional update; the
    /// remainder after, or `None` when too little is left.
    fn take_refundable(
        &mut self,
        account: AccountId,
        order_ref: &str,
        amount_minor: i64,
    ) -> impl Future<Output = StoreResult<Option<i64>>> + Send;

    /// A refund by its id.
    fn refund(
        &mut self,
        account: AccountId,
        refund_ref: &str,
    ) -> impl Future<Output = StoreResult<Option<RefundRow>>> + Send;

    /// Records a refund; `false` when the account already has one under this id.
    fn insert_refund(
        &mut self,
        refund: &RefundRow,
    ) -> impl Future<Output = StoreResult<bool>> + Send;

    /// Records an adjustment; returns its id.
    fn insert_adjustment(
        &mut self,
        adjustment: &AdjustmentRow,
    ) -> impl Future<Output = StoreResult<i64>> + Send;

    /// An adjustment by id.
    fn adjustment(
        &mut self,
        id: i64,
    ) -> impl Future<Output = StoreResult<Option<AdjustmentRow>>> + Send;

    /// Decides a pending adjustment; `false` when it is no longer pending.
    fn decide_adjustment(
        &mut self,
        id: i64,
        state: AdjustmentState,
        by: &str,
        transfer: Option<TransferId>,
        at: DateTime<Utc>,
    ) -> impl Future<Output = StoreResult<bool>> + Send;

    /// An account's history, newest first, before transfer `before` (all when `None`).
    fn history(
        &mut self,
        account: AccountId,
        before: Option<TransferId>,
        rows: PageRows,
    ) -> impl Future<Output = StoreResult<Vec<HistoryLine>>> + Send;

    /// The first discrepancy in the books, in the order `ledger check` reports them.
    fn first_discrepancy(
        &mut self,
    ) -> impl Future<Output = StoreResult<Option<Discrepancy>>> + Send;

    /// Every system account's balance, by account and currency; the cards' together.
    fn system_balances(&mut self) -> impl Future<Output = StoreResult<Vec<SystemBalance>>> + Send;

    /// How many transfers, entries and accounts there are.
    fn ledger_counts(&mut self) -> impl Future<Output = StoreResult<(i64, i64, i64)>> + Send;
}
