//! `tender tradein …`: thin over the trade-in service.

use std::path::{Path, PathBuf};

use clap::Subcommand;

use super::output::{print_table, show, visible};
use super::{CliError, Ctx};
use crate::app::App;
use crate::domain::{PageRows, TradeInState};
use crate::keys::KeyNeeds;
use crate::service::tradein::{Approved, FileReport, Posted};
use crate::store::Store;
use crate::store::tradein::TradeInRow;

/// Refused rows a text report lists before it points at the rejects file.
const REPORT_REJECTS_SHOWN: u64 = 20;

#[derive(Debug, Subcommand)]
pub(super) enum TradeInCommand {
    /// Import a warehouse's CSV file of valuations: print the per-row report, write the
    /// rejects beside the file (FILE.rejects.csv), queue the posting. The same file again is
    /// answered with the first import's report.
    Import {
        /// The CSV file.
        file: PathBuf,
    },
    /// Post queued valuations now (the post-trade-ins job does the same).
    Post,
    /// List valuations, newest first.
    List {
        /// Only those in this state: queued, held, posted or rejected.
        #[arg(long)]
        state: Option<String>,
        /// Most to show (1 to 5000).
        #[arg(long, default_value_t = 50)]
        limit: u64,
        /// Show those older than this id.
        #[arg(long)]
        before: Option<i64>,
    },
    /// Show one valuation.
    Show {
        /// tender's id for it.
        id: i64,
    },
    /// Approve a held valuation and post it (finance; not its submitter).
    Approve {
        /// tender's id for it.
        id: i64,
    },
    /// Reject a held valuation (finance; not its submitter).
    Reject {
        /// tender's id for it.
        id: i64,
        /// A reason code (lower-case letters, digits, - and _).
        #[arg(long)]
        reason: String,
    },
    /// Set the price band above which a model's credits wait for finance.
    Band {
        /// The device model, as warehouses write it (case and spacing do not matter).
        #[arg(long)]
        model: String,
        /// The most a credit may be without approval, such as 800.00.
        #[arg(long)]
        max: String,
        /// Its currency.
        #[arg(long)]
        currency: String,
    },
    /// List the price bands.
    Bands,
    /// Delete uploads, their staged rows and rejects past their retention.
    Purge,
}

impl TradeInCommand {
    /// The key rings the command needs.
    pub(super) fn needs(&self) -> KeyNeeds {
        match self {
            TradeInCommand::List { .. } | TradeInCommand::Show { .. } | TradeInCommand::Bands => {
                KeyNeeds::NONE
            }
            // Deletes records by age: not the books, no audit event.
            TradeInCommand::Purge => KeyNeeds::NONE,
            TradeInCommand::Band { .. }
            | TradeInCommand::Approve { .. }
            | TradeInCommand::Reject { .. }
            | TradeInCommand::Post => KeyNeeds::AUDIT,
            // Device digests take the lookup key.
            TradeInCommand::Import { .. } => KeyNeeds::ALL,
        }
    }
}

