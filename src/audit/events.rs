//! The audit events tender records, one constructor per action, so the vocabulary lives in one
//! place. Details carry ids, counts, amounts and file hashes; never a code, a digest or a key.

use serde_json::json;

use super::AuditEvent;
use crate::domain::{
    Account, AccountId, Actor, ApiClient, Batch, BatchId, CardAction, Money, RetailStore, Retailer,
    RowCounts, Serial, SerialRange, TransferId, TransferKind,
};
use crate::keys::{KeyId, KeyPurpose, RecordedKey};

/// A key was recorded for this deployment (at `init`, or added pending a rotation). The
/// fingerprint identifies the key; it reveals nothing of it.
pub fn key_recorded(actor: &Actor, purpose: KeyPurpose, key: &RecordedKey) -> AuditEvent {
    AuditEvent::new(
        actor,
        "key.recorded",
        format!("key:{purpose}:{}", key.id),
        json!({
            "state": key.state,
            "fingerprint": hex::encode(key.fingerprint),
        }),
    )
}

/// A pending key became the active one; the one before it is retired. For the audit key,
/// `heads` is every chain's record count when it took office: the retired key tags nothing
/// after them, the new one nothing before.
pub fn key_activated(
    actor: &Actor,
    purpose: KeyPurpose,
    id: KeyId,
    retired: Option<KeyId>,
    heads: Option<Vec<i64>>,
) -> AuditEvent {
    let details = match heads {
        Some(heads) => json!({ "retired": retired, "heads": heads }),
        None => json!({ "retired": retired }),
    };
    AuditEvent::new(
        actor,
        "key.activated",
        format!("key:{purpose}:{id}"),
        details,
    )
}

/// A batch whose generation cannot go on was failed, with the reason.
pub fn batch_failed(actor: &Actor, batch_id: BatchId, reason: &str) -> AuditEvent {
    AuditEvent::new(
        actor,
        "batch.failed",
        format!("batch:{batch_id}"),
        json!({ "reason": reason }),
    )
}

/// A failed batch was put back to requested: its cards deleted, generation queued again.
pub fn batch_restarted(actor: &Actor, batch_id: BatchId, cards_deleted: u64) -> AuditEvent {
    AuditEvent::new(
        actor,
        "batch.restarted",
        format!("batch:{batch_id}"),
        json!({ "cards_deleted": cards_deleted }),
    )
}

/// A retailer was added.
pub fn retailer_added(actor: &Actor, retailer: &Retailer) -> AuditEvent {
    AuditEvent::new(
        actor,
        "retailer.added",
        format!("retailer:{}", retailer.id),
        json!({ "name": retailer.name, "commission_bp": retailer.commission_bp }),
    )
}

/// A batch was requested.
pub fn batch_requested(actor: &Actor, batch: &Batch) -> AuditEvent {
    AuditEvent::new(
        actor,
        "batch.requested",
        format!("batch:{}", batch.id),
        json!({
            "retailer_id": batch.retailer_id,
            "count": batch.count,
            "value": batch.value,
            "region": batch.region,
            "expires_at": batch.expires_at,
            "first_serial": batch.first_serial.to_string(),
            "lookup_key_id": batch.lookup_key_id,
        }),
    )
}

/// A chunk of cards was stored and appended to the printer file.
pub fn chunk_generated(
    actor: &Actor,
    batch_id: BatchId,
    first_index: u64,
    count: u64,
    collisions: u64,
    export_bytes: u64,
) -> AuditEvent {
    AuditEvent::new(
        actor,
        "batch.chunk_generated",
        format!("batch:{batch_id}"),
        json!({
            "first_index": first_index,
            "count": count,
            "collisions": collisions,
            "export_bytes": export_bytes,
        }),
    )
}

/// Every card of a batch is stored and its printer file is complete.
pub fn batch_completed(actor: &Actor, batch: &Batch) -> AuditEvent {
    AuditEvent::new(
        actor,
        "batch.completed",
        format!("batch:{}", batch.id),
        json!({ "generated": batch.generated, "collisions": batch.collisions }),
    )
}

