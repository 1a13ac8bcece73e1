//! `tender settle …`

use std::io::Write;
use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::output::{print_table, show};
use super::{CliError, Ctx};
use crate::app::App;
use crate::domain::{BusinessDate, Money};
use crate::keys::{SEAL_PUBLIC_KEY_FILE, SealKey, SealPublicKey};
use crate::service::settlement::{PaymentForm, Settled};
use crate::store::Store;

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub(super) struct SettleArgs {
    #[command(subcommand)]
    command: Option<SettleCommand>,
    /// The business date to close (YYYY-MM-DD in the business time zone); default the latest
    /// day whose cut-off and grace period have passed.
    #[arg(long, value_name = "DATE")]
    date: Option<String>,
}

#[derive(Debug, Subcommand)]
enum SettleCommand {
    /// Check a closed day's files in the report directory against its signed manifest.
    Verify {
        /// The business date.
        #[arg(long, value_name = "DATE")]
        date: String,
        /// The seal public key (default: seal.pub in the key directory).
        #[arg(long, value_name = "FILE")]
        seal_public_key: Option<PathBuf>,
    },
    /// Write a closed day's files, as stored, into a directory, or one of them to stdout.
    Export {
        /// The business date.
        #[arg(long, value_name = "DATE")]
        date: String,
        /// The directory to write them into (created if missing).
        #[arg(
            long,
            value_name = "DIR",
            conflicts_with = "file",
            required_unless_present = "file"
        )]
        out: Option<PathBuf>,
        /// The one file to write to stdout (roll_forward.csv, manifest.json, …).
        #[arg(long, value_name = "NAME")]
        file: Option<String>,
    },
    /// Record a payment a retailer made against what it owes; idempotent by its reference.
    RecordPayment {
        /// The retailer's name.
        #[arg(long)]
        retailer: String,
        /// The amount, such as 1250.00.
        #[arg(long)]
        amount: String,
        /// ISO 4217 currency code.
        #[arg(long)]
        currency: String,
        /// The retailer's reference for the payment (its remittance id).
        #[arg(long, allow_hyphen_values = true)]
        reference: String,
    },
}

impl SettleArgs {
    /// Closing a day and recording a payment write audit records; the rest only read.
    pub(super) fn writes(&self) -> bool {
        matches!(
            self.command,
            None | Some(SettleCommand::RecordPayment { .. })
        )
    }
}

fn parse_date(text: &str) -> Result<BusinessDate, CliError> {
    BusinessDate::parse(text).map_err(|e| CliError::new("settle.bad_date", e.to_string()))
}

