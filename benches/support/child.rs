//! The child process a bench runs (this binary again) to measure its own peak memory.

/// What a bench's child process (this binary run again to measure its own peak memory)
/// reported: the `key=value` fields of its `child …` line, and the maximum resident set size
/// `/usr/bin/time -v` printed for it, where it ran under it.
pub struct ChildOutput {
    /// The fields of the `child …` line.
    pub fields: std::collections::BTreeMap<String, f64>,
    /// `/usr/bin/time -v`'s "Maximum resident set size", KiB.
    pub time_kib: Option<u64>,
}

impl ChildOutput {
    /// Reads `out`, which must have succeeded (else panics with its output, saying `what`);
    /// its stdout lines other than the `child …` line are printed.
    pub fn read(out: &std::process::Output, what: &str) -> ChildOutput {
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{what}: {stdout}{stderr}");
        for line in stdout.lines().filter(|l| !l.starts_with("child ")) {
            println!("{line}");
        }
        let fields = stdout
            .lines()
            .find_map(|l| l.strip_prefix("child "))
            .expect("the child reports")
            .split_whitespace()
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), v.parse::<f64>().expect("numeric fields")))
            .collect();
        let time_kib = stderr.lines().find_map(|l| {
            l.trim()
                .strip_prefix("Maximum resident set size (kbytes): ")
                .and_then(|v| v.parse().ok())
        });
        ChildOutput { fields, time_kib }
    }

    /// One field.
    pub fn field(&self, key: &str) -> f64 {
        self.fields[key]
    }
}

/// This binary run again with `envs` set, under /usr/bin/time -v where there is one, so that
/// its peak memory is its own; its output read as [`ChildOutput::read`] reads it (`what`: what
/// must succeed).
pub fn run_self<'a>(
    envs: impl IntoIterator<Item = (&'a str, &'a std::ffi::OsStr)>,
    what: &str,
) -> ChildOutput {
    let me = std::env::current_exe().unwrap();
    let time = std::path::Path::new("/usr/bin/time");
    let mut command = if time.exists() {
        let mut c = std::process::Command::new(time);
        c.arg("-v").arg(&me);
        c
    } else {
        std::process::Command::new(&me)
    };
    let out = command.envs(envs).output().expect("the bench runs again");
    ChildOutput::read(&out, what)
}

/// A child's memory: VmHWM once its app was open and just before exit, VmRSS at exit, and the
/// kernel's maximum resident set size from /usr/bin/time -v. Its `child …` line reports them as
/// `open_kib`, `hwm_kib` and `rss_kib` (see [`Memory::fields`]).
pub struct Memory {
    /// VmHWM once the app was open, before the run.
    pub open_kib: u64,
    /// VmHWM just before exit.
    pub hwm_kib: u64,
    /// VmRSS just before exit.
    pub rss_kib: u64,
    /// The kernel's maximum resident set size of the child, from /usr/bin/time -v.
    pub time_kib: Option<u64>,
}

impl Memory {
    /// What `child` reported.
    pub fn of(child: &ChildOutput) -> Memory {
        Memory {
            open_kib: child.field("open_kib") as u64,
            hwm_kib: child.field("hwm_kib") as u64,
            rss_kib: child.field("rss_kib") as u64,
            time_kib: child.time_kib,
        }
    }

    /// In the child: its `open_kib` (VmHWM once its app was open) and the current VmHWM and
    /// VmRSS, as the `child …` line's `open_kib=… hwm_kib=… rss_kib=…`.
    pub fn fields(open_kib: u64) -> String {
        format!(
            "open_kib={open_kib} hwm_kib={} rss_kib={}",
            status_kib("VmHWM"),
            status_kib("VmRSS")
        )
    }

    /// "{open} once the app was open, VmRSS at exit {rss}[, /usr/bin/time max RSS {time}]", MiB.
    pub fn detail(&self) -> String {
        format!(
            "{:.1} once the app was open, VmRSS at exit {:.1}{}",
            mib(self.open_kib),
            mib(self.rss_kib),
            self.time_kib
                .map(|k| format!(", /usr/bin/time max RSS {:.1}", mib(k)))
                .unwrap_or_default()
        )
    }
}

/// KiB in MiB.
pub fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// A `kB` field of /proc/self/status.
pub fn status_kib(name: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// The first three fields of /proc/loadavg.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}
