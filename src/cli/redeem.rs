//! `tender redeem` and `tender attempts`: thin over the redemption service. The code is read
//! from standard input (or typed at a prompt), never taken from an argument: arguments land in
//! shell history and in every user's process list.

use std::io::{BufRead, IsTerminal, Read, Write};

use clap::Args;
use zeroize::Zeroizing;

use super::output::{print_table, show, visible};
use super::{CliError, Ctx};
use crate::app::App;
use crate::domain::PageRows;
use crate::service::redemption::ATTEMPT_ROWS_MAX;
use crate::store::Store;

/// The longest line read as a code: a code with separators and stray spaces is far shorter, and
/// a longer line is refused without reading the rest (a megabyte of input costs nothing).
const CODE_LINE_MAX_BYTES: u64 = 256;

#[derive(Debug, Args)]
pub(super) struct RedeemArgs {
    /// The account to credit.
    #[arg(long)]
    account: String,
    /// A key of your choosing (1 to 128 printable ASCII characters, a UUID say): running the
    /// same redemption again with it answers with the first success and credits nothing more.
    #[arg(long)]
    idempotency_key: Option<String>,
}

#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub(super) struct AttemptsArgs {
    /// Refused attempts on this account.
    #[arg(long)]
    account: Option<String>,
    /// Refused attempts whose code matched this card.
    #[arg(long)]
    serial: Option<String>,
}

/// Reads the code: one line of standard input, or typed at a prompt on a terminal, where it is
/// not echoed (like a password: someone may be looking at the screen, or recording it).
fn read_code() -> Result<Zeroizing<String>, CliError> {
    let stdin = std::io::stdin();
    let _quiet = if stdin.is_terminal() {
        eprint!("gift card code: ");
        let _ = std::io::stderr().flush();
        Some(Unechoed::start(&stdin))
    } else {
        None
    };
    let mut line = Zeroizing::new(Vec::new());
    stdin
        .lock()
        .take(CODE_LINE_MAX_BYTES + 1)
        .read_until(b'\n', &mut line)
        .map_err(|e| CliError::new("cli.stdin", format!("cannot read the code: {e}")))?;
    let too_long = line.len() as u64 > CODE_LINE_MAX_BYTES;
    let text = std::str::from_utf8(&line).ok().filter(|_| !too_long);
    let Some(text) = text else {
        return Err(CliError::new(
            "redeem.invalid_format",
            "a gift card code is 16 digits; that line is not one",
        ));
    };
    Ok(Zeroizing::new(
        text.trim_end_matches(['\n', '\r']).to_string(),
    ))
}

/// While alive, the terminal does not echo what is typed (but still shows the Enter as a new
/// line); dropped, it echoes as before. A terminal whose settings cannot be read stays as it is.
struct Unechoed {
    was: Option<rustix::termios::Termios>,
}

impl Unechoed {
    fn start(stdin: &std::io::Stdin) -> Unechoed {
        use rustix::termios::{LocalModes, OptionalActions, tcgetattr, tcsetattr};
        let was = tcgetattr(stdin).ok();
        if let Some(was) = &was {
            let mut quiet = was.clone();
            quiet.local_modes.remove(LocalModes::ECHO);
            quiet.local_modes.insert(LocalModes::ECHONL);
            let _ = tcsetattr(stdin, OptionalActions::Now, &quiet);
        }
        Unechoed { was }
    }
}

impl Drop for Unechoed {
    fn drop(&mut self) {
        if let Some(was) = &self.was {
            let stdin = std::io::stdin();
            let _ = rustix::termios::tcsetattr(&stdin, rustix::termios::OptionalActions::Now, was);
        }
    }
}

pub(super) async fn redeem<S: Store>(
    app: &App<S>,
    ctx: &Ctx,
    args: RedeemArgs,
) -> Result<(), CliError> {
    let code = read_code()?;
    let redeemed = app
        .services()
        .redemption()
        .redeem(
            &args.account,
            &code,
            args.idempotency_key.as_deref(),
            &ctx.actor,
        )
        .await?;
    show(ctx.format, &redeemed, |r| {
        let replayed = if r.replayed {
            " (already done: the first answer)"
        } else {
            ""
        };
        println!(
            "redeemed {} from card {} into account {}: balance {} (transfer {}){replayed}",
            r.amount, r.card, r.account_id, r.balance_after, r.transfer_id
        );
    })
}

pub(super) async fn attempts<S: Store>(
    app: &App<S>,
    ctx: &Ctx,
    args: AttemptsArgs,
) -> Result<(), CliError> {
    let rows = PageRows::new(ATTEMPT_ROWS_MAX).expect("within the page limit");
    let attempts = app
        .services()
        .redemption()
        .attempts(args.account.as_deref(), args.serial.as_deref(), rows)
        .await?;
    show(ctx.format, &attempts, |list| {
        print_table(
            &["id", "at", "account", "caller", "card", "outcome"],
            list.iter().map(|a| {
                vec![
                    a.attempt_id.to_string(),
                    a.at.to_rfc3339(),
                    a.account_id.to_string(),
                    visible(&a.caller).into_owned(),
                    a.serial.map_or("-".to_string(), |s| s.to_string()),
                    a.outcome.clone(),
                ]
            }),
        );
    })
}
