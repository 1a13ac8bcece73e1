//! Command-line definitions and dispatch. Every command is a few lines over a library use case.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use serde::Serialize;

use tender::audit::AuditSigner;
use tender::codegen::Digester;
use tender::config::{DEFAULT_DATA_DIR, Settings};
use tender::domain::{Batch, BatchId};
use tender::export;
use tender::issuance::{BatchForm, Issuance};
use tender::jobs::{JobDefinitions, JobQueue, RunMode, Runner};
use tender::keys::{KeyPurpose, KeyRing, Keys};
use tender::store::{PgStore, SqliteStore, Store};
use tender::trail;

/// Issue and settle stored value: gift card codes, balances and trade-in credit.
///
/// Keys come from TENDER_LOOKUP_KEYS / TENDER_AUDIT_KEYS or from key files that `tender init`
/// creates; never from arguments.
#[derive(Debug, Parser)]
#[command(name = "tender", version)]
pub struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Args)]
struct Global {
    /// Directory for the SQLite database, keys and printer files.
    #[arg(long, global = true, env = "TENDER_DATA_DIR", default_value = DEFAULT_DATA_DIR)]
    data_dir: PathBuf,
    /// Database URL: sqlite://PATH or postgres://USER@HOST/DB (default: SQLite in the data directory).
    #[arg(long, global = true, env = "TENDER_DATABASE_URL")]
    database_url: Option<String>,
    /// Directory of the key files (default: DATA_DIR/keys).
    #[arg(long, global = true, env = "TENDER_KEY_DIR")]
    key_dir: Option<PathBuf>,
    /// Directory printer files are written to (default: DATA_DIR/exports).
    #[arg(long, global = true, env = "TENDER_EXPORT_DIR")]
    export_dir: Option<PathBuf>,
    /// Directory of job definitions that replace the built-in ones.
    #[arg(long, global = true, env = "TENDER_JOBS_DIR")]
    jobs_dir: Option<PathBuf>,
    /// Who is acting, as recorded in the audit trail (default: cli:$USER).
    #[arg(long, global = true, env = "TENDER_ACTOR")]
    actor: Option<String>,
    /// Output format of read commands.
    #[arg(long, global = true, value_enum, default_value_t = Format::Text)]
    format: Format,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create and migrate the database, and create missing key files (mode 0600).
    Init,
    /// Manage retailers.
    #[command(subcommand)]
    Retailer(RetailerCommand),
    /// Request, inspect and verify card batches.
    #[command(subcommand)]
    Batch(BatchCommand),
    /// Run the job workers until ctrl-c or SIGTERM (or, with --drain, until no job is left).
    Work {
        /// Exit once no job is ready or running.
        #[arg(long)]
        drain: bool,
    },
    /// Inspect the job runner.
    #[command(subcommand)]
    Jobs(JobsCommand),
    /// Verify or seal the audit trail.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Manage keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Run the whole flow on a fresh SQLite database in a new directory and print a summary.
    Demo {
        /// The new directory (default: tender-demo-<timestamp>).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Cards in the demo batch.
        #[arg(long, default_value_t = 10_000)]
        cards: u64,
    },
}

#[derive(Debug, Subcommand)]
enum RetailerCommand {
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
    List,
}