/// The printer file was written; its hash lets anyone check the file delivered is this one.
pub fn export_written(actor: &Actor, batch: &Batch, file_name: &str) -> AuditEvent {
    AuditEvent::new(
        actor,
        "export.written",
        format!("batch:{}", batch.id),
        json!({
            "file": file_name,
            "rows": batch.generated,
            "bytes": batch.export_bytes,
            "mac": batch.export_mac,
        }),
    )
}

/// A printer file was checked against the stored digests.
pub fn export_verified(actor: &Actor, batch_id: BatchId, rows: u64, mac: &str) -> AuditEvent {
    AuditEvent::new(
        actor,
        "export.verified",
        format!("batch:{batch_id}"),
        json!({ "rows": rows, "mac": mac }),
    )
}

/// A customer account was created. Its external id is personal data and stays out.
pub fn account_created(actor: &Actor, account: &Account) -> AuditEvent {
    AuditEvent::new(
        actor,
        "account.created",
        format!("account:{}", account.id),
        json!({ "region": account.region, "currency": account.currency }),
    )
}

/// An account was frozen or unfrozen, with a reason code.
pub fn account_frozen(actor: &Actor, id: AccountId, frozen: bool, reason: &str) -> AuditEvent {
    let action = if frozen {
        "account.frozen"
    } else {
        "account.unfrozen"
    };
    AuditEvent::new(
        actor,
        action,
        format!("account:{id}"),
        json!({ "reason": reason }),
    )
}

/// A single-use sign-in link to the customer's page was minted for the account. The link's id
/// names it; the link itself, which opens a session, is never recorded.
pub fn sign_in_link_minted(
    actor: &Actor,
    account: AccountId,
    link_id: &str,
    expires_at: chrono::DateTime<chrono::Utc>,
) -> AuditEvent {
    AuditEvent::new(
        actor,
        "sign_in.link_minted",
        format!("account:{account}"),
        json!({ "link": link_id, "expires_at": expires_at }),
    )
}

/// A sign-in link was used: a browser session on the account's page began.
pub fn session_opened(actor: &Actor, account: AccountId, link_id: &str) -> AuditEvent {
    AuditEvent::new(
        actor,
        "sign_in.session_opened",
        format!("account:{account}"),
        json!({ "link": link_id }),
    )
}

/// The customer signed out: the session ended before its time.
pub fn session_ended(actor: &Actor, account: AccountId) -> AuditEvent {
    AuditEvent::new(
        actor,
        "sign_in.session_ended",
        format!("account:{account}"),
        json!({}),
    )
}

/// An account's personal data was erased.
pub fn account_erased(actor: &Actor, id: AccountId) -> AuditEvent {
    AuditEvent::new(actor, "account.erased", format!("account:{id}"), json!({}))
}

/// A transfer moved `amount` into (positive) or out of (negative) an account.
pub fn transfer_posted(
    actor: &Actor,
    kind: TransferKind,
    transfer: TransferId,
    account: AccountId,
    amount: Money,
) -> AuditEvent {
    let action = match kind {
        TransferKind::Spend => "ledger.spent",
        TransferKind::Refund => "ledger.refunded",
        TransferKind::Adjustment => "ledger.adjusted",
        TransferKind::Activation => "ledger.activated",
        TransferKind::Void => "ledger.voided",
        TransferKind::Redemption => "ledger.redeemed",
        TransferKind::TradeIn => "ledger.trade_in_credited",
        TransferKind::Clawback => "ledger.clawed_back",
        TransferKind::Breakage => "ledger.breakage",
        TransferKind::Escheat => "ledger.escheat",
        TransferKind::Payment => "ledger.payment_received",
    };
    AuditEvent::new(
        actor,
        action,
        format!("account:{account}"),
        json!({ "transfer_id": transfer, "amount": amount }),
    )
}

