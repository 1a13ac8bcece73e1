//! `tender audit …`

use std::path::PathBuf;

use clap::Subcommand;

use super::output::show;
use super::{CliError, Ctx};
use crate::app::App;
use crate::audit::VerifyReport;
use crate::keys::{KeyNeeds, SEAL_PUBLIC_KEY_FILE, SealKey, SealPublicKey};
use crate::service::trail::VerifyRequest;
use crate::store::Store;

#[derive(Debug, Subcommand)]
pub(super) enum AuditCommand {
    /// Check every record and seal with every proof this host can run, and say which ran;
    /// names the first bad record or seal.
    Verify {
        /// The seal public key (seal.pub from the sealing host). Without it or a witness,
        /// seal signatures are not checked.
        #[arg(long, value_name = "FILE")]
        seal_public_key: Option<PathBuf>,
        /// A witness file from a sealing host (repeatable): catches deleted seals, a wiped
        /// trail and a restored older database, and a sealer that stopped.
        #[arg(long = "witness", value_name = "FILE")]
        witnesses: Vec<PathBuf>,
    },
    /// Seal every chain under the seal key and append the seal to this host's witness file.
    Seal,
    /// Create this host's seal key (seal.key, 0600) and its public key (seal.pub) in the key
    /// directory. Only the sealing host should hold seal.key.
    SealKey,
}

impl AuditCommand {
    pub(super) fn needs(&self) -> KeyNeeds {
        match self {
            AuditCommand::Verify { .. } => KeyNeeds::AUDIT_IF_PRESENT,
            AuditCommand::Seal | AuditCommand::SealKey => KeyNeeds::NONE,
        }
    }
}

pub(super) async fn run<S: Store>(
    app: &App<S>,
    ctx: &Ctx,
    command: AuditCommand,
) -> Result<(), CliError> {
    let trail = app.services().trail();
    let settings = app.settings();
    match command {
        AuditCommand::Verify {
            seal_public_key,
            witnesses,
        } => {
            let public_key = seal_public_key
                .map(|path| SealPublicKey::read_file(&path))
                .transpose()?;
            let report = trail
                .verify(&VerifyRequest {
                    public_key,
                    witness_files: witnesses,
                    seal_age_max: settings.seal_age_max.get(),
                })
                .await?;
            show(ctx.format, &report, print_report)?;
            match report.problem {
                Some(problem) => Err(CliError::new(
                    "audit.broken",
                    format!("the audit trail failed verification: {problem}"),
                )),
                None => Ok(()),
            }
        }
        AuditCommand::Seal => {
            let key = SealKey::load(&settings.key_dir())?;
            let sealed = trail.seal(&key, &settings.witness_file()).await?;
            println!(
                "seal {} made at {}: {} records in all, {} new; witnessed in {}",
                sealed.seal.seal_id,
                sealed.seal.sealed_at,
                sealed.seal.heads.iter().map(|h| h.seq).sum::<i64>(),
                sealed.new_records,
                sealed.witness.display()
            );
            Ok(())
        }
        AuditCommand::SealKey => {
            let key_dir = settings.key_dir();
            let key = SealKey::create_files(&key_dir)?;
            println!(
                "created the seal key {} (fingerprint {}); give {} to the verifiers",
                key_dir.join(crate::keys::SEAL_KEY_FILE).display(),
                key.public().short(),
                key_dir.join(SEAL_PUBLIC_KEY_FILE).display()
            );
            Ok(())
        }
    }
}

fn print_report(r: &VerifyReport) {
    match &r.problem {
        None => println!(
            "audit trail intact: {} records in {} chains, {} seals",
            r.records, r.chains_used, r.seals
        ),
        Some(problem) => println!("audit trail BROKEN: {problem}"),
    }
    let checked = |ran: bool, what: &str, why_not: &str| {
        if ran {
            println!("  checked:     {what}");
        } else {
            println!("  not checked: {what} ({why_not})");
        }
    };
    checked(r.proofs.hash_chains, "record hash chains", "");
    checked(
        r.proofs.record_tags,
        "record tags",
        "no audit key on this host",
    );
    checked(
        r.proofs.seal_signatures,
        "seal signatures",
        "give --seal-public-key or --witness",
    );
    let witness = match r.proofs.witness_files {
        0 => "witness".to_string(),
        1 => "witness (1 file)".to_string(),
        n => format!("witness ({n} files)"),
    };
    checked(r.proofs.witness_files > 0, &witness, "give --witness");
    match &r.newest_seal {
        Some(seal) => {
            let age = r.checked_at - seal.sealed_at;
            println!(
                "  newest seal: {} at {} ({} min ago), covering {} records",
                seal.seal_id,
                seal.sealed_at,
                age.num_minutes(),
                r.sealed_records
            );
        }
        None => println!("  no seal yet"),
    }
    if r.unsealed_records() > 0 {
        println!(
            "  not provable: {} record(s) after the newest seal; deleting them from a chain's end goes unnoticed until they are sealed",
            r.unsealed_records()
        );
    }
}
