//! The `tender` command: a shell over the library. Parses arguments, sets up logging and the
//! async runtime, and runs the command; a failure becomes one sentence with its stable code, and
//! exit code 1.

use std::process::ExitCode;

use clap::Parser;

/// glibc malloc arenas the process may use.
const MALLOC_ARENAS: i32 = 2;

/// Files and directories tender creates are its user's alone: the SQLite database and its
/// journal hold digests and the trail, the data directory holds everything.
const UMASK: u32 = 0o077;

fn main() -> ExitCode {
    limit_malloc_arenas();
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(UMASK));
    // clap exits with code 2 on usage errors, after printing them.
    let args = tender::cli::Cli::parse();
    tender::cli::init_logging(&args);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(tender::cli::run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // The code is what scripts match on; the sentence may be reworded.
            eprintln!("error: {error} [{}]", error.code());
            ExitCode::FAILURE
        }
    }
}

/// glibc gives each thread its own malloc arena; with the runtime's and SQLite's threads, bulk
/// generation then holds about 20 MiB more than it uses. Two arenas serve two cores. Must run
/// before any thread starts.
#[allow(unsafe_code)] // the crate's one unsafe block, with its SAFETY note
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only adjusts allocator tuning; no thread exists yet to race with it.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, MALLOC_ARENAS);
    }
}
