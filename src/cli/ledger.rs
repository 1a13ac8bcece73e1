//! `tender account …`, `balance`, `history`, `spend`, `refund`, `adjust`, `ledger check`: thin
//! over the ledger service.

use clap::{Args, Subcommand};

use super::output::{print_table, show, visible};
use super::{CliError, Ctx};
use crate::app::App;
use crate::domain::{Account, HistoryLine, PageRows, TransferId};
use crate::service::ledger::{AccountForm, AdjustForm, Adjusted, Posted, RefundForm, SpendForm};
use crate::store::Store;

#[derive(Debug, Subcommand)]
pub(super) enum AccountCommand {
    /// Create a customer account with a zero balance.
    Create {
        /// Storefront country (ISO 3166-1 alpha-2).
        #[arg(long)]
        region: String,
        /// The account's one currency (ISO 4217).
        #[arg(long)]
        currency: String,
        /// The store's own customer id (unique; personal data, erasable).
        #[arg(long)]
        external_id: Option<String>,
    },
    /// Show an account.
    Show {
        /// The account id.
        account: String,
    },
    /// Freeze an account: it can neither receive nor spend.
    Freeze {
        /// The account id.
        account: String,
        /// A reason code (lower-case letters, digits, - and _).
        #[arg(long)]
        reason: String,
    },
    /// Unfreeze an account.
    Unfreeze {
        /// The account id.
        account: String,
        /// A reason code.
        #[arg(long)]
        reason: String,
    },
    /// Blank an account's personal data (its external id); its ledger stays whole.
    Erase {
        /// The account id.
        account: String,
    },
    /// Mint a single-use sign-in link to the account's page, valid for 5 minutes. It opens the
    /// account: hand it to its customer only.
    Link {
        /// The account id.
        account: String,
    },
}

#[derive(Debug, Args)]
pub(super) struct AccountArg {
    /// The account id.
    #[arg(long)]
    account: String,
}

#[derive(Debug, Args)]
pub(super) struct HistoryArgs {
    /// The account id.
    #[arg(long)]
    account: String,
    /// Most lines to show (1 to 5000).
    #[arg(long, default_value_t = 50)]
    limit: u64,
    /// Show lines older than this cursor (the last transfer id of the page before).
    #[arg(long)]
    after: Option<i64>,
}

#[derive(Debug, Args)]
pub(super) struct SpendArgs {
    /// The account id.
    #[arg(long)]
    account: String,
    /// The amount, such as 10.00.
    #[arg(long)]
    amount: String,
    /// Its currency: the account's.
    #[arg(long)]
    currency: String,
    /// The order id: spending twice under one order id spends once.
    #[arg(long)]
    order: String,
    /// The spending service (app-store, icloud…).
    #[arg(long)]
    service: String,
}

#[derive(Debug, Args)]
pub(super) struct RefundArgs {
    /// The account id.
    #[arg(long)]
    account: String,
    /// The order refunded.
    #[arg(long)]
    order: String,
    /// The refund id: refunding twice under one id refunds once.
    #[arg(long)]
    refund: String,
    /// The amount, at most what the order has left to refund.
    #[arg(long)]
    amount: String,
    /// Its currency.
    #[arg(long)]
    currency: String,
}

#[derive(Debug, Args)]
#[command(subcommand_negates_reqs = true, args_conflicts_with_subcommands = true)]
pub(super) struct AdjustArgs {
    #[command(subcommand)]
    approve: Option<AdjustCommand>,
    /// The account id.
    #[arg(long, required = true)]
    account: Option<String>,
    /// Signed amount: 25.00 credits, -25.00 debits.
    #[arg(long, required = true, allow_hyphen_values = true)]
    amount: Option<String>,
    /// Its currency.
    #[arg(long, required = true)]
    currency: Option<String>,
    /// A reason code (goodwill, correction…).
    #[arg(long, required = true)]
    reason: Option<String>,
}

#[derive(Debug, Subcommand)]
enum AdjustCommand {
    /// Approve a pending adjustment: anyone but its requester.
    Approve {
        /// The adjustment id.
        id: i64,
    },
}

#[derive(Debug, Subcommand)]
pub(super) enum LedgerCommand {
    /// Prove that every transfer balances and every stored balance is the sum of its entries;
    /// exits 1 naming the first discrepancy.
    Check,
}

/// A ledger command line.
#[derive(Debug)]
pub(super) enum Command {
    Account(AccountCommand),
    Balance(AccountArg),
    History(HistoryArgs),
    Spend(SpendArgs),
    Refund(RefundArgs),
    Adjust(AdjustArgs),
    Ledger(LedgerCommand),
}

