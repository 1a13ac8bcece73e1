//! `tender serve`: the HTTP API and, unless `--no-jobs`, the job runner, in one process that
//! stops on ctrl-c or SIGTERM.

use std::net::SocketAddr;

use clap::Args;
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

use super::CliError;
use super::output::progress_bars;
use crate::api;
use crate::app::App;
use crate::jobs::Catalog;
use crate::store::Store;

/// Where the API listens unless told otherwise: this host only.
pub(super) const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

#[derive(Debug, Args)]
pub(super) struct ServeArgs {
    /// The address and port to listen on (port 0: any free port; the log names it).
    #[arg(long, env = "TENDER_LISTEN", default_value = DEFAULT_LISTEN)]
    listen: SocketAddr,
    /// Serve the API only; run the job runner elsewhere with `tender work`.
    #[arg(long)]
    no_jobs: bool,
}

/// Serves until ctrl-c or SIGTERM: the server stops accepting and gives requests in flight
/// [`api::REQUEST_GRACE`], the job runner lets jobs in flight finish as `tender work` does.
pub(super) async fn serve<S: Store>(app: &App<S>, args: ServeArgs) -> Result<(), CliError> {
    // Before the address is logged: a signal sent as soon as it is known must not kill us.
    let signals = signal(SignalKind::terminate()).and_then(|term| {
        let interrupt = signal(SignalKind::interrupt())?;
        Ok((term, interrupt))
    });
    let (mut term, mut interrupt) = signals
        .map_err(|e| CliError::new("serve.signals", format!("cannot handle signals: {e}")))?;
    let runtime = match args.no_jobs {
        true => None,
        false => Some(Catalog::load(app.settings().jobs_dir())?.runtime(app, progress_bars())),
    };
    let listener = TcpListener::bind(args.listen).await.map_err(|e| {
        CliError::new(
            "serve.listen",
            format!("cannot listen on {}: {e}", args.listen),
        )
    })?;
    let addr = listener.local_addr().map_err(|e| {
        CliError::new(
            "serve.listen",
            format!("cannot listen on {}: {e}", args.listen),
        )
    })?;
    tracing::info!(jobs = !args.no_jobs, "listening on http://{addr}");

    // One stop for both halves: a signal, or either half ending on its own (a failure).
    let stop = watch::Sender::new(false);
    let stopped = || {
        let mut stop = stop.subscribe();
        async move {
            let _ = stop.wait_for(|stopped| *stopped).await;
        }
    };
    let server = async {
        let served = api::serve(listener, app.clone(), stopped()).await;
        stop.send_replace(true);
        served
    };
    let jobs = async {
        let ran = match runtime {
            Some(runtime) => {
                let until = stopped();
                let until = async move {
                    until.await;
                    Ok(())
                };
                runtime.run_until(until, false).await
            }
            None => {
                stopped().await;
                Ok(())
            }
        };
        stop.send_replace(true);
        ran
    };
    let signalled = async {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: stopping"),
            _ = interrupt.recv() => tracing::info!("interrupted: stopping"),
            () = stopped() => {}
        }
        stop.send_replace(true);
    };
    let (served, ran, ()) = tokio::join!(server, jobs, signalled);
    served.map_err(|e| CliError::new("serve.io", format!("the server failed: {e}")))?;
    ran?;
    tracing::info!("stopped");
    Ok(())
}