/// An adjustment above the approval threshold waits for a second person.
pub fn adjustment_requested(
    actor: &Actor,
    id: i64,
    account: AccountId,
    amount: Money,
    reason: &str,
) -> AuditEvent {
    AuditEvent::new(
        actor,
        "adjustment.requested",
        format!("account:{account}"),
        json!({ "adjustment_id": id, "amount": amount, "reason": reason }),
    )
}

/// A retailer's store was added, with the jurisdiction whose expiry law its sales follow.
pub fn store_added(actor: &Actor, store: &RetailStore) -> AuditEvent {
    AuditEvent::new(
        actor,
        "store.added",
        format!("retailer:{}", store.retailer_id),
        json!({ "store": store.code, "jurisdiction": store.jurisdiction }),
    )
}

/// What one activation request did: the serials it activated (as runs of consecutive
/// serials), the transfer that carried their value, and those accepted for review.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ActivationAudit<'a> {
    /// The POS request.
    pub request_id: i64,
    /// The retailer.
    pub retailer_id: i64,
    /// The store.
    pub store: &'a str,
    /// The terminal.
    pub terminal: &'a str,
    /// The POS transaction.
    pub pos_txn: &'a str,
    /// The serials asked for.
    pub range: SerialRange,
    /// The serials activated, as `[first, last]` runs.
    pub activated: Vec<[Serial; 2]>,
    /// Each card's value.
    pub value: Money,
    /// The transfer.
    pub transfer_id: TransferId,
    /// Exposed cards accepted from an offline sale, for review.
    pub review: Vec<Serial>,
}

/// Cards were sold at a store.
pub fn cards_activated(actor: &Actor, audit: &ActivationAudit<'_>) -> AuditEvent {
    AuditEvent::new(
        actor,
        "card.activated",
        format!("pos:{}", audit.request_id),
        audit,
    )
}

/// One expiry transfer: which cards expired as of when, and where their funds went.
#[derive(Debug, serde::Serialize)]
pub struct ExpiryAudit<'a> {
    /// The instant the run expired cards as of.
    pub as_of: chrono::DateTime<chrono::Utc>,
    /// The transfer.
    pub transfer_id: TransferId,
    /// `breakage` or `escheat_payable:{state}`.
    pub destination: &'a str,
    /// Their funds in all.
    pub amount: Money,
    /// The cards, as runs of consecutive serials.
    pub cards: Vec<[Serial; 2]>,
}

/// Active cards whose funds-expiry passed were expired.
pub fn cards_expired(actor: &Actor, audit: &ExpiryAudit<'_>) -> AuditEvent {
    AuditEvent::new(
        actor,
        "card.expired",
        format!("transfer:{}", audit.transfer_id),
        audit,
    )
}

/// A card's sale was voided by the store.
pub fn card_voided(
    actor: &Actor,
    serial: Serial,
    request_id: i64,
    transfer: TransferId,
) -> AuditEvent {
    AuditEvent::new(
        actor,
        "card.voided",
        format!("card:{serial}"),
        json!({ "request_id": request_id, "transfer_id": transfer }),
    )
}

/// A card's whole value was redeemed into a customer account. Never the code or its digest:
/// the serial names the card.
pub fn card_redeemed(
    actor: &Actor,
    serial: Serial,
    account: AccountId,
    transfer: TransferId,
    amount: Money,
) -> AuditEvent {
    AuditEvent::new(
        actor,
        "card.redeemed",
        format!("card:{serial}"),
        json!({ "account_id": account, "transfer_id": transfer, "amount": amount }),
    )
}

/// A card was blocked, unblocked, marked exposed or cleared of exposure, with a reason code.
pub fn card_flagged(actor: &Actor, serial: Serial, action: CardAction, reason: &str) -> AuditEvent {
    let action = match action {
        CardAction::Blocked => "card.blocked",
        CardAction::Unblocked => "card.unblocked",
        CardAction::Exposed => "card.exposed",
        CardAction::ExposureCleared => "card.exposure_cleared",
        CardAction::Activated => "card.activated",
        CardAction::Voided => "card.voided",
        CardAction::Redeemed => "card.redeemed",
    };
    AuditEvent::new(
        actor,
        action,
        format!("card:{serial}"),
        json!({ "reason": reason }),
    )
}

