//! The crate's floors, as a test: a module imports only modules on its own floor or below, and
//! no two modules import each other, directly or round a cycle. Shared store SQL holds no
//! dialect-only syntax.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Each top-level module and its floor; the README's architecture section shows the same.
const FLOORS: &[(&str, u32)] = &[
    ("error", 0),
    ("clock", 0),
    ("domain", 1),
    ("config", 1),
    ("keys", 2),
    ("codegen", 2),
    ("formats", 2),
    ("audit", 3),
    ("store", 4),
    ("service", 5),
    ("app", 6),
    ("api", 7),
    ("jobs", 7),
    ("web", 7),
    ("cli", 8),
];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file belongs to (`src/store/sql/audit.rs` is `store`).
fn module_of(file: &Path) -> Option<String> {
    let relative = file.strip_prefix(src()).unwrap();
    let first = relative.components().next()?.as_os_str().to_str()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    (name != "lib" && name != "main").then(|| name.to_string())
}

/// The modules a file names through `crate::…`, in `use` lines (braces spanning lines too)
/// and paths alike.
fn imports(text: &str) -> BTreeSet<String> {
    let code: String = text
        .lines()
        .map(|line| line.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n");
    let ident = |s: &str| -> String {
        s.trim()
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect()
    };
    let mut found = BTreeSet::new();
    let mut rest = code.as_str();
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        let Some(braces) = rest.strip_prefix('{') else {
            found.insert(ident(rest));
            continue;
        };
        // `use crate::{a::X, b::{Y, Z}}`: the first name of each top-level path in the braces.
        let (mut depth, mut start) = (0, 0);
        for (i, c) in braces.char_indices() {
            match c {
                '{' => depth += 1,
                '}' if depth == 0 => {
                    found.insert(ident(&braces[start..i]));
                    break;
                }
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    found.insert(ident(&braces[start..i]));
                    start = i + 1;
                }
                _ => {}
            }
        }
    }
    found.remove("");
    found
}

fn import_graph() -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in files {
        let Some(module) = module_of(&file) else {
            continue;
        };
        let text = std::fs::read_to_string(&file).unwrap();
        let entry = graph.entry(module.clone()).or_default();
        for import in imports(&text) {
            if import != module && import != "self" {
                entry.insert(import);
            }
        }
    }
    graph
}

fn floor(module: &str) -> u32 {
    FLOORS
        .iter()
        .find(|(name, _)| *name == module)
        .unwrap_or_else(|| panic!("module {module} has no floor: add it to FLOORS and the README"))
        .1
}

#[test]
fn no_module_imports_one_on_a_higher_floor() {
    let graph = import_graph();
    assert!(graph.contains_key("store") && graph.contains_key("cli"));
    let mut upward = Vec::new();
    for (module, imports) in &graph {
        for import in imports {
            if floor(import) > floor(module) {
                upward.push(format!(
                    "{module} (floor {}) imports {import} (floor {})",
                    floor(module),
                    floor(import)
                ));
            }
        }
    }
    assert!(upward.is_empty(), "{upward:#?}");
}

#[test]
fn no_two_modules_import_each_other() {
    let graph = import_graph();
    // Depth-first search for a cycle, reporting the path round it.
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut cycle = path[at..].to_vec();
            cycle.push(node.to_string());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    for module in graph.keys() {
        let cycle = visit(module, &graph, &mut Vec::new(), &mut done);
        assert!(
            cycle.is_none(),
            "import cycle: {}",
            cycle.unwrap().join(" -> ")
        );
    }
}

#[test]
fn the_floor_check_sees_every_kind_of_import() {
    let text = "use crate::store::Store;\nuse crate::{audit::X, keys::{KeyId, KeyRing},\n\
                service::Y};\nlet x = crate::domain::Code::parse(s); // crate::cli in a comment";
    let found = imports(text);
    let expected: BTreeSet<String> = ["audit", "domain", "keys", "service", "store"]
        .map(String::from)
        .into();
    assert_eq!(found, expected);
}

/// Text inside the string literals of a Rust file (good enough for SQL constants).
fn string_literals(text: &str) -> Vec<String> {
    let mut literals = Vec::new();
    let mut chars = text.chars().peekable();
    let mut current: Option<String> = None;
    while let Some(c) = chars.next() {
        match (&mut current, c) {
            (None, '"') => current = Some(String::new()),
            (None, '/') if chars.peek() == Some(&'/') => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        break;
                    }
                }
            }
            (None, '\'') => {
                // A char literal such as '"' or '\'': skip it whole. A lifetime (`'_`, `'a`)
                // has no closing quote within three characters: leave it.
                let ahead: Vec<char> = chars.clone().take(3).collect();
                let close = match ahead.as_slice() {
                    ['\\', _, '\'', ..] => Some(3),
                    [_, '\'', ..] => Some(2),
                    _ => None,
                };
                if let Some(n) = close {
                    for _ in 0..n {
                        chars.next();
                    }
                }
            }
            (Some(s), '\\') => {
                if let Some(next) = chars.next() {
                    s.push(next);
                }
            }
            (Some(_), '"') => literals.push(current.take().unwrap()),
            (Some(s), c) => s.push(c),
            (None, _) => {}
        }
    }
    literals
}

#[test]
fn shared_sql_holds_no_dialect_only_syntax() {
    let mut files = Vec::new();
    rust_files(&src().join("store/sql"), &mut files);
    assert!(files.len() >= 5, "the shared SQL files were found");
    // Each is PostgreSQL- or SQLite-only; the backend files hold what cannot be shared.
    let forbidden = [
        "::",
        "ANY(",
        "now()",
        "CURRENT_TIMESTAMP",
        "strftime",
        "INSERT OR",
        "ILIKE",
        "?",
        "GREATEST",
        "LEAST",
        "DISTINCT ON",
        "ON CONSTRAINT",
        "generate_series",
    ];
    let mut found = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        for literal in string_literals(&text) {
            // `FOR UPDATE` only through `locking!`, which appends it where the backend has it.
            let sql = literal.to_uppercase();
            for token in forbidden {
                if sql.contains(&token.to_uppercase()) {
                    found.push(format!("{}: {token} in {literal:?}", file.display()));
                }
            }
            if sql.contains("FOR UPDATE") {
                found.push(format!("{}: FOR UPDATE outside locking!", file.display()));
            }
        }
    }
    assert!(found.is_empty(), "{found:#?}");
}
