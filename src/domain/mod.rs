//! The domain layer: gift card codes, card serials, money, regions, retailers, batches, cards
//! and the point of sale, jurisdictions and their expiry and escheat law, job schedules, settlement's business dates, the ledger's values, the API's
//! clients, and the actors the audit trail records.
//!
//! These types depend on nothing else in the crate, and on no database,
//! job queue or file format (no sqlx, apalis or csv): they only parse,
//! validate and format values, so every other layer can rely on a value of
//! one of these types being valid.

mod actor;
mod address;
mod api_key;
mod batch;
mod card;
mod code;
mod digits;
mod jurisdiction;
mod ledger;
mod money;
mod page;
mod pos;
mod region;
mod retailer;
mod schedule;
mod serial;
mod settlement;
mod tradein;

pub use actor::{ACTOR_SUFFIX_MAX_CHARS, ACTOR_USER_MAX_CHARS, Actor, ActorError};
pub use address::ClientAddress;
pub use api_key::{API_KEY_NAME_MAX_CHARS, ApiClient, ApiKeyName, ApiKeyValueError, ApiRole};
pub use batch::{
    Batch, BatchError, BatchId, BatchRequest, BatchState, CardValue, MAX_CARDS_PER_BATCH,
    MAX_EXPIRY_DAYS, max_card_value,
};
pub use card::{CardAction, CardSale, CardState};
pub use code::{Code, CodeError};
pub use jurisdiction::{ESCHEAT_LAW, EXPIRY_LAW, ExpiryRule, Jurisdiction, JurisdictionError};
pub use ledger::{
    Account, AccountId, Adjustment, Amount, HistoryLine, LedgerAccount, LedgerValueError, Leg,
    NAME_MAX_CHARS, Name, NewAccount, Posting, REFERENCE_MAX_CHARS, Reference, TradeInNote,
    TransferId, TransferKind, max_transfer,
};
pub use money::{Currency, Money, MoneyError};
pub use page::{PAGE_ROWS_MAX, PageRows, PageRowsError};
pub use pos::{
    POS_CLOCK_AHEAD_MAX, POS_ID_MAX_CHARS, POS_OFFLINE_MAX, PosError, PosTxnId, RANGE_CARDS_MAX,
    RetailStore, SerialRange, StoreCode, TerminalId, check_pos_time,
};
pub use region::{Region, RegionError};
pub use retailer::{
    CommissionRate, NewRetailer, RETAILER_NAME_MAX_CHARS, Retailer, RetailerError, RetailerId,
    RetailerName,
};
pub use schedule::{CATCH_UP_PERIODS_MAX, CatchUp, Schedule, ScheduleError, wall_clock_instant};
pub use serial::{SERIAL_SEQUENCE_MAX, Serial, SerialError};
pub use settlement::{BusinessDate, BusinessDateError, report_cell};
pub use tradein::{
    DEVICE_MODEL_MAX_CHARS, DEVICE_SERIAL_MAX_CHARS, DEVICE_SERIAL_MIN_CHARS, Device, DeviceModel,
    FIELD_MAX_BYTES, FieldError, Grade, HeldFor, IMEI_DIGITS, RowCounts, RowOutcome,
    TRADE_IN_ID_MAX_CHARS, TradeInError, TradeInId, TradeInState, Valuation, ValuationText,
    WarehouseId,
};
