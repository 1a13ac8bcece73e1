//! The `tender` command: argument definitions, and one function per command group over the
//! services. Every command opens the app through the composition root; output formatting
//! lives in `output`, the demo in `demo`.

mod api_key;
mod audit;
mod batch;
mod cards;
mod demo;
mod demo_http;
mod expire;
mod idempotency;
mod jobs;
mod keys;
mod ledger;
mod output;
mod redeem;
mod retailer;
mod serve;
mod settle;
mod tradein;

use std::fmt;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use nix::unistd::{Uid, User};

use crate::app::{self, App, Launch};
use crate::clock::SystemClock;
use crate::config::{
    ApprovalThreshold, BusinessTimeZone, ClientAddressHeader, DEFAULT_DATA_DIR, IssuerState,
    KeepDays, PublicUrl, RedeemLimits, SealAgeMax, Settings, TradeInDailyAmount, WindowLimits,
    redact_url,
};
use crate::domain::Actor;
use crate::error::Classify;
use crate::keys::KeyNeeds;
use crate::store::Store;
use output::Format;

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
    /// Directory settlement reports are written to, one folder per business date (default:
    /// DATA_DIR/reports).
    #[arg(long, global = true, env = "TENDER_REPORT_DIR")]
    report_dir: Option<PathBuf>,
    /// Directory of job definitions that replace the built-in ones.
    #[arg(long, global = true, env = "TENDER_JOBS_DIR")]
    jobs_dir: Option<PathBuf>,
    /// The witness file `audit seal` appends to (default: DATA_DIR/audit.witness). Ship a
    /// copy off this host.
    #[arg(long, global = true, env = "TENDER_WITNESS_FILE")]
    witness_file: Option<PathBuf>,
    /// The oldest the newest witnessed seal may be when `audit verify --witness` runs: a
    /// number and s, m, h or d, from 1m to 366d.
    #[arg(long, global = true, env = "TENDER_SEAL_AGE_MAX", default_value = SealAgeMax::DEFAULT_TEXT)]
    seal_age_max: SealAgeMax,
    /// The largest support adjustment posted without a second person's approval, in major
    /// units of the account's currency (0 to 1000000).
    #[arg(long, global = true, env = "TENDER_APPROVAL_OVER", default_value = ApprovalThreshold::DEFAULT_TEXT)]
    approval_over: ApprovalThreshold,
    /// Redemption attempts allowed per customer account, as HOURLY/DAILY.
    #[arg(long, global = true, env = "TENDER_REDEEM_ACCOUNT_LIMIT", default_value = RedeemLimits::ACCOUNT_DEFAULT_TEXT)]
    redeem_account_limit: WindowLimits,
    /// Redemption attempts allowed per caller (this OS user, an API key), as HOURLY/DAILY.
    #[arg(long, global = true, env = "TENDER_REDEEM_CALLER_LIMIT", default_value = RedeemLimits::CALLER_DEFAULT_TEXT)]
    redeem_caller_limit: WindowLimits,
    /// Redemption attempts allowed per end-user address on the customer's page (an IPv4
    /// address or an IPv6 /64), as HOURLY/DAILY.
    #[arg(long, global = true, env = "TENDER_REDEEM_ADDRESS_LIMIT", default_value = RedeemLimits::ADDRESS_DEFAULT_TEXT)]
    redeem_address_limit: WindowLimits,
    /// Answer every refusal a customer can meet (wrong code, not activated, already redeemed,
    /// expired, blocked, wrong region or currency) with one redeem.not_redeemable, each no sooner
    /// than the others; the attempt log keeps the real reason.
    #[arg(long, global = true, env = "TENDER_REDEEM_GENERIC")]
    redeem_generic: bool,
    /// The IANA time zone whose midnight ends the business day (per-day amounts count in it).
    #[arg(long, global = true, env = "TENDER_BUSINESS_TIME_ZONE", default_value = BusinessTimeZone::DEFAULT_TEXT)]
    business_time_zone: BusinessTimeZone,
    /// The most one warehouse's trade-in credits come to per business day and currency before
    /// the rest wait for finance, in major units (0 to 100000000).
    #[arg(long, global = true, env = "TENDER_TRADEIN_DAILY_AMOUNT", default_value = TradeInDailyAmount::DEFAULT_TEXT)]
    tradein_daily_amount: TradeInDailyAmount,
    /// The US state the issuer is incorporated in, such as US-DE: owed an expired card's funds
    /// when the purchaser's state is unknown or claims none, if its law claims them.
    #[arg(long, global = true, env = "TENDER_ISSUER_STATE", default_value = IssuerState::DEFAULT_TEXT)]
    issuer_state: IssuerState,
    /// How long finished jobs are kept before the nightly purge removes them: days and d,
    /// 1d to 3650d.
    #[arg(long, global = true, env = "TENDER_FINISHED_JOBS_KEEP", default_value = KeepDays::DEFAULT_TEXT)]
    finished_jobs_keep: KeepDays,
    /// Where customers reach the page, as an http or https origin; sign-in links are built on
    /// it, and https marks the session cookie Secure.
    #[arg(long, global = true, env = "TENDER_PUBLIC_URL", default_value = PublicUrl::DEFAULT_TEXT)]
    public_url: PublicUrl,
    /// The header a trusted proxy in front of tender writes the customer's address into (its
    /// last address counts), such as X-Forwarded-For; unset, the connection's peer is the
    /// customer. Set it only when every request comes through that proxy.
    #[arg(long, global = true, env = "TENDER_CLIENT_ADDRESS_HEADER")]
    client_address_header: Option<ClientAddressHeader>,
    /// A note the audit trail records after the user, as cli:<user>/<NOTE> (the user is always
    /// this process's, from the passwd file): 1 to 32 characters from A-Z a-z 0-9 . _ -, such as
    /// a ticket number.
    #[arg(long, global = true, env = "TENDER_ACTOR", value_name = "NOTE")]
    actor: Option<String>,
    /// Output format: text for people, JSON for scripts.
    #[arg(long, global = true, value_enum, default_value_t = Format::Text)]
    format: Format,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create or migrate the database, and record its keys (creating key files, mode 0600,
    /// only for a database that has none yet). The only command that migrates.
    Init,
    /// Manage retailers.
    #[command(subcommand)]
    Retailer(retailer::RetailerCommand),
    /// Request, inspect and verify card batches.
    #[command(subcommand)]
    Batch(batch::BatchCommand),
    /// Run the job workers and the outbox relay until ctrl-c or SIGTERM (or, with --drain,
    /// until no job is left).
    Work {
        /// Exit once the outbox is empty and no job is ready or running.
        #[arg(long)]
        drain: bool,
    },
    /// Inspect the job runner.
    #[command(subcommand)]
    Jobs(jobs::JobsCommand),
    /// Verify or seal the audit trail.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// Manage keys.
    #[command(subcommand)]
    Keys(keys::KeysCommand),
    /// Create, show, freeze and erase customer accounts.
    #[command(subcommand)]
    Account(ledger::AccountCommand),
    /// An account's balance.
    Balance(ledger::AccountArg),
    /// An account's history, newest first.
    History(ledger::HistoryArgs),
    /// Debit an account for an order (idempotent by order id).
    Spend(ledger::SpendArgs),
    /// Credit back part or all of an order (idempotent by refund id).
    Refund(ledger::RefundArgs),
    /// Credit or debit an account as the support desk; large ones wait for approval.
    Adjust(ledger::AdjustArgs),
    /// Check the books.
    #[command(subcommand)]
    Ledger(ledger::LedgerCommand),
    /// Redeem a gift card into an account: the code is read from standard input or typed at
    /// a prompt, never given as an argument.
    Redeem(redeem::RedeemArgs),
    /// Refused redemption attempts on an account or a card, newest first, for support.
    Attempts(redeem::AttemptsArgs),
    #[command(flatten)]
    Cards(cards::CardsCommand),
    /// Create, list and revoke the HTTP API's keys.
    #[command(subcommand)]
    ApiKey(api_key::ApiKeyCommand),
    /// Purge the HTTP API's idempotency records.
    #[command(subcommand)]
    Idempotency(idempotency::IdempotencyCommand),
    /// Import, post, approve and list trade-in valuations from warehouses.
    #[command(subcommand)]
    Tradein(tradein::TradeInCommand),
    /// Expire cards whose funds-expiry passed (into breakage or a state's escheat payable),
    /// preview it, or list what will expire.
    Expire(expire::ExpireArgs),
    /// Close a business day (reconcile, retailer statements, signed reports), verify or export
    /// its reports, or record a retailer's payment.
    Settle(settle::SettleArgs),
    /// Serve the HTTP API and run the job runner until ctrl-c or SIGTERM.
    Serve(serve::ServeArgs),
    /// Run the whole flow on a fresh SQLite database in a new directory and print a summary.
    Demo(demo::DemoArgs),
}