/// An API key was created: its role, bindings and public key id; never its secret or the
/// secret's hash.
pub fn api_key_created(actor: &Actor, client: &ApiClient) -> AuditEvent {
    AuditEvent::new(
        actor,
        "api_key.created",
        format!("api_key:{}", client.name),
        json!({
            "role": client.role,
            "retailer_id": client.retailer_id,
            "store": client.store,
            "key_id": client.key_id,
        }),
    )
}

/// An API key was revoked: it authenticates nothing from now on.
pub fn api_key_revoked(actor: &Actor, client: &ApiClient) -> AuditEvent {
    AuditEvent::new(
        actor,
        "api_key.revoked",
        format!("api_key:{}", client.name),
        json!({ "key_id": client.key_id }),
    )
}

/// A warehouse's valuation was recorded: new (`revised` false) or a revaluation. Ids and the
/// value only: the device stays in its mutable row.
pub fn trade_in_valued(
    actor: &Actor,
    id: i64,
    account: AccountId,
    value: Money,
    revision: i32,
    file: Option<i64>,
) -> AuditEvent {
    let action = if revision > 1 {
        "tradein.revalued"
    } else {
        "tradein.accepted"
    };
    AuditEvent::new(
        actor,
        action,
        format!("trade_in:{id}"),
        json!({ "account": account, "value": value, "revision": revision, "file": file }),
    )
}

/// A valuation's credit waits for finance, and why.
pub fn trade_in_held(actor: &Actor, id: i64, held_for: &str) -> AuditEvent {
    AuditEvent::new(
        actor,
        "tradein.held",
        format!("trade_in:{id}"),
        json!({ "held_for": held_for }),
    )
}

/// Finance decided a held valuation: approved (posted) or rejected with a reason.
pub fn trade_in_decided(
    actor: &Actor,
    id: i64,
    approved: bool,
    reason: Option<&str>,
) -> AuditEvent {
    let action = if approved {
        "tradein.approved"
    } else {
        "tradein.rejected"
    };
    AuditEvent::new(
        actor,
        action,
        format!("trade_in:{id}"),
        json!({ "reason": reason }),
    )
}

/// An upload of valuations ended: every row with its result, or refused as a whole.
pub fn trade_in_file_done(
    actor: &Actor,
    file_id: i64,
    sha256: Option<&str>,
    rows: &RowCounts,
    error: Option<&str>,
) -> AuditEvent {
    AuditEvent::new(
        actor,
        if error.is_some() {
            "tradein.file_refused"
        } else {
            "tradein.file_imported"
        },
        format!("trade_in_file:{file_id}"),
        json!({ "sha256": sha256, "rows": rows, "error": error }),
    )
}

/// Finance set the price band above which a model's credits wait for approval.
pub fn trade_in_band_set(actor: &Actor, model_key: &str, max: Money) -> AuditEvent {
    AuditEvent::new(
        actor,
        "tradein.band_set",
        format!("trade_in_band:{model_key}"),
        json!({ "max": max }),
    )
}

/// A retailer paid `amount` against what it owes, under its own reference.
pub fn payment_received(
    actor: &Actor,
    retailer: i64,
    reference: &str,
    amount: Money,
    transfer: TransferId,
) -> AuditEvent {
    AuditEvent::new(
        actor,
        "retailer.payment_received",
        format!("retailer:{retailer}"),
        json!({ "reference": reference, "amount": amount, "transfer_id": transfer }),
    )
}

/// A business day was settled: its reports' manifest, by SHA-256.
pub fn day_settled(actor: &Actor, business_date: &str, manifest_sha256: &str) -> AuditEvent {
    AuditEvent::new(
        actor,
        "settlement.closed",
        format!("settlement:{business_date}"),
        json!({ "manifest_sha256": manifest_sha256 }),
    )
}
