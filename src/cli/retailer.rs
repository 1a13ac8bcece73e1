//! `tender retailer …`

use clap::Subcommand;

use super::output::{print_table, show, visible};
use super::{CliError, Ctx};
use crate::app::App;
use crate::domain::PageRows;
use crate::keys::KeyNeeds;
use crate::store::Store;

#[derive(Debug, Subcommand)]
pub(super) enum RetailerCommand {
    /// Add a retailer.
    Add {
        /// Unique name.
        #[arg(long)]
        name: String,
        /// Commission settlement deducts, in percent (for example 2.5).
        #[arg(long)]
        commission: String,
    },
    /// List retailers.
    List {
        /// Most retailers to show.
        #[arg(long, default_value_t = 100)]
        limit: u64,
    },
}

impl RetailerCommand {
    /// Adding records an audit event; listing loads no key.
    pub(super) fn needs(&self) -> KeyNeeds {
        match self {
            RetailerCommand::Add { .. } => KeyNeeds::AUDIT,
            RetailerCommand::List { .. } => KeyNeeds::NONE,
        }
    }
}

pub(super) async fn run<S: Store>(
    app: &App<S>,
    ctx: &Ctx,
    command: RetailerCommand,
) -> Result<(), CliError> {
    let retailers = app.services().retailers();
    match command {
        RetailerCommand::Add { name, commission } => {
            let retailer = retailers.add(&name, &commission, &ctx.actor).await?;
            show(ctx.format, &retailer, |r| {
                println!(
                    "retailer {} added: {} ({}% commission)",
                    r.id,
                    visible(r.name.as_str()),
                    r.commission_bp.percent()
                )
            })
        }
        RetailerCommand::List { limit } => {
            let list = retailers.list(PageRows::new(limit)?).await?;
            show(ctx.format, &list, |rs| {
                print_table(
                    &["id", "name", "commission"],
                    rs.iter().map(|r| {
                        vec![
                            r.id.to_string(),
                            r.name.to_string(),
                            format!("{}%", r.commission_bp.percent()),
                        ]
                    }),
                )
            })
        }
    }
}
