//! `tender keys …`: rotation in two steps, so hosts never disagree on which key is in use.

use clap::{Subcommand, ValueEnum};

use super::output::{print_table, show};
use super::{CliError, Ctx};
use crate::app::App;
use crate::keys::{KeyId, KeyNeeds, KeyPurpose};
use crate::store::Store;

#[derive(Debug, Subcommand)]
pub(super) enum KeysCommand {
    /// Add a new key to this host's key file and record it as pending. Copy the key file to
    /// every host, then activate it.
    Add {
        /// Which key.
        #[arg(value_enum)]
        which: WhichKey,
    },
    /// Make a pending key the one new digests or audit tags use; the one before is retired
    /// (kept, for what it already digested or tagged).
    Activate {
        /// Which key.
        #[arg(value_enum)]
        which: WhichKey,
        /// The key id `keys add` printed.
        id: u16,
    },
    /// List the keys this database records: id, state and fingerprint (never a key).
    List,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(super) enum WhichKey {
    Lookup,
    Audit,
}

impl WhichKey {
    fn purpose(self) -> KeyPurpose {
        match self {
            WhichKey::Lookup => KeyPurpose::Lookup,
            WhichKey::Audit => KeyPurpose::Audit,
        }
    }
}

impl KeysCommand {
    /// The keys the command loads: the audit key to record the change, and the key being
    /// activated, to prove this host holds it.
    pub(super) fn needs(&self) -> KeyNeeds {
        match self {
            KeysCommand::List => KeyNeeds::NONE,
            KeysCommand::Add { .. } => KeyNeeds::AUDIT,
            KeysCommand::Activate { which, .. } => match which {
                WhichKey::Lookup => KeyNeeds::ALL,
                WhichKey::Audit => KeyNeeds::AUDIT,
            },
        }
    }
}

pub(super) async fn run<S: Store>(
    app: &App<S>,
    ctx: &Ctx,
    command: KeysCommand,
) -> Result<(), CliError> {
    let keys = app.services().keys();
    match command {
        KeysCommand::Add { which } => {
            let purpose = which.purpose();
            let key_dir = app.settings().key_dir();
            let id = keys.add(purpose, &key_dir, &ctx.actor).await?;
            println!(
                "{purpose} key {id} added (pending) to {}. Copy that file to every host that \
                 holds {purpose} keys, then run `tender keys activate {purpose} {id}`",
                key_dir.join(purpose.file_name()).display()
            );
            Ok(())
        }
        KeysCommand::Activate { which, id } => {
            let purpose = which.purpose();
            let id = KeyId::new(id).ok_or_else(|| {
                CliError::new("keys.bad_id", "a key id is a number from 1 to 32767")
            })?;
            if keys.activate(purpose, id, &ctx.actor).await? {
                println!("{purpose} key {id} is now active; the one before it is retired");
            } else {
                println!("{purpose} key {id} was already active");
            }
            Ok(())
        }
        KeysCommand::List => {
            let listing = keys.list().await?;
            show(ctx.format, &listing, |keys| {
                print_table(
                    &["purpose", "id", "state", "fingerprint"],
                    keys.iter().map(|k| {
                        vec![
                            k.purpose.to_string(),
                            k.id.to_string(),
                            k.state.as_str().to_string(),
                            k.fingerprint.clone(),
                        ]
                    }),
                )
            })
        }
    }
}