/// A command's failure: one sentence for the person at the terminal, and its stable code.
#[derive(Debug)]
pub struct CliError {
    code: &'static str,
    message: String,
}

impl CliError {
    /// A failure the CLI itself finds.
    fn new(code: &'static str, message: impl Into<String>) -> CliError {
        CliError {
            code,
            message: message.into(),
        }
    }

    /// The stable code of what failed.
    pub fn code(&self) -> &'static str {
        self.code
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl<E: Classify + fmt::Display> From<E> for CliError {
    fn from(error: E) -> Self {
        CliError {
            code: error.code(),
            message: error.to_string(),
        }
    }
}

/// What every command needs besides the app.
struct Ctx {
    actor: Actor,
    format: Format,
}

/// Logs go to stderr; TENDER_LOG sets the filter (default: info for workers, warn otherwise).
pub fn init_logging(cli: &Cli) {
    let default = match cli.command {
        Command::Work { .. } | Command::Serve(_) => "info",
        _ => "warn",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("TENDER_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour only on a terminal: in a log file or a collector, escape codes are noise.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

/// Runs the command.
pub async fn run(cli: Cli) -> Result<(), CliError> {
    let settings = Settings {
        data_dir: cli.global.data_dir,
        database_url: cli.global.database_url,
        key_dir: cli.global.key_dir,
        export_dir: cli.global.export_dir,
        report_dir: cli.global.report_dir,
        jobs_dir: cli.global.jobs_dir,
        witness_file: cli.global.witness_file,
        seal_age_max: cli.global.seal_age_max,
        approval_over: cli.global.approval_over,
        redeem_limits: RedeemLimits {
            account: cli.global.redeem_account_limit,
            caller: cli.global.redeem_caller_limit,
            address: cli.global.redeem_address_limit,
        },
        redeem_generic: cli.global.redeem_generic,
        business_time_zone: cli.global.business_time_zone,
        tradein_daily_amount: cli.global.tradein_daily_amount,
        issuer_state: cli.global.issuer_state,
        finished_jobs_keep: cli.global.finished_jobs_keep,
        public_url: cli.global.public_url,
        client_address_header: cli.global.client_address_header,
    };
    // Before anything opens: a refused actor leaves no trace.
    let ctx = Ctx {
        actor: cli_actor(cli.global.actor.as_deref())?,
        format: cli.global.format,
    };
    match cli.command {
        Command::Init => {
            let done = app::init(&settings, SystemClock::shared(), &ctx.actor).await?;
            for path in done.created_files {
                println!("created {}", path.display());
            }
            for (purpose, id) in done.recorded {
                println!("recorded {purpose} key {id}");
            }
            println!("database ready: {}", redact_url(&settings.database_url()));
            Ok(())
        }
        Command::Demo(args) => demo::run(args, ctx.actor).await,
        command => app::launch(&settings, SystemClock::shared(), Dispatch { ctx, command }).await?,
    }
}

/// The actor this process records: `cli:` and the passwd name of its effective user, which
/// the caller cannot choose (unlike `$USER`), then `/<suffix>` when one was given.
fn cli_actor(suffix: Option<&str>) -> Result<Actor, CliError> {
    let uid = Uid::effective();
    let user = match User::from_uid(uid) {
        Ok(Some(user)) => user,
        Ok(None) => {
            return Err(CliError::new(
                "actor.unknown_user",
                format!(
                    "user id {uid} has no passwd entry, so the audit trail cannot name who is \
                     acting; add one for it"
                ),
            ));
        }
        Err(errno) => {
            return Err(CliError::new(
                "actor.unknown_user",
                format!("cannot read the passwd entry of user id {uid}: {errno}"),
            ));
        }
    };
    Ok(Actor::cli(&user.name, suffix)?)
}

/// A command that runs over an open app.
struct Dispatch {
    ctx: Ctx,
    command: Command,
}

impl Launch for Dispatch {
    type Output = Result<(), CliError>;

    fn needs(&self) -> KeyNeeds {
        match &self.command {
            Command::Batch(command) => command.needs(),
            Command::Keys(command) => command.needs(),
            Command::Retailer(command) => command.needs(),
            Command::Work { .. } | Command::Serve(_) => KeyNeeds::ALL,
            Command::Audit(command) => command.needs(),
            Command::Cards(command) => command.needs(),
            Command::ApiKey(command) => command.needs(),
            Command::Tradein(command) => command.needs(),
            // Reads load no key; every change records an audit event.
            Command::Account(ledger::AccountCommand::Show { .. })
            | Command::Balance(_)
            | Command::History(_)
            | Command::Ledger(_)
            | Command::Attempts(_) => KeyNeeds::NONE,
            // Deletes records by age: no key, no audit event (they are not the books).
            Command::Idempotency(_) => KeyNeeds::NONE,
            // A link's MAC is under the lookup ring; its minting is audited.
            Command::Redeem(_) | Command::Account(ledger::AccountCommand::Link { .. }) => {
                KeyNeeds::ALL
            }
            Command::Account(_) | Command::Spend(_) | Command::Refund(_) | Command::Adjust(_) => {
                KeyNeeds::AUDIT
            }
            Command::Expire(args) if args.writes() => KeyNeeds::AUDIT,
            Command::Settle(args) if args.writes() => KeyNeeds::AUDIT,
            Command::Jobs(_)
            | Command::Expire(_)
            | Command::Settle(_)
            | Command::Init
            | Command::Demo(_) => KeyNeeds::NONE,
        }
    }

    async fn run<S: Store>(self, app: App<S>) -> Result<(), CliError> {
        let ctx = &self.ctx;
        match self.command {
            Command::Retailer(command) => retailer::run(&app, ctx, command).await,
            Command::Batch(command) => batch::run(&app, ctx, command).await,
            Command::Work { drain } => jobs::work(&app, drain).await,
            Command::Serve(args) => serve::serve(&app, args).await,
            Command::Jobs(command) => jobs::run(&app, ctx, command).await,
            Command::Audit(command) => audit::run(&app, ctx, command).await,
            Command::Keys(command) => keys::run(&app, ctx, command).await,
            Command::Account(command) => {
                ledger::run(&app, ctx, ledger::Command::Account(command)).await
            }
            Command::Balance(args) => ledger::run(&app, ctx, ledger::Command::Balance(args)).await,
            Command::History(args) => ledger::run(&app, ctx, ledger::Command::History(args)).await,
            Command::Spend(args) => ledger::run(&app, ctx, ledger::Command::Spend(args)).await,
            Command::Refund(args) => ledger::run(&app, ctx, ledger::Command::Refund(args)).await,
            Command::Adjust(args) => ledger::run(&app, ctx, ledger::Command::Adjust(args)).await,
            Command::Ledger(command) => {
                ledger::run(&app, ctx, ledger::Command::Ledger(command)).await
            }
            Command::Cards(command) => cards::run(&app, ctx, command).await,
            Command::Tradein(command) => tradein::run(&app, ctx, command).await,
            Command::Redeem(args) => redeem::redeem(&app, ctx, args).await,
            Command::Attempts(args) => redeem::attempts(&app, ctx, args).await,
            Command::ApiKey(command) => api_key::run(&app, ctx, command).await,
            Command::Idempotency(command) => idempotency::run(&app, ctx, command).await,
            Command::Expire(args) => expire::run(&app, ctx, args).await,
            Command::Settle(args) => settle::run(&app, ctx, args).await,
            Command::Init | Command::Demo(_) => {
                unreachable!("run() handles these before the app opens")
            }
        }
    }
}