pub(super) async fn run<S: Store>(
    app: &App<S>,
    ctx: &Ctx,
    command: Command,
) -> Result<(), CliError> {
    let ledger = app.services().ledger();
    let actor = &ctx.actor;
    match command {
        Command::Account(AccountCommand::Create {
            region,
            currency,
            external_id,
        }) => {
            let form = AccountForm {
                region,
                currency,
                external_id,
            };
            let account = ledger.create_account(&form, actor).await?;
            show_account(ctx, &account, "created")
        }
        Command::Account(AccountCommand::Show { account }) => {
            show_account(ctx, &ledger.account(&account).await?, "")
        }
        Command::Account(AccountCommand::Freeze { account, reason }) => {
            let account = ledger.freeze(&account, true, &reason, actor).await?;
            show_account(ctx, &account, "frozen")
        }
        Command::Account(AccountCommand::Unfreeze { account, reason }) => {
            let account = ledger.freeze(&account, false, &reason, actor).await?;
            show_account(ctx, &account, "unfrozen")
        }
        Command::Account(AccountCommand::Erase { account }) => {
            let account = ledger.erase(&account, actor).await?;
            show_account(ctx, &account, "erased")
        }
        Command::Account(AccountCommand::Link { account }) => {
            let link = app.services().sessions().mint(&account, actor).await?;
            show(ctx.format, &link, |link| {
                println!("{}", link.url);
                println!(
                    "single use; expires {} (opens account {})",
                    link.expires_at.to_rfc3339(),
                    link.account_id
                );
            })
        }
        Command::Balance(AccountArg { account }) => {
            let account = ledger.account(&account).await?;
            show(ctx.format, &account, |a| {
                println!("account {}: {}", a.id, a.balance);
            })
        }
        Command::History(args) => {
            let rows = PageRows::new(args.limit)?;
            let lines = ledger
                .history(&args.account, args.after.map(TransferId), rows)
                .await?;
            show(ctx.format, &lines, |lines| {
                print_table(
                    &[
                        "transfer",
                        "type",
                        "amount",
                        "balance after",
                        "reference",
                        "time",
                    ],
                    lines.iter().map(|l| {
                        vec![
                            l.transfer_id.to_string(),
                            l.kind.as_str().to_string(),
                            l.amount.to_string(),
                            l.balance_after.to_string(),
                            reference(l),
                            l.effective_at.to_rfc3339(),
                        ]
                    }),
                );
                if let Some(last) = lines.last().filter(|_| lines.len() as u64 == args.limit) {
                    println!("more: --after {}", last.transfer_id);
                }
            })
        }
        Command::Spend(args) => {
            let form = SpendForm {
                account: args.account,
                amount: args.amount,
                currency: args.currency,
                order: args.order,
                service: args.service,
                effective_at: None,
            };
            let posted = ledger.spend(&form, actor).await?;
            show_posted(ctx, &posted, "spent")
        }
        Command::Refund(args) => {
            let form = RefundForm {
                account: args.account,
                order: args.order,
                refund: args.refund,
                amount: args.amount,
                currency: args.currency,
                effective_at: None,
            };
            let posted = ledger.refund(&form, actor).await?;
            show_posted(ctx, &posted, "refunded")
        }
        Command::Adjust(AdjustArgs {
            approve: Some(AdjustCommand::Approve { id }),
            ..
        }) => {
            let posted = ledger.approve(id, actor).await?;
            show_posted(ctx, &posted, "adjustment approved and posted")
        }
        Command::Adjust(args) => {
            let form = AdjustForm {
                account: args.account.unwrap_or_default(),
                amount: args.amount.unwrap_or_default(),
                currency: args.currency.unwrap_or_default(),
                reason: args.reason.unwrap_or_default(),
            };
            let adjusted = ledger.adjust(&form, actor).await?;
            show(ctx.format, &adjusted, |a| match a {
                Adjusted::Posted {
                    adjustment_id,
                    posted,
                } => println!(
                    "adjustment {adjustment_id} posted as transfer {}: balance {}",
                    posted.transfer_id, posted.balance_after
                ),
                Adjusted::Pending { adjustment_id } => println!(
                    "adjustment {adjustment_id} waits for approval: someone else runs `tender adjust approve {adjustment_id}`"
                ),
            })
        }
        Command::Ledger(LedgerCommand::Check) => {
            let report = ledger.check().await?;
            show(ctx.format, &report, |r| {
                match &r.discrepancy {
                    None => println!(
                        "ledger balanced: {} transfers, {} entries, {} accounts",
                        r.transfers, r.entries, r.accounts
                    ),
                    Some(d) => println!("ledger DISCREPANCY: {d}"),
                }
                for balance in &r.system_balances {
                    println!(
                        "  {} {}: {}",
                        visible(&balance.ledger_account),
                        balance.currency,
                        balance.balance_minor
                    );
                }
            })?;
            match report.discrepancy {
                Some(d) => Err(CliError::new(
                    "ledger.discrepancy",
                    format!("the ledger check failed: {d}"),
                )),
                None => Ok(()),
            }
        }
    }
}

/// A history line's reference, with a trade-in's device and what a claw-back left owed.
pub(super) fn reference(line: &HistoryLine) -> String {
    let mut text = visible(line.reference.as_deref().unwrap_or_default()).into_owned();
    if let Some(note) = &line.trade_in {
        if let Some(model) = &note.device_model {
            text.push_str(&format!(" {}", visible(model)));
        }
        if let Some(last4) = &note.device_last4 {
            text.push_str(&format!(" ...{last4}"));
        }
        if !note.owed.is_zero() {
            text.push_str(&format!(" (owed {})", note.owed));
        }
    }
    text
}

fn show_account(ctx: &Ctx, account: &Account, what: &str) -> Result<(), CliError> {
    show(ctx.format, account, |a| {
        let frozen = a
            .frozen_reason
            .as_deref()
            .map_or(String::new(), |r| format!(", frozen ({})", visible(r)));
        println!(
            "account {} {what}: {} {}, balance {}{frozen}",
            a.id, a.region, a.currency, a.balance
        );
    })
}

fn show_posted(ctx: &Ctx, posted: &Posted, what: &str) -> Result<(), CliError> {
    show(ctx.format, posted, |p| {
        let replayed = if p.replayed {
            " (a repeat: nothing new was written)"
        } else {
            ""
        };
        println!(
            "{what}: transfer {}, balance {}{replayed}",
            p.transfer_id, p.balance_after
        );
    })
}
