//! `tender batch …`

use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::output::{print_batch, print_table, show};
use super::{CliError, Ctx};
use crate::app::App;
use crate::domain::{BatchId, PageRows};
use crate::keys::KeyNeeds;
use crate::service::batches::BatchForm;
use crate::store::Store;

#[derive(Debug, Subcommand)]
pub(super) enum BatchCommand {
    /// Request a batch of cards; generation runs on the job runner.
    Create(CreateBatch),
    /// List batches, newest first.
    List {
        /// Most batches to show.
        #[arg(long, default_value_t = 50)]
        limit: u64,
    },
    /// Show one batch and its progress.
    Show {
        /// Batch id.
        id: i64,
    },
    /// Check a printer file against the stored digests (prints no code).
    VerifyExport {
        /// The printer file.
        file: PathBuf,
    },
    /// Put a failed batch back to requested: delete its stored cards and queue its generation
    /// again. Destroy the old printer file first; its codes are no longer issued.
    Restart {
        /// Batch id.
        id: i64,
    },
}

impl BatchCommand {
    /// The keys the command loads: generation's checks need the lookup key, changes the audit
    /// key, reads none.
    pub(super) fn needs(&self) -> KeyNeeds {
        match self {
            BatchCommand::List { .. } | BatchCommand::Show { .. } => KeyNeeds::NONE,
            BatchCommand::Create(_) | BatchCommand::Restart { .. } => KeyNeeds::AUDIT,
            BatchCommand::VerifyExport { .. } => KeyNeeds::ALL,
        }
    }
}

#[derive(Debug, Args)]
pub(super) struct CreateBatch {
    /// Retailer name.
    #[arg(long)]
    retailer: String,
    /// Number of cards.
    #[arg(long)]
    count: u64,
    /// Fixed value of every card, such as 25.00.
    #[arg(long, allow_hyphen_values = true, conflicts_with_all = ["min", "max"], required_unless_present = "min")]
    value: Option<String>,
    /// Lowest value of a variable-value batch (set at activation).
    #[arg(long, allow_hyphen_values = true, requires = "max")]
    min: Option<String>,
    /// Highest value of a variable-value batch.
    #[arg(long, allow_hyphen_values = true, requires = "min")]
    max: Option<String>,
    /// ISO 4217 currency code.
    #[arg(long)]
    currency: String,
    /// ISO 3166-1 alpha-2 storefront country.
    #[arg(long)]
    region: String,
    /// Days from now until the cards expire (default: no expiry).
    #[arg(long)]
    expires_in_days: Option<u32>,
}

pub(super) async fn run<S: Store>(
    app: &App<S>,
    ctx: &Ctx,
    command: BatchCommand,
) -> Result<(), CliError> {
    let services = app.services();
    match command {
        BatchCommand::Create(args) => {
            let form = BatchForm {
                retailer: args.retailer,
                count: args.count,
                value: args.value,
                min: args.min,
                max: args.max,
                currency: args.currency,
                region: args.region,
                expires_in_days: args.expires_in_days,
            };
            let batch = services.batches().request(&form, &ctx.actor).await?;
            show(ctx.format, &batch, |b| {
                println!(
                    "batch {} requested: {} cards of {}, serials from {}; `tender work` generates it",
                    b.id, b.count, b.value, b.first_serial
                );
            })
        }
        BatchCommand::List { limit } => {
            let batches = services.batches().list(PageRows::new(limit)?).await?;
            show(ctx.format, &batches, |bs| {
                print_table(
                    &["batch", "retailer", "state", "generated", "value", "region"],
                    bs.iter().map(|b| {
                        vec![
                            b.id.to_string(),
                            b.retailer_id.to_string(),
                            b.state.as_str().to_string(),
                            format!("{} of {}", b.generated, b.count),
                            b.value.to_string(),
                            b.region.to_string(),
                        ]
                    }),
                )
            })
        }
        BatchCommand::Show { id } => {
            let batch = services.batches().show(BatchId(id)).await?;
            show(ctx.format, &batch, print_batch)
        }
        BatchCommand::VerifyExport { file } => {
            let check = services.printer_check().verify(&file, &ctx.actor).await?;
            show(ctx.format, &check, |c| {
                println!(
                    "printer file matches batch {}: {} cards, MAC {}",
                    c.batch_id, c.rows, c.mac
                )
            })
        }
        BatchCommand::Restart { id } => {
            let batch = services.batches().restart(BatchId(id), &ctx.actor).await?;
            show(ctx.format, &batch, |b| {
                println!(
                    "batch {} is requested again; `tender work` generates it anew",
                    b.id
                )
            })
        }
    }
}
