//! `tender idempotency …`

use clap::Subcommand;
use serde::Serialize;

use super::output::show;
use super::{CliError, Ctx};
use crate::app::App;
use crate::service::idempotency::PurgeAge;
use crate::store::Store;

#[derive(Debug, Subcommand)]
pub(super) enum IdempotencyCommand {
    /// Delete the HTTP API's idempotency records older than an age, in small batches (a
    /// nightly schedule runs it); natural keys (POS transaction, order and refund ids) stay.
    Purge {
        /// How old a record must be to go: a number and d (days) or h (hours), at least 30d,
        /// since keys are kept at least 30 days.
        #[arg(long, value_name = "AGE")]
        older_than: String,
    },
}

/// What a purge did, as JSON shows it.
#[derive(Serialize)]
struct Purged {
    purged: u64,
}

pub(super) async fn run<S: Store>(
    app: &App<S>,
    ctx: &Ctx,
    command: IdempotencyCommand,
) -> Result<(), CliError> {
    match command {
        IdempotencyCommand::Purge { older_than } => {
            // Refused before anything opens a transaction.
            let age = PurgeAge::parse(&older_than)?;
            let purged = app.services().idempotency().purge(age).await?;
            show(ctx.format, &Purged { purged }, |p| {
                println!(
                    "removed {} idempotency records older than {older_than}",
                    p.purged
                );
            })
        }
    }
}
