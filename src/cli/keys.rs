//! `tender keys …`

use clap::{Subcommand, ValueEnum};

use super::CliError;
use crate::config::Settings;
use crate::keys::{KeyPurpose, KeyRing};

#[derive(Debug, Subcommand)]
pub(super) enum KeysCommand {
    /// Add a new newest key to a key file; older keys stay for verification and lookup.
    Rotate {
        /// Which key.
        #[arg(value_enum)]
        which: WhichKey,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(super) enum WhichKey {
    Lookup,
    Audit,
}

pub(super) fn run(settings: &Settings, command: KeysCommand) -> Result<(), CliError> {
    match command {
        KeysCommand::Rotate { which } => {
            let purpose = match which {
                WhichKey::Lookup => KeyPurpose::Lookup,
                WhichKey::Audit => KeyPurpose::Audit,
            };
            let id = KeyRing::rotate_file(purpose, &settings.key_dir())?;
            println!(
                "{} key {id} is now the newest; older keys stay in the ring",
                purpose.file_name()
            );
            Ok(())
        }
    }
}
