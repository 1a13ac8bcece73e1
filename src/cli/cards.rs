//! `tender store …`, `activate`, `void`, `block`, `unblock` and `card …`: thin over the cards
//! service. No command takes or prints a card's code: cards are named by serial.

use chrono::{DateTime, SecondsFormat, Utc};
use clap::{Args, Subcommand};

use super::output::{print_table, show, visible};
use super::{CliError, Ctx};
use crate::app::App;
use crate::domain::{ExpiryRule, PageRows, RetailStore};
use crate::keys::KeyNeeds;
use crate::service::cards::{ActivateForm, CardView, PosForm, PosResult, StoreForm, VoidForm};
use crate::store::Store;
use crate::store::pos::CardStatus;

/// The point-of-sale commands, each at the top level of `tender`.
#[derive(Debug, Subcommand)]
pub(super) enum CardsCommand {
    /// Add or list a retailer's stores.
    #[command(subcommand)]
    Store(StoreCommand),
    /// Sell a card, or a box of cards by serial range, at a store's till (idempotent by
    /// retailer, store, terminal, POS transaction and serials).
    Activate(ActivateArgs),
    /// Take back a sold card before it is redeemed: its sale is reversed (idempotent like
    /// activate, under the void's own POS transaction).
    Void(VoidArgs),
    /// Freeze a card (fraud, loss): it cannot be sold, redeemed or voided until unblocked.
    Block(FlagArgs),
    /// Lift a card's block.
    Unblock(FlagArgs),
    /// The support desk's view of a card, and its exposure flag.
    #[command(subcommand)]
    Card(CardCommand),
}

#[derive(Debug, Subcommand)]
pub(super) enum StoreCommand {
    /// Add a retailer's store.
    Add {
        /// The retailer's name.
        #[arg(long)]
        retailer: String,
        /// The retailer's own id for the store (1 to 64 of A-Z a-z 0-9 . _ : -).
        #[arg(long)]
        id: String,
        /// Where the store is, ISO 3166-2 (US-CA, CA-ON): it decides the cards' funds-expiry.
        #[arg(long)]
        jurisdiction: String,
    },
    /// List stores by retailer and id.
    List {
        /// Only this retailer's stores.
        #[arg(long)]
        retailer: Option<String>,
        /// Most stores to show (1 to 5000).
        #[arg(long, default_value_t = 100)]
        limit: u64,
    },
}

/// Where a POS request comes from.
#[derive(Debug, Args)]
pub(super) struct PosArgs {
    /// The retailer's name: the one the cards were issued to.
    #[arg(long)]
    retailer: String,
    /// The store's id, as added with `tender store add`.
    #[arg(long)]
    store: String,
    /// The till or terminal.
    #[arg(long)]
    terminal: String,
    /// The POS system's transaction id.
    #[arg(long)]
    pos_txn: String,
    /// When the sale happened at the till, RFC 3339 (a store-and-forward sale sent late): at
    /// most 5 minutes ahead and 7 days old. Default: now.
    #[arg(long)]
    pos_time: Option<String>,
}

#[derive(Debug, Args)]
pub(super) struct ActivateArgs {
    #[command(flatten)]
    pos: PosArgs,
    /// The card's serial, or the first of a range.
    #[arg(long)]
    serial: String,
    /// The last serial of a range of one batch (at most 1,000 cards).
    #[arg(long)]
    to_serial: Option<String>,
    /// The value, such as 50.00: required for variable-value cards, within the batch's range.
    #[arg(long, allow_hyphen_values = true)]
    value: Option<String>,
    /// The state of the purchaser's address, such as US-NY, where the till captured it: which
    /// state is owed the funds first if the card expires unredeemed.
    #[arg(long)]
    purchaser_state: Option<String>,
}

#[derive(Debug, Args)]
pub(super) struct VoidArgs {
    #[command(flatten)]
    pos: PosArgs,
    /// The card's serial.
    #[arg(long)]
    serial: String,
}

#[derive(Debug, Args)]
pub(super) struct FlagArgs {
    /// The card's serial.
    #[arg(long)]
    serial: String,
    /// A reason code (lower-case letters, digits, - and _), such as fraud_review.
    #[arg(long)]
    reason: String,
}

#[derive(Debug, Subcommand)]
pub(super) enum CardCommand {
    /// Show a card: state and flags, batch, retailer, sale, funds-expiry and history; never
    /// its code.
    Show {
        /// The card's serial.
        serial: String,
    },
    /// Mark a card exposed (its code was seen publicly): a live sale of it is refused.
    Expose {
        /// The card's serial.
        serial: String,
        /// A reason code.
        #[arg(long)]
        reason: String,
    },
    /// Clear a card's exposure once it has been looked into.
    ClearExposure {
        /// The card's serial.
        serial: String,
        /// A reason code.
        #[arg(long)]
        reason: String,
    },
}

