//! The layers of the server and the check that keeps their dependencies
//! pointing one way (user guide, docs/src/architecture.md). A module may use its own
//! layer and the layers below it, never one above:
//!
//! 0. **infrastructure** — storage, database access, git, the vault, the
//!    sandbox, outbound HTTP, the clock, telemetry and the server's own
//!    settings;
//! 1. **configuration language** — the pipeline repo's schema, loading,
//!    templates, freeze windows, the stack and rendered manifests: pure;
//! 2. **domain** — runs, deploys, the ledger, change requests, approvals,
//!    notifications, forges, sharing, identity, clusters;
//! 3. **application** — `App`, wiring the services together;
//! 4. **jobs** — the background work that composes the services (`jobs/`):
//!    start-up recovery, the flow's loops (scan, plan, reconcile,
//!    previews), the runner that executes runs, acting on forge deliveries
//!    and reporting back to the forge, the relay between replicas;
//! 5. **adapters** — HTTP: the REST API, the dashboard, webhooks, the proxy;
//! 6. **commands** — what `main` runs: `serve`, the demo, the CLI client,
//!    the admin commands.
//!
//! The check reads the sources: every `crate::…` path outside test code is
//! an edge. SQL is written in `db/` only, one file per aggregate; the
//! check refuses a query anywhere else. There are no exceptions: a
//! domain module that needs something of the application takes a service
//! holding just that (`Delivery`, `Approvals`, `Notifier`, …).

/// Where a module sits. Ordered: a module may depend on its own layer and
/// those before it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Layer {
    Infrastructure,
    Language,
    Domain,
    Application,
    Jobs,
    Adapters,
    Commands,
}

/// Module path prefixes and their layers; the longest matching prefix wins.
pub const MODULES: &[(&str, Layer)] = &[
    ("clock", Layer::Infrastructure),
    ("config", Layer::Infrastructure),
    ("error", Layer::Infrastructure),
    ("db", Layer::Infrastructure),
    ("git", Layer::Infrastructure),
    ("outbound", Layer::Infrastructure),
    ("sandbox", Layer::Infrastructure),
    ("secrets", Layer::Infrastructure),
    ("signals", Layer::Infrastructure),
    ("storage", Layer::Infrastructure),
    ("telemetry", Layer::Infrastructure),
    ("gitops", Layer::Language),
    ("manifests", Layer::Language),
    ("approvals", Layer::Domain),
    ("audit", Layer::Domain),
    ("builds", Layer::Domain),
    ("auth", Layer::Domain),
    ("change_requests", Layer::Domain),
    ("changes", Layer::Domain),
    ("charts", Layer::Domain),
    ("clusters", Layer::Domain),
    ("configs", Layer::Domain),
    ("coverage", Layer::Domain),
    ("delivery", Layer::Domain),
    ("forge", Layer::Domain),
    ("lanes", Layer::Domain),
    ("notify", Layer::Domain),
    ("promotion", Layer::Domain),
    ("runs", Layer::Domain),
    ("secrets_admin", Layer::Domain),
    ("sharing", Layer::Domain),
    ("visibility", Layer::Domain),
    ("replica", Layer::Application),
    ("state", Layer::Application),
    ("jobs", Layer::Jobs),
    ("dashboard", Layer::Adapters),
    ("http", Layer::Adapters),
    ("admin", Layer::Commands),
    ("build_helper", Layer::Commands),
    ("cli", Layer::Commands),
    ("client", Layer::Commands),
    ("demo", Layer::Commands),
    ("migrate", Layer::Commands),
    ("serve", Layer::Commands),
];

/// The layer of a module path such as `gitops::load` (None: not listed).
pub fn layer_of(path: &str) -> Option<(&'static str, Layer)> {
    MODULES
        .iter()
        .filter(|(prefix, _)| {
            path == *prefix
                || path
                    .strip_prefix(prefix)
                    .is_some_and(|rest| rest.starts_with("::"))
        })
        .max_by_key(|(prefix, _)| prefix.len())
        .copied()
}