#[derive(Debug, Subcommand)]
enum BatchCommand {
    /// Request a batch of cards; generation runs on the job runner.
    Create(CreateBatch),
    /// List batches, newest first.
    List {
        /// Most batches to show.
        #[arg(long, default_value_t = 50)]
        limit: i64,
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
}

#[derive(Debug, Args)]
struct CreateBatch {
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

#[derive(Debug, Subcommand)]
enum JobsCommand {
    /// List jobs with their state and last result.
    List {
        /// Most jobs to show.
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Check every chain and seal; names the first bad record.
    Verify,
    /// Record every chain's head under the audit key.
    Seal,
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Add a new newest key to a key file; older keys stay for verification and lookup.
    Rotate {
        /// Which key.
        #[arg(value_enum)]
        which: WhichKey,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum WhichKey {
    Lookup,
    Audit,
}

/// Logs go to stderr; TENDER_LOG sets the filter (default: info for workers, warn otherwise).
pub fn init_logging(cli: &Cli) {
    let default = match cli.command {
        Command::Work { .. } => "info",
        _ => "warn",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("TENDER_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

/// One sentence for an error: its chain, without a backtrace.
pub fn describe(error: &anyhow::Error) -> String {
    let mut text = error.to_string();
    for cause in error.chain().skip(1) {
        let cause = cause.to_string();
        if !text.contains(&cause) {
            text = format!("{text}: {cause}");
        }
    }
    text
}

/// Runs the command.
pub async fn run(cli: Cli) -> Result<()> {
    let settings = Settings {
        data_dir: cli.global.data_dir.clone(),
        database_url: cli.global.database_url.clone(),
        key_dir: cli.global.key_dir.clone(),
        export_dir: cli.global.export_dir.clone(),
        jobs_dir: cli.global.jobs_dir.clone(),
    };
    let actor = cli.global.actor.clone().unwrap_or_else(|| {
        format!(
            "cli:{}",
            std::env::var("USER").unwrap_or_else(|_| "unknown".into())
        )
    });
    let ctx = Ctx {
        settings,
        actor,
        format: cli.global.format,
    };
    match cli.command {
        Command::Init => init(&ctx).await,
        Command::Keys(KeysCommand::Rotate { which }) => {
            let purpose = match which {
                WhichKey::Lookup => KeyPurpose::Lookup,
                WhichKey::Audit => KeyPurpose::Audit,
            };
            let id = KeyRing::rotate_file(purpose, &ctx.settings.key_dir())?;
            println!(
                "{} key {id} is now the newest; older keys stay in the ring",
                purpose.file_name()
            );
            Ok(())
        }
        Command::Demo { dir, cards } => demo(dir, cards).await,
        command => {
            let keys = Keys::load(&ctx.settings.key_dir())?;
            let signer = Arc::new(AuditSigner::new(keys.audit.clone()));
            if ctx.settings.is_postgres() {
                let store = PgStore::connect(&ctx.settings.database_url(), signer.clone()).await?;
                dispatch(&ctx, store, &keys, &signer, command).await
            } else {
                let store =
                    SqliteStore::connect(&ctx.settings.database_url(), signer.clone()).await?;
                dispatch(&ctx, store, &keys, &signer, command).await
            }
        }
    }
}

struct Ctx {
    settings: Settings,
    actor: String,
    format: Format,
}

impl Ctx {
    /// Prints `value` as JSON, or as text through `text`.
    fn show<T: Serialize>(&self, value: &T, text: impl FnOnce(&T)) -> Result<()> {
        match self.format {
            Format::Json => println!("{}", serde_json::to_string_pretty(value)?),
            Format::Text => text(value),
        }
        Ok(())
    }
}

async fn init(ctx: &Ctx) -> Result<()> {
    std::fs::create_dir_all(&ctx.settings.data_dir)
        .with_context(|| format!("cannot create {}", ctx.settings.data_dir.display()))?;
    let key_dir = ctx.settings.key_dir();
    for purpose in [KeyPurpose::Lookup, KeyPurpose::Audit] {
        if std::env::var_os(purpose.env_var()).is_none()
            && KeyRing::create_file_if_missing(purpose, &key_dir)?
        {
            println!("created {}", key_dir.join(purpose.file_name()).display());
        }
    }
    let keys = Keys::load(&key_dir)?;
    let signer = Arc::new(AuditSigner::new(keys.audit));
    let url = ctx.settings.database_url();
    if ctx.settings.is_postgres() {
        PgStore::connect(&url, signer).await?.migrate().await?;
    } else {
        SqliteStore::connect(&url, signer).await?.migrate().await?;
    }
    println!("database ready: {}", redact_url(&url));
    Ok(())
}

/// The URL without a password.
fn redact_url(url: &str) -> String {
    match (url.find("://"), url.find('@')) {
        (Some(scheme), Some(at)) if url[scheme + 3..at].contains(':') => {
            let user_end = url[scheme + 3..at].find(':').unwrap() + scheme + 3;
            format!("{}:***{}", &url[..user_end], &url[at..])
        }
        _ => url.to_string(),
    }
}

fn issuance<S: Store>(ctx: &Ctx, store: S, keys: &Keys) -> Result<(Issuance<S>, JobDefinitions)> {
    let definitions = JobDefinitions::load(ctx.settings.jobs_dir())?;
    let issuance = Issuance::new(
        store,
        Digester::new(&keys.lookup),
        ctx.settings.export_dir(),
        JobQueue::generate_batch(&definitions),
    );
    Ok((issuance, definitions))
}

async fn dispatch<S: Store>(
    ctx: &Ctx,
    store: S,
    keys: &Keys,
    signer: &AuditSigner,
    command: Command,
) -> Result<()> {
    store.migrate().await?;
    let (issuance, definitions) = issuance(ctx, store.clone(), keys)?;
    match command {
        Command::Retailer(RetailerCommand::Add { name, commission }) => {
            let retailer = issuance
                .add_retailer(&name, &commission, &ctx.actor)
                .await?;
            ctx.show(&retailer, |r| {
                println!(
                    "retailer {} added: {} ({}% commission)",
                    r.id,
                    r.name,
                    r.commission_bp.percent()
                )
            })
        }
        Command::Retailer(RetailerCommand::List) => {
            let retailers = store.retailers().await?;
            ctx.show(&retailers, |rs| {
                println!("{:>4}  {:<30} {:>10}", "id", "name", "commission");
                for r in rs {
                    println!(
                        "{:>4}  {:<30} {:>9}%",
                        r.id,
                        r.name,
                        r.commission_bp.percent()
                    );
                }
            })
        }
        Command::Batch(BatchCommand::Create(args)) => {
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
            let requested = issuance.request_batch(&form, &ctx.actor).await?;
            ctx.show(&requested, |r| {
                println!(
                    "batch {} requested: {} cards of {}, serials from {}",
                    r.batch.id, r.batch.count, r.batch.value, r.batch.first_serial
                );
                if !r.enqueued {
                    println!("its job could not be queued yet; `tender work` will queue it");
                }
            })
        }
        Command::Batch(BatchCommand::List { limit }) => {
            let batches = store.batches(limit).await?;
            ctx.show(&batches, |bs| {
                println!(
                    "{:>5}  {:>8}  {:<11} {:>21}  {:<22} region",
                    "batch", "retailer", "state", "generated", "value"
                );
                for b in bs {
                    println!(
                        "{:>5}  {:>8}  {:<11} {:>21}  {:<22} {}",
                        b.id,
                        b.retailer_id,
                        b.state.as_str(),
                        format!("{} of {}", b.generated, b.count),
                        b.value.to_string(),
                        b.region
                    );
                }
            })
        }
        Command::Batch(BatchCommand::Show { id }) => {
            let batch = store
                .batch(BatchId(id))
                .await?
                .with_context(|| format!("batch {id} does not exist"))?;
            ctx.show(&batch, print_batch)
        }
        Command::Batch(BatchCommand::VerifyExport { file }) => {
            let check = issuance.verify_export(&file, &ctx.actor).await?;
            ctx.show(&check, |c| {
                println!(
                    "printer file matches batch {}: {} cards, sha256 {}",
                    c.batch_id, c.rows, c.sha256
                )
            })
        }
        Command::Work { drain } => {
            let mode = if drain {
                RunMode::Drain
            } else {
                RunMode::UntilSignal
            };
            Runner::new(issuance, definitions, progress_bars())
                .run(mode)
                .await?;
            Ok(())
        }
        Command::Jobs(JobsCommand::List { limit }) => {
            let jobs = store.jobs(limit).await?;
            ctx.show(&jobs, |js| {
                println!(
                    "{:<26}  {:<26} {:<8} {:>8}  last result",
                    "id", "queue", "status", "attempts"
                );
                for j in js {
                    println!(
                        "{:<26}  {:<26} {:<8} {:>8}  {}",
                        j.id,
                        j.queue,
                        j.status,
                        format!("{}/{}", j.attempts, j.max_attempts),
                        j.last_result.as_deref().unwrap_or("")
                    );
                }
            })
        }
        Command::Audit(AuditCommand::Verify) => {
            let report = trail::verify(&store, signer).await?;
            ctx.show(&report, |r| match &r.problem {
                None => println!(
                    "audit trail intact: {} records in {} chains, {} seals",
                    r.records, r.chains_used, r.seals
                ),
                Some(problem) => println!("audit trail BROKEN: {problem}"),
            })?;
            if let Some(problem) = report.problem {
                bail!("the audit trail failed verification: {problem}");
            }
            Ok(())
        }
        Command::Audit(AuditCommand::Seal) => {
            let seal = trail::seal(&store).await?;
            println!("seal {} recorded at {}", seal.seal_id, seal.sealed_at);
            Ok(())
        }
        Command::Init | Command::Keys(_) | Command::Demo { .. } => {
            unreachable!("handled before the store opens")
        }
    }
}

fn print_batch(b: &Batch) {
    println!("batch {}", b.id);
    println!("  retailer     {}", b.retailer_id);
    println!("  state        {}", b.state.as_str());
    println!(
        "  progress     {} of {} cards ({} codes redrawn after collisions)",
        b.generated, b.count, b.collisions
    );
    println!("  value        {}", b.value);
    println!("  region       {}", b.region);
    println!(
        "  serials      {} to {}",
        b.first_serial,
        b.serial_at(b.count - 1)
    );
    println!(
        "  expires      {}",
        b.expires_at.map_or("never".into(), |at| at.to_rfc3339())
    );
    println!("  lookup key   {}", b.lookup_key_id);
    println!(
        "  requested    {} by {}",
        b.requested_at.to_rfc3339(),
        b.requested_by
    );
    println!(
        "  printer file {}",
        b.export_sha256
            .as_deref()
            .map_or("not complete".into(), |s| format!(
                "{} (sha256 {s})",
                export::file_name(b.id)
            ))
    );
}

/// Progress bars per batch when stderr is a terminal; nothing otherwise.
fn progress_bars() -> tender::jobs::ProgressFn {
    if !std::io::stderr().is_terminal() {
        return Arc::new(|_: &Batch| {});
    }
    let multi = MultiProgress::new();
    let bars: Mutex<HashMap<BatchId, ProgressBar>> = Mutex::new(HashMap::new());
    Arc::new(move |batch: &Batch| {
        let mut bars = bars.lock().expect("progress bars lock");
        let bar = bars.entry(batch.id).or_insert_with(|| {
            let bar = multi.add(ProgressBar::new(batch.count));
            bar.set_style(
                ProgressStyle::with_template(
                    "batch {msg} [{bar:40}] {pos}/{len} cards ({per_sec}, eta {eta})",
                )
                .expect("valid template"),
            );
            bar.set_message(batch.id.to_string());
            bar
        });
        bar.set_position(batch.generated);
        if batch.generated >= batch.count {
            bar.finish();
        }
    })
}

/// The demo: the whole flow on a fresh SQLite database, with a summary.
async fn demo(dir: Option<PathBuf>, cards: u64) -> Result<()> {
    let dir = dir.unwrap_or_else(|| {
        PathBuf::from(format!(
            "tender-demo-{}",
            chrono::Utc::now().format("%Y%m%d-%H%M%S")
        ))
    });
    if dir.exists() {
        bail!(
            "{} already exists; the demo starts from a new directory",
            dir.display()
        );
    }
    let ctx = Ctx {
        settings: Settings::in_dir(&dir),
        actor: "cli:demo".into(),
        format: Format::Text,
    };
    for purpose in [KeyPurpose::Lookup, KeyPurpose::Audit] {
        if std::env::var_os(purpose.env_var()).is_some() {
            bail!(
                "unset {} for the demo: it creates its own keys",
                purpose.env_var()
            );
        }
    }
    let started = Instant::now();
    init(&ctx).await?;
    let keys = Keys::load(&ctx.settings.key_dir())?;
    let signer = Arc::new(AuditSigner::new(keys.audit.clone()));
    let store = SqliteStore::connect(&ctx.settings.database_url(), signer.clone()).await?;
    let (issuance, definitions) = issuance(&ctx, store.clone(), &keys)?;

    let retailer = issuance
        .add_retailer("Demo Books", "2.5", &ctx.actor)
        .await?;
    println!(
        "1. retailer {} added: {} with {}% commission",
        retailer.id,
        retailer.name,
        retailer.commission_bp.percent()
    );
    let form = BatchForm {
        retailer: retailer.name.to_string(),
        count: cards,
        value: Some("25.00".into()),
        currency: "USD".into(),
        region: "US".into(),
        expires_in_days: Some(5 * 365),
        ..BatchForm::default()
    };
    let requested = issuance.request_batch(&form, &ctx.actor).await?;
    println!(
        "2. batch {} requested: {} cards of {}",
        requested.batch.id, requested.batch.count, requested.batch.value
    );
    let generation = Instant::now();
    Runner::new(issuance.clone(), definitions, progress_bars())
        .run(RunMode::Drain)
        .await?;
    let batch = store
        .batch(requested.batch.id)
        .await?
        .context("the demo batch vanished")?;
    println!(
        "3. job runner drained in {:.2} s: batch {} is {}, {} cards, {} collisions redrawn",
        generation.elapsed().as_secs_f64(),
        batch.id,
        batch.state.as_str(),
        batch.generated,
        batch.collisions
    );
    let file = ctx.settings.export_dir().join(export::file_name(batch.id));
    let check = issuance.verify_export(&file, &ctx.actor).await?;
    println!(
        "4. printer file {} verified: {} codes match their digests (sha256 {})",
        file.display(),
        check.rows,
        &check.sha256[..16]
    );
    let seal = trail::seal(&store).await?;
    let report = trail::verify(&store, &signer).await?;
    if let Some(problem) = report.problem {
        bail!("the demo's audit trail failed verification: {problem}");
    }
    println!(
        "5. audit trail sealed (seal {}) and verified: {} records in {} chains",
        seal.seal_id, report.records, report.chains_used
    );
    println!(
        "demo finished in {:.2} s; everything is in {}",
        started.elapsed().as_secs_f64(),
        dir.display()
    );
    println!(
        "try: tender --data-dir {} batch show {}",
        dir.display(),
        batch.id
    );
    Ok(())
}