impl CardsCommand {
    /// Every change records an audit event; reads load no key.
    pub(super) fn needs(&self) -> KeyNeeds {
        match self {
            CardsCommand::Store(StoreCommand::List { .. })
            | CardsCommand::Card(CardCommand::Show { .. }) => KeyNeeds::NONE,
            _ => KeyNeeds::AUDIT,
        }
    }
}

pub(super) async fn run<S: Store>(
    app: &App<S>,
    ctx: &Ctx,
    command: CardsCommand,
) -> Result<(), CliError> {
    let cards = app.services().cards();
    let actor = &ctx.actor;
    match command {
        CardsCommand::Store(StoreCommand::Add {
            retailer,
            id,
            jurisdiction,
        }) => {
            let form = StoreForm {
                retailer,
                store: id,
                jurisdiction,
            };
            let store = cards.add_store(&form, actor).await?;
            show(ctx.format, &store, |s| {
                println!(
                    "store {} of retailer {} added in {}: {}",
                    visible(s.code.as_str()),
                    s.retailer_id,
                    s.jurisdiction,
                    expiry_law(s)
                )
            })
        }
        CardsCommand::Store(StoreCommand::List { retailer, limit }) => {
            let stores = cards
                .stores(retailer.as_deref(), PageRows::new(limit)?)
                .await?;
            show(ctx.format, &stores, |stores| {
                print_table(
                    &["retailer", "store", "jurisdiction", "added"],
                    stores.iter().map(|s| {
                        vec![
                            s.retailer_id.to_string(),
                            s.code.to_string(),
                            s.jurisdiction.to_string(),
                            time(s.created_at),
                        ]
                    }),
                )
            })
        }
        CardsCommand::Activate(args) => {
            let form = ActivateForm {
                pos: pos_form(args.pos)?,
                serial: args.serial,
                to_serial: args.to_serial,
                value: args.value,
                purchaser_state: args.purchaser_state,
            };
            let result = cards.activate(&form, actor).await?;
            show(ctx.format, &result, print_activation)
        }
        CardsCommand::Void(args) => {
            let form = VoidForm {
                pos: pos_form(args.pos)?,
                serial: args.serial,
            };
            let result = cards.void(&form, actor).await?;
            show(ctx.format, &result, |r| {
                for card in &r.cards {
                    println!(
                        "card {} voided: transfer {} reverses its sale{}",
                        card.serial,
                        transfer(r),
                        replayed(r)
                    );
                }
            })
        }
        CardsCommand::Block(FlagArgs { serial, reason }) => {
            let status = cards.block(&serial, &reason, actor).await?;
            show_flagged(ctx, &status, "blocked", &reason)
        }
        CardsCommand::Unblock(FlagArgs { serial, reason }) => {
            let status = cards.unblock(&serial, &reason, actor).await?;
            show_flagged(ctx, &status, "unblocked", &reason)
        }
        CardsCommand::Card(CardCommand::Show { serial }) => {
            show(ctx.format, &cards.show(&serial).await?, print_card)
        }
        CardsCommand::Card(CardCommand::Expose { serial, reason }) => {
            let status = cards.expose(&serial, &reason, actor).await?;
            show_flagged(ctx, &status, "marked exposed", &reason)
        }
        CardsCommand::Card(CardCommand::ClearExposure { serial, reason }) => {
            let status = cards.clear_exposure(&serial, &reason, actor).await?;
            show_flagged(ctx, &status, "no longer marked exposed", &reason)
        }
    }
}

/// The form of a POS request, its time read as RFC 3339.
fn pos_form(args: PosArgs) -> Result<PosForm, CliError> {
    let pos_time = args
        .pos_time
        .map(|text| {
            // The text is not repeated back: whatever was pasted there stays off the terminal.
            DateTime::parse_from_rfc3339(&text)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|_| {
                    CliError::new(
                        "pos.time_malformed",
                        "--pos-time is not an RFC 3339 time such as 2026-12-03T16:05:00Z",
                    )
                })
        })
        .transpose()?;
    Ok(PosForm {
        retailer: args.retailer,
        store: args.store,
        terminal: args.terminal,
        pos_txn: args.pos_txn,
        pos_time,
    })
}