/// The `crate::` paths a source file names outside its test code, with
/// their line numbers: `crate::a::b::C` gives `a::b::C`, and a group
/// `crate::{a::X, b}` gives `a::X` and `b`.
pub fn crate_paths(source: &str) -> Vec<(usize, String)> {
    let code = match test_module_at(source) {
        Some(at) => &source[..at],
        None => source,
    };
    let mut found = Vec::new();
    for (number, line) in code.lines().enumerate() {
        let line = line.split("//").next().unwrap_or_default();
        let mut rest = line;
        while let Some(at) = rest.find("crate::") {
            let before = rest[..at].chars().next_back();
            rest = &rest[at + "crate::".len()..];
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                continue; // `my_crate::` is not this crate
            }
            if rest.starts_with('{') {
                let group = group_at(code, line, number, rest);
                found.extend(group.into_iter().map(|path| (number + 1, path)));
            } else {
                found.push((number + 1, path_at(rest)));
            }
        }
    }
    found
}

/// Where a file's `#[cfg(test)] mod …` starts: test code may use anything.
fn test_module_at(source: &str) -> Option<usize> {
    source
        .match_indices("#[cfg(test)]")
        .map(|(at, _)| at)
        .find(|at| {
            source[at + "#[cfg(test)]".len()..]
                .trim_start()
                .starts_with("mod ")
        })
}

/// `a::b::C` from the start of `text`.
fn path_at(text: &str) -> String {
    text.chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
        .collect::<String>()
        .trim_end_matches(':')
        .to_string()
}

