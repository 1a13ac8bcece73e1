//! `tender expire …`

use chrono::SecondsFormat;
use clap::{Args, Subcommand};

use super::output::{print_table, show};
use super::{CliError, Ctx};
use crate::app::App;
use crate::service::expiry::{ExpiryReport, parse_as_of};
use crate::store::Store;

/// Cards per transaction when `tender expire` runs by hand, as the nightly duty's default.
const CHUNK_CARDS: usize = 2_000;

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub(super) struct ExpireArgs {
    #[command(subcommand)]
    command: Option<ExpireCommand>,
    /// Expire as of this instant (RFC 3339) or the end of this business day (2026-12-31);
    /// default now. Never later than now, except with --dry-run.
    #[arg(long, value_name = "WHEN")]
    as_of: Option<String>,
    /// Show what would expire, per currency and destination, without writing.
    #[arg(long)]
    dry_run: bool,
}

#[derive(Debug, Subcommand)]
enum ExpireCommand {
    /// List the cards whose funds expire in the coming days, per batch, jurisdiction,
    /// currency and destination.
    Outlook {
        /// How many days ahead (1 to 366).
        #[arg(long, default_value_t = 30)]
        days: u32,
    },
}

impl ExpireArgs {
    /// Previews and outlooks only read.
    pub(super) fn writes(&self) -> bool {
        self.command.is_none() && !self.dry_run
    }
}

pub(super) async fn run<S: Store>(
    app: &App<S>,
    ctx: &Ctx,
    args: ExpireArgs,
) -> Result<(), CliError> {
    let expiry = app.services().expiry();
    if let Some(ExpireCommand::Outlook { days }) = args.command {
        let lines = expiry.outlook(days).await?;
        return show(ctx.format, &lines, |lines| {
            if lines.is_empty() {
                println!("no active card's funds expire in the next {days} days");
                return;
            }
            print_table(
                &[
                    "batch",
                    "jurisdiction",
                    "cards",
                    "amount",
                    "first expires",
                    "to",
                ],
                lines.iter().map(|l| {
                    vec![
                        l.batch_id.to_string(),
                        l.jurisdiction.clone(),
                        l.cards.to_string(),
                        l.amount.to_string(),
                        l.first_expiry.to_rfc3339_opts(SecondsFormat::Secs, true),
                        l.destination.clone(),
                    ]
                }),
            )
        });
    }
    let as_of = match &args.as_of {
        Some(text) => parse_as_of(text, app.settings().business_time_zone)?,
        None => app.services().clock().now(),
    };
    let report = if args.dry_run {
        expiry.preview(as_of).await?
    } else {
        expiry.run(as_of, CHUNK_CARDS, &ctx.actor).await?
    };
    show(ctx.format, &report, print_report)
}

fn print_report(report: &ExpiryReport) {
    let verb = if report.dry_run {
        "would expire"
    } else {
        "expired"
    };
    println!(
        "{verb} {} cards as of {}{}",
        report.cards,
        report.as_of.to_rfc3339_opts(SecondsFormat::Secs, true),
        if report.dry_run {
            String::new()
        } else {
            format!(" in {} transfers", report.transfers)
        }
    );
    if !report.lines.is_empty() {
        print_table(
            &["currency", "to", "cards", "amount"],
            report.lines.iter().map(|l| {
                vec![
                    l.currency.code().to_string(),
                    l.destination.clone(),
                    l.cards.to_string(),
                    l.amount.to_string(),
                ]
            }),
        );
    }
}