/// One line per card, then what the request did as a whole.
fn print_activation(r: &PosResult) {
    print_table(
        &["serial", "outcome", "value", "funds expire", "review"],
        r.cards.iter().map(|card| match &card.message {
            // A refused card: its code in the outcome column, and why.
            Some(message) => vec![
                card.serial.to_string(),
                card.outcome.clone(),
                "-".into(),
                "-".into(),
                message.clone(),
            ],
            None => vec![
                card.serial.to_string(),
                card.outcome.clone(),
                card.value.map_or("-".into(), |v| v.to_string()),
                expiry(card.funds_expire_at),
                card.review.clone().unwrap_or_default(),
            ],
        }),
    );
    let activated = r.cards.iter().filter(|c| c.message.is_none()).count();
    let moved = match r.transfer_id {
        Some(_) => format!(" in transfer {}", transfer(r)),
        None => "; nothing was written".into(),
    };
    let asked = r.cards.len();
    let noun = if asked == 1 { "card" } else { "cards" };
    println!(
        "activated {activated} of {asked} {noun}{moved}{}",
        replayed(r)
    );
}

/// The transfer a request posted, or `-`.
pub(super) fn transfer(r: &PosResult) -> String {
    r.transfer_id.map_or("-".into(), |t| t.to_string())
}

fn replayed(r: &PosResult) -> &'static str {
    if r.replayed {
        " (replayed: the first answer to this POS transaction; nothing new was written)"
    } else {
        ""
    }
}

fn show_flagged(ctx: &Ctx, status: &CardStatus, what: &str, reason: &str) -> Result<(), CliError> {
    show(ctx.format, status, |s| {
        println!(
            "card {} {what} ({}); it is {}",
            s.serial,
            visible(reason),
            s.state.as_str()
        )
    })
}

/// A card for the support desk, field by field, then its history.
pub(super) fn print_card(card: &CardView) {
    let mut flags = Vec::new();
    if let Some(reason) = &card.blocked {
        flags.push(format!("blocked: {}", visible(reason)));
    }
    if let Some(at) = card.exposed_at {
        flags.push(format!("exposed since {}", time(at)));
    }
    let flags = if flags.is_empty() {
        String::new()
    } else {
        format!(" ({})", flags.join("; "))
    };
    let batch = &card.batch;
    println!("card {}", card.serial);
    println!("  state         {}{flags}", card.state.as_str());
    println!(
        "  batch         {}: {}, region {}, printed expiry {}",
        batch.id,
        batch.value,
        batch.region,
        expiry(batch.expires_at)
    );
    println!(
        "  retailer      {} {} ({}% commission)",
        card.retailer.id,
        visible(card.retailer.name.as_str()),
        card.retailer.commission_bp.percent()
    );
    match &card.activation {
        None => println!("  sale          none: the card was never sold"),
        Some(sale) => {
            println!(
                "  store         {} in {}",
                visible(&sale.store),
                visible(&sale.jurisdiction)
            );
            if let Some(state) = &sale.purchaser_state {
                println!("  purchaser in  {}", visible(state));
            }
            println!("  terminal      {}", visible(&sale.terminal));
            println!("  POS txn       {}", visible(&sale.pos_txn));
            println!("  activated at  {}", time(sale.activated_at));
            println!(
                "  value         {} (transfer {})",
                sale.value, sale.transfer_id
            );
            println!("  commission    {}", sale.commission);
            println!("  funds expire  {}", expiry(sale.funds_expire_at));
            println!(
                "  review        {}",
                sale.review.as_deref().map_or("none".into(), visible)
            );
            if let (Some(txn), Some(transfer)) = (&sale.void_pos_txn, sale.void_transfer_id) {
                println!(
                    "  void          POS txn {} (transfer {transfer})",
                    visible(txn)
                );
            }
        }
    }
    println!("history, oldest first:");
    print_table(
        &["time", "action", "reason", "actor"],
        card.history.iter().map(|event| {
            vec![
                time(event.at),
                event.action.as_str().to_string(),
                event.reason.clone().unwrap_or_default(),
                event.actor.clone(),
            ]
        }),
    );
}

/// What the store's law makes of a card's funds-expiry.
pub(super) fn expiry_law(store: &RetailStore) -> String {
    match store.jurisdiction.expiry_rule() {
        ExpiryRule::Forbidden => "card funds sold here never expire".into(),
        ExpiryRule::MinimumYears(years) => {
            format!("card funds sold here expire no sooner than {years} years after the sale")
        }
        ExpiryRule::Unregulated => "no expiry law on record: the printed expiry stands".into(),
    }
}

/// A funds-expiry, or `never`.
pub(super) fn expiry(at: Option<DateTime<Utc>>) -> String {
    at.map_or("never".into(), time)
}

/// A time to the second, in UTC: what a support agent reads back to a caller.
fn time(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}