/// The first path of each item in a `{…}` group, which may span lines.
fn group_at(code: &str, line: &str, number: usize, rest: &str) -> Vec<String> {
    // Re-read from this line onwards so a group over several lines is whole.
    let start: usize = code
        .lines()
        .take(number)
        .map(|l| l.len() + 1)
        .sum::<usize>()
        + (line.len() - rest.len());
    let text = &code[start.min(code.len())..];
    let mut depth = 0usize;
    let mut item = String::new();
    let mut items = Vec::new();
    for c in text.chars() {
        match c {
            '{' => {
                depth += 1;
                if depth == 1 {
                    continue;
                }
            }
            '}' => {
                depth -= 1;
                if depth == 0 {
                    items.push(std::mem::take(&mut item));
                    break;
                }
            }
            ',' if depth == 1 => {
                items.push(std::mem::take(&mut item));
                continue;
            }
            _ => {}
        }
        if depth >= 1 {
            item.push(c);
        }
    }
    items
        .iter()
        .map(|item| path_at(item.trim()))
        .filter(|path| !path.is_empty() && path != "self")
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{BTreeMap, BTreeSet};
    use std::path::{Path, PathBuf};

    fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("read src") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                sources(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }

    /// `gitops/load/mod.rs` → `gitops::load`.
    fn module_of(src: &Path, file: &Path) -> String {
        let relative = file.strip_prefix(src).expect("under src");
        let mut parts: Vec<String> = relative
            .iter()
            .map(|part| part.to_string_lossy().trim_end_matches(".rs").to_string())
            .collect();
        if parts.last().is_some_and(|last| last == "mod") {
            parts.pop();
        }
        parts.join("::")
    }

    #[test]
    fn paths_are_read_from_uses_and_groups() {
        let source = "use crate::db::{self, now};\nuse crate::{\n    gitops::schema::{A, B},\n    state::App,\n};\nfn f() { crate::jobs::go(); } // crate::http::x\nuse other_crate::x;\n#[cfg(test)]\nmod tests { use crate::dashboard::X; }\n";
        let paths: Vec<String> = crate_paths(source).into_iter().map(|(_, p)| p).collect();
        assert_eq!(
            paths,
            ["db", "gitops::schema", "state::App", "jobs::go"],
            "{paths:?}"
        );
        assert_eq!(
            layer_of("gitops::schema::A"),
            Some(("gitops", Layer::Language))
        );
        assert_eq!(layer_of("gitopsx"), None);
    }

    /// Queries live in `db/`: domain code asks for what it needs by name,
    /// and hears of a failure as a `db::QueryError` with its kind, never
    /// as the driver's own error.
    #[test]
    fn sql_is_written_in_db_only() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = Vec::new();
        sources(&src, &mut files);
        let mut outside = Vec::new();
        for file in &files {
            let module = module_of(&src, file);
            if module == "db" || module.starts_with("db::") || module == "layers" {
                continue;
            }
            let source = std::fs::read_to_string(file).expect("read source");
            let code = match test_module_at(&source) {
                Some(at) => &source[..at],
                None => &source[..],
            };
            if module.ends_with("tests") {
                continue;
            }
            for (number, line) in code.lines().enumerate() {
                if line.contains("sqlx::query") || line.contains("sqlx::Error") {
                    outside.push(format!("{module}:{}", number + 1));
                }
            }
        }
        assert!(
            outside.is_empty(),
            "SQL or the driver's errors outside db/: {outside:?}"
        );
    }

    /// Below the application, errors are typed (each domain's enum with a
    /// kind): `anyhow` is for the application, the adapters and commands.
    #[test]
    fn errors_are_typed_below_the_application() {
        assert!(string_error("fn f() -> Result<u64, String> {"));
        assert!(string_error("let x: Result<(), String> = y;"));
        assert!(!string_error(
            "fn f() -> Result<BTreeMap<String, String>, Error> {"
        ));
        assert!(!string_error("fn f() -> Result<String> {"));
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = Vec::new();
        sources(&src, &mut files);
        let mut untyped = Vec::new();
        for file in &files {
            let module = module_of(&src, file);
            let Some((_, layer)) = layer_of(&module) else {
                continue;
            };
            if layer >= Layer::Application {
                continue;
            }
            let source = std::fs::read_to_string(file).expect("read source");
            let code = match test_module_at(&source) {
                Some(at) => &source[..at],
                None => &source[..],
            };
            for (number, line) in code.lines().enumerate() {
                if line.trim_start().starts_with("//") {
                    continue;
                }
                if line.contains("anyhow") || string_error(line) {
                    untyped.push(format!("{module}:{}", number + 1));
                }
                // Domain services and the language know nothing of the
                // web framework (its `http` types come from the `http` crate).
                if line.contains("axum") && (Layer::Language..=Layer::Domain).contains(&layer) {
                    untyped.push(format!("{module}:{} (axum)", number + 1));
                }
            }
        }
        assert!(
            untyped.is_empty(),
            "anyhow, a String error or axum below the application layer: {untyped:?}"
        );
    }

    /// Whether a line names a `Result` whose error is a plain `String`.
    fn string_error(line: &str) -> bool {
        line.match_indices("Result<").any(|(at, _)| {
            // The outermost `Result<…>`: its last argument at depth one.
            let mut depth = 0;
            let mut last = None;
            for (offset, c) in line[at + "Result".len()..].char_indices() {
                let position = at + "Result".len() + offset;
                match c {
                    '<' => depth += 1,
                    ',' if depth == 1 => last = Some(position + 1),
                    '>' => {
                        depth -= 1;
                        if depth == 0 {
                            return last
                                .is_some_and(|last| line[last..position].trim() == "String");
                        }
                    }
                    _ => {}
                }
            }
            false
        })
    }

    /// The top-level modules (folders) and which others each uses, outside
    /// test code: `jobs` → {`db`, `state`, …}, with a line that shows each.
    fn folder_graph() -> BTreeMap<String, BTreeMap<String, String>> {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = Vec::new();
        sources(&src, &mut files);
        files.sort();
        let mut graph: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        for file in &files {
            let module = module_of(&src, file);
            if module.starts_with("bin") || ["main", "lib", "layers"].contains(&module.as_str()) {
                continue;
            }
            if module.ends_with("tests") || module.contains("::tests::") {
                continue;
            }
            let folder = module.split("::").next().unwrap_or_default().to_string();
            let source = std::fs::read_to_string(file).expect("read source");
            for (line, path) in crate_paths(&source) {
                let to = path.split("::").next().unwrap_or_default().to_string();
                if to != folder && layer_of(&to).is_some() {
                    let site = format!(
                        "{}:{line} uses crate::{path}",
                        file.strip_prefix(&src).expect("under src").display()
                    );
                    graph
                        .entry(folder.clone())
                        .or_default()
                        .entry(to)
                        .or_insert(site);
                }
            }
        }
        graph
    }

    /// The edges of `graph` that lie on a circle: `a` → `b` where `b` leads
    /// back to `a`.
    fn circular_edges(
        graph: &BTreeMap<String, BTreeMap<String, String>>,
    ) -> BTreeMap<(String, String), String> {
        let reaches = |from: &str, to: &str| {
            let mut seen = BTreeSet::new();
            let mut stack = vec![from.to_string()];
            while let Some(at) = stack.pop() {
                if at == to {
                    return true;
                }
                if seen.insert(at.clone()) {
                    stack.extend(
                        graph
                            .get(&at)
                            .into_iter()
                            .flat_map(|next| next.keys().cloned()),
                    );
                }
            }
            false
        };
        let mut circular = BTreeMap::new();
        for (from, uses) in graph {
            for (to, site) in uses {
                if reaches(to, from) {
                    circular.insert((from.clone(), to.clone()), site.clone());
                }
            }
        }
        circular
    }

    /// No two top-level folders use each other, directly or round a
    /// circle — within a layer as across layers: each folder holds one
    /// layer, and reading its imports shows what it stands on.
    #[test]
    fn no_folder_uses_another_round_a_circle() {
        let circular: Vec<String> = circular_edges(&folder_graph())
            .into_iter()
            .map(|((from, to), site)| format!("{from} → {to} ({site})"))
            .collect();
        assert!(
            circular.is_empty(),
            "folders that use each other round a circle:\n{}",
            circular.join("\n")
        );
    }

    #[test]
    fn a_circle_is_found_whatever_its_length() {
        let graph: BTreeMap<String, BTreeMap<String, String>> = [
            ("a", vec!["b"]),
            ("b", vec!["c"]),
            ("c", vec!["a", "d"]),
            ("d", vec![]),
            ("e", vec!["f"]),
            ("f", vec!["e"]),
        ]
        .into_iter()
        .map(|(from, to)| {
            let uses = to
                .into_iter()
                .map(|t| (t.to_string(), String::new()))
                .collect();
            (from.to_string(), uses)
        })
        .collect();
        let found: Vec<(String, String)> = circular_edges(&graph).into_keys().collect();
        let expected: Vec<(String, String)> =
            [("a", "b"), ("b", "c"), ("c", "a"), ("e", "f"), ("f", "e")]
                .into_iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect();
        assert_eq!(found, expected);
    }

    /// Every module is placed, and no module uses a layer above its own.
    #[test]
    fn dependencies_point_down() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = Vec::new();
        sources(&src, &mut files);
        files.sort();
        let mut unplaced = BTreeSet::new();
        let mut upward: BTreeMap<(&str, &str), Vec<String>> = BTreeMap::new();
        for file in &files {
            let module = module_of(&src, file);
            if module.starts_with("bin") || module == "main" || module == "lib" {
                continue; // the executables sit above every layer
            }
            if module.ends_with("tests") || module.contains("::tests::") {
                continue;
            }
            let Some((from, from_layer)) = layer_of(&module) else {
                if module != "layers" {
                    unplaced.insert(module);
                }
                continue;
            };
            let source = std::fs::read_to_string(file).expect("read source");
            for (line, path) in crate_paths(&source) {
                let Some((to, to_layer)) = layer_of(&path) else {
                    continue;
                };
                if to_layer > from_layer {
                    upward.entry((from, to)).or_default().push(format!(
                        "{}:{line} uses crate::{path} ({from_layer:?} → {to_layer:?})",
                        file.strip_prefix(&src).expect("under src").display()
                    ));
                }
            }
        }
        assert!(
            unplaced.is_empty(),
            "modules missing from layers::MODULES: {unplaced:?}"
        );
        let sites: Vec<&str> = upward.values().flatten().map(String::as_str).collect();
        assert!(
            sites.is_empty(),
            "dependencies pointing up a layer:\n{}",
            sites.join("\n")
        );
    }
}