pub(super) async fn run<S: Store>(
    app: &App<S>,
    ctx: &Ctx,
    args: SettleArgs,
) -> Result<(), CliError> {
    let settings = app.settings();
    let settlement = app.services().settlement();
    match args.command {
        None => {
            let date = match args.date {
                Some(text) => parse_date(&text)?,
                None => settlement
                    .closable_as_of(app.services().clock().now())
                    .ok_or_else(|| CliError::new("settle.bad_date", "no day can close yet"))?,
            };
            let key = SealKey::load(&settings.key_dir())?;
            let settled = settlement
                .settle(
                    date,
                    &key,
                    &settings.witness_file(),
                    &settings.report_dir(),
                    &ctx.actor,
                )
                .await?;
            show(ctx.format, &settled, print_settled)
        }
        Some(SettleCommand::Verify {
            date,
            seal_public_key,
        }) => {
            let date = parse_date(&date)?;
            let path =
                seal_public_key.unwrap_or_else(|| settings.key_dir().join(SEAL_PUBLIC_KEY_FILE));
            let public = SealPublicKey::read_file(&path)?;
            let verification = settlement
                .verify(date, &public, &settings.report_dir())
                .await?;
            show(ctx.format, &verification, |v| {
                println!(
                    "{}: manifest signature {}, manifest file {}",
                    v.date,
                    if v.signature_ok { "valid" } else { "INVALID" },
                    if v.manifest_ok { "matches" } else { "DIFFERS" }
                );
                print_table(
                    &["file", "status"],
                    v.files
                        .iter()
                        .map(|f| vec![f.name.clone(), f.status.to_string()]),
                );
            })?;
            if verification.ok() {
                Ok(())
            } else {
                Err(CliError::new(
                    "settle.verify_failed",
                    format!("the reports of {date} do not match their signed manifest"),
                ))
            }
        }
        Some(SettleCommand::Export { date, out, file }) => {
            let date = parse_date(&date)?;
            if let Some(name) = file {
                let bytes = settlement.file(date, &name).await?;
                let mut stdout = std::io::stdout().lock();
                stdout
                    .write_all(&bytes)
                    .and_then(|()| stdout.flush())
                    .map_err(|e| CliError::new("settle.io", format!("stdout: {e}")))?;
                return Ok(());
            }
            let dir = out.expect("clap requires --out without --file");
            let files = settlement.export(date).await?;
            std::fs::create_dir_all(&dir).map_err(|e| {
                CliError::new(
                    "settle.io",
                    format!("{} could not be created: {e}", dir.display()),
                )
            })?;
            for (name, bytes) in &files {
                let path = dir.join(name);
                std::fs::write(&path, bytes).map_err(|e| {
                    CliError::new(
                        "settle.io",
                        format!("{} could not be written: {e}", path.display()),
                    )
                })?;
            }
            println!("wrote {} files of {date} to {}", files.len(), dir.display());
            Ok(())
        }
        Some(SettleCommand::RecordPayment {
            retailer,
            amount,
            currency,
            reference,
        }) => {
            let form = PaymentForm::parse(&retailer, &amount, &currency, &reference)?;
            let recorded = settlement.record_payment(&form, &ctx.actor).await?;
            show(ctx.format, &recorded, |r| {
                let money = Money::from_minor(form.amount.minor(), form.amount.currency());
                if r.replayed {
                    println!(
                        "payment {} of {money} was recorded before (transfer {})",
                        form.reference.as_str(),
                        r.transfer_id
                    );
                } else {
                    println!(
                        "recorded payment {} of {money} from {} (transfer {})",
                        form.reference.as_str(),
                        form.retailer.as_str(),
                        r.transfer_id
                    );
                }
            })
        }
    }
}

/// The roll-forward per currency and the retailer statements, as tables.
pub(super) fn print_settled(settled: &Settled) {
    println!(
        "{} {}; reports in {} (audit seal {})",
        settled.date,
        if settled.closed_now {
            "closed"
        } else {
            "was closed; the rerun gave the same bytes"
        },
        settled.dir.display(),
        settled.seal_id.map_or("-".to_string(), |id| id.to_string())
    );
    for roll in &settled.roll_forward {
        println!("roll-forward, {}:", roll.currency.code());
        print_table(
            &["line", "amount"],
            roll.lines.iter().map(|l| {
                vec![
                    l.line.clone(),
                    Money::from_minor(l.minor, roll.currency).to_string(),
                ]
            }),
        );
    }
    if settled.statements.is_empty() {
        println!("no retailer sold, voided or owed anything");
        return;
    }
    println!("retailer statements:");
    print_table(
        &[
            "retailer",
            "opening",
            "sold",
            "gross",
            "commission",
            "voided",
            "net due",
            "paid",
            "closing",
        ],
        settled.statements.iter().map(|s| {
            let money = |minor| Money::from_minor(minor, s.currency).to_string();
            vec![
                s.retailer.clone(),
                money(s.opening),
                s.activated_cards.to_string(),
                money(s.activated_gross),
                money(s.commission),
                s.voided_cards.to_string(),
                money(s.net_due),
                money(s.payments),
                money(s.closing),
            ]
        }),
    );
}