pub(super) async fn run<S: Store>(
    app: &App<S>,
    ctx: &Ctx,
    command: TradeInCommand,
) -> Result<(), CliError> {
    let trade_ins = app.services().trade_ins();
    let actor = &ctx.actor;
    match command {
        TradeInCommand::Import { file } => {
            let source = std::fs::File::open(&file).map_err(|e| {
                CliError::new("tradein.io", format!("cannot open {}: {e}", file.display()))
            })?;
            let name = file.file_name().map(|n| n.to_string_lossy().into_owned());
            let report = trade_ins.import(source, name.as_deref(), actor).await?;
            let rejects = rejects_path(&file);
            let rows = report.file.rows.rejected;
            if rows > 0 {
                let out = std::fs::File::create(&rejects).map_err(|e| {
                    CliError::new(
                        "tradein.io",
                        format!("cannot write {}: {e}", rejects.display()),
                    )
                })?;
                let (out, _) = trade_ins
                    .write_rejects(report.file.file_id, std::io::BufWriter::new(out))
                    .await?;
                out.into_inner()
                    .map_err(|e| CliError::new("tradein.io", e.to_string()))?
                    .sync_all()
                    .map_err(|e| CliError::new("tradein.io", e.to_string()))?;
            }
            let shown = trade_ins
                .file_rows(
                    report.file.file_id,
                    0,
                    PageRows::new(REPORT_REJECTS_SHOWN).expect("within the page limit"),
                )
                .await;
            show(ctx.format, &report, |r| {
                print_report(r);
                if let Ok(rows) = &shown {
                    for row in rows.iter().filter(|r| r.code.is_some()) {
                        println!(
                            "  line {}: {}: {}",
                            row.row,
                            row.code.as_deref().unwrap_or_default(),
                            visible(row.reason.as_deref().unwrap_or_default())
                        );
                    }
                }
                if rows > 0 {
                    println!("rejects: {}", rejects.display());
                }
            })?;
            match &report.file.error {
                Some((code, message)) => Err(CliError::new(
                    "tradein_file.refused",
                    format!("the file was refused ({code}): {message}"),
                )),
                None => Ok(()),
            }
        }
        TradeInCommand::Post => {
            let run = trade_ins.post_queued(actor).await?;
            show(ctx.format, &run, |r| {
                println!("posted {}, held for finance {}", r.posted, r.held);
            })
        }
        TradeInCommand::List {
            state,
            limit,
            before,
        } => {
            let state = state
                .map(|s| {
                    TradeInState::parse(&s).ok_or_else(|| {
                        CliError::new(
                            "tradein.bad_state",
                            "a state is queued, held, posted or rejected",
                        )
                    })
                })
                .transpose()?;
            let rows = trade_ins.list(state, before, PageRows::new(limit)?).await?;
            show(ctx.format, &rows, |rows| {
                print_table(
                    &[
                        "id",
                        "warehouse",
                        "trade-in",
                        "account",
                        "value",
                        "credited",
                        "owed",
                        "state",
                        "model",
                    ],
                    rows.iter().map(|r| {
                        let currency = r.value.currency();
                        let money = |minor| crate::domain::Money::from_minor(minor, currency);
                        vec![
                            r.id.to_string(),
                            visible(&r.warehouse_id).into_owned(),
                            visible(&r.trade_in_ref).into_owned(),
                            r.account_id.to_string(),
                            r.value.to_string(),
                            money(r.credited_minor).to_string(),
                            money(r.owed_minor).to_string(),
                            state_text(r),
                            visible(r.device_model.as_deref().unwrap_or("(erased)")).into_owned(),
                        ]
                    }),
                );
            })
        }
        TradeInCommand::Show { id } => {
            let row = trade_ins.show(id).await?;
            show(ctx.format, &row, print_trade_in)
        }
        TradeInCommand::Approve { id } => {
            let approved = trade_ins.approve(id, actor).await?;
            show(ctx.format, &approved, |a| print_approved(id, a))
        }
        TradeInCommand::Reject { id, reason } => {
            let row = trade_ins.reject(id, &reason, actor).await?;
            show(ctx.format, &row, print_trade_in)
        }
        TradeInCommand::Band {
            model,
            max,
            currency,
        } => {
            let band = trade_ins.set_band(&model, &max, &currency, actor).await?;
            show(ctx.format, &band, |b| {
                println!(
                    "credits for {} above {} wait for approval",
                    visible(&b.model_key),
                    b.max
                );
            })
        }
        TradeInCommand::Bands => {
            let bands = trade_ins.bands().await?;
            show(ctx.format, &bands, |bands| {
                print_table(
                    &["model", "max without approval"],
                    bands
                        .iter()
                        .map(|b| vec![visible(&b.model_key).into_owned(), b.max.to_string()]),
                );
            })
        }
        TradeInCommand::Purge => {
            let purged = trade_ins.purge_files().await?;
            show(ctx.format, &purged, |n| {
                println!("purged {n} trade-in uploads past their retention");
            })
        }
    }
}

/// Where an import writes its rejects: beside the file, `NAME.rejects.csv`.
pub(super) fn rejects_path(file: &Path) -> PathBuf {
    let mut name = file.file_name().unwrap_or_default().to_os_string();
    name.push(".rejects.csv");
    file.with_file_name(name)
}

/// An upload's report in a few lines.
pub(super) fn print_report(r: &FileReport) {
    let f = &r.file;
    let repeated = if r.repeated {
        " (these bytes were imported before: this is that import's report)"
    } else {
        ""
    };
    println!(
        "trade-in file {} {}{repeated}: {} rows, {} accepted, {} unchanged, {} revalued, {} rejected",
        f.file_id,
        f.state.as_str(),
        f.rows.total,
        f.rows.accepted,
        f.rows.unchanged,
        f.rows.revalued,
        f.rows.rejected
    );
    if let Some((code, message)) = &f.error {
        println!("  refused ({code}): {}", visible(message));
    }
}

fn state_text(r: &TradeInRow) -> String {
    match r.held_for {
        Some(why) => format!("held ({})", why.as_str()),
        None => r.state.as_str().to_string(),
    }
}

fn print_trade_in(r: &TradeInRow) {
    let currency = r.value.currency();
    let money = |minor| crate::domain::Money::from_minor(minor, currency);
    println!(
        "trade-in {} ({} {}), account {}: {} {}, grade {}, assessed {}",
        r.id,
        visible(&r.warehouse_id),
        visible(&r.trade_in_ref),
        r.account_id,
        visible(r.device_model.as_deref().unwrap_or("(erased)")),
        r.device_id
            .as_deref()
            .map_or("(erased)".to_string(), |d| format!(
                "...{}",
                &d[d.len().saturating_sub(4)..]
            )),
        r.grade.as_str(),
        r.assessed_at.to_rfc3339()
    );
    println!(
        "  value {}, credited {}, owed {}, {} (revision {})",
        r.value,
        money(r.credited_minor),
        money(r.owed_minor),
        state_text(r),
        r.revision
    );
    if let Some(reason) = &r.reason {
        println!("  rejected: {}", visible(reason));
    }
}

fn print_approved(id: i64, a: &Approved) {
    match a.posted {
        None => println!("trade-in {id} was approved before: nothing new was written"),
        Some(Posted::Posted {
            transfer_id,
            amount,
            owed,
        }) => {
            let transfer = transfer_id.map_or(String::new(), |t| format!(" as transfer {t}"));
            println!("trade-in {id} approved: {amount} posted{transfer}, owed {owed}");
        }
        Some(Posted::Held { held_for }) => {
            println!("trade-in {id} still waits: {}", held_for.as_str());
        }
    }
}
