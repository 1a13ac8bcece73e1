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
