//! `tender audit …`

use clap::Subcommand;

use super::output::show;
use super::{CliError, Ctx};
use crate::app::App;
use crate::store::Store;

#[derive(Debug, Subcommand)]
pub(super) enum AuditCommand {
    /// Check every chain and seal; names the first bad record.
    Verify,
    /// Record every chain's head under the audit key.
    Seal,
}

pub(super) async fn run<S: Store>(
    app: &App<S>,
    ctx: &Ctx,
    command: AuditCommand,
) -> Result<(), CliError> {
    let trail = app.services().trail();
    match command {
        AuditCommand::Verify => {
            let report = trail.verify().await?;
            show(ctx.format, &report, |r| match &r.problem {
                None => println!(
                    "audit trail intact: {} records in {} chains, {} seals",
                    r.records, r.chains_used, r.seals
                ),
                Some(problem) => println!("audit trail BROKEN: {problem}"),
            })?;
            match report.problem {
                Some(problem) => Err(CliError::new(
                    "audit.broken",
                    format!("the audit trail failed verification: {problem}"),
                )),
                None => Ok(()),
            }
        }
        AuditCommand::Seal => {
            let seal = trail.seal().await?;
            println!("seal {} recorded at {}", seal.seal_id, seal.sealed_at);
            Ok(())
        }
    }
}
