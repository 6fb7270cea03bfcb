//! Health rules admins add in the pipeline repo, for kinds whose health the
//! built-in reading gets wrong or cannot know — in two forms:
//!
//! - **CEL**, as Flux's `healthCheckExprs`, in the admin file `gantry.yaml`:
//!
//!   ```yaml
//!   health:
//!     - apiVersion: example.com/v1
//!       kind: Widget
//!       inProgress: "status.phase == 'Provisioning'"
//!       failed: "status.phase == 'Error'"
//!       current: "status.phase == 'Ready'"
//!   ```
//!
//!   The object's top-level fields are the variables (`metadata`, `spec`,
//!   `status`). `inProgress` is evaluated first, then `failed`, then
//!   `current`; none true is in progress.
//! - **Argo CD's health customisations**, unchanged: a Lua script at
//!   `health/<group>/<Kind>/health.lua` (the layout of Argo CD's
//!   `resource_customizations`) that reads `obj` and returns a table with
//!   `status` (`Healthy`, `Progressing`, `Degraded`, `Suspended`, `Missing`,
//!   `Unknown`) and `message`.
//!
//! Both run in a bounded interpreter. A CEL expression is at most 2,000
//! characters, may not use `map` (which can grow the data at each step) nor
//! nest one macro (`all`, `exists`, `filter`, …) in another's body, so its
//! cost is at most its length times the object's size. A Lua script runs
//! with the `string`, `table` and `math` libraries only (no `io`, `os`,
//! `require`, `load` or files), 16 MiB of memory and 10 million
//! instructions or 200 ms; its pattern matches (which backtrack inside C,
//! out of the instruction count's reach) take subjects of at most 4,096
//! characters when quantified, and at most 3 quantifiers. A rule stopped
//! at its budget, or one that errs, makes the object's health unknown with
//! that reason: a deploy waits and fails at its deadline saying so.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::error::Rejected;
use serde_json::Value;

/// What an object's status says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Health {
    Healthy,
    /// Not yet, and why (in the object's own words where it gives them).
    InProgress(String),
    /// Will not get there by waiting.
    Failed(String),
    /// A rule could not tell (it erred, or ran past its budget): waited for
    /// like one in progress.
    Unknown(String),
}

/// The longest CEL expression.
const CEL_CHARACTERS: usize = 2000;
const LUA_MEMORY: usize = 16 << 20;
const LUA_INSTRUCTIONS: u64 = 10_000_000;
const LUA_TIME: Duration = Duration::from_millis(200);
/// The hook that counts Lua's instructions runs every this many.
const LUA_HOOK_EVERY: u32 = 10_000;

/// Every rule of a pipeline commit, as written (compiled when used).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleSet {
    pub rules: Vec<Rule>,
}

/// One kind's rule.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    /// The API group (`""` for the core group).
    pub group: String,
    pub kind: String,
    /// Where it was written (`gantry.yaml`, `health/example.com/Widget/health.lua`).
    pub file: String,
    pub check: Check,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Check {
    Cel {
        current: String,
        in_progress: Option<String>,
        failed: Option<String>,
    },
    Lua {
        script: String,
    },
}

/// Why a rule does not compile: where, and what.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{file}{}: {message}", position(*line, *column))]
pub struct RuleError {
    pub file: String,
    /// 1-based, within the file, where known.
    pub line: Option<u64>,
    pub column: Option<u64>,
    pub message: String,
}

fn position(line: Option<u64>, column: Option<u64>) -> String {
    match (line, column) {
        (Some(line), Some(column)) => format!(":{line}:{column}"),
        (Some(line), None) => format!(":{line}"),
        _ => String::new(),
    }
}

/// Compiles one CEL expression, refusing what could run without bound.
/// Positions are within the expression (1-based).
pub fn compile_cel(expression: &str) -> Result<cel::Program, (u64, u64, String)> {
    if expression.len() > CEL_CHARACTERS {
        return Err((
            1,
            1,
            format!(
                "the expression is {} characters; at most {CEL_CHARACTERS}",
                expression.len()
            ),
        ));
    }
    let program = cel::Program::compile(expression).map_err(|errors| {
        let first = errors.errors.first();
        let (line, column) = first.map_or((1, 1), |e| {
            (e.pos.0.max(1) as u64, (e.pos.1 + 1).max(1) as u64)
        });
        let message = first.map_or_else(|| errors.to_string(), |e| e.msg.clone());
        (line, column, message)
    })?;
    if calls_map(expression) {
        return Err((
            1,
            1,
            "`map` is not allowed in a health rule: it can grow the data at every step; filter, all, exists and exists_one are".into(),
        ));
    }
    if nested_macro(program.expression(), false) {
        return Err((
            1,
            1,
            "a macro (all, exists, exists_one, map, filter) inside another's body: its cost would grow with a power of the object's size; chain them instead (`a.filter(…).all(…)`)".into(),
        ));
    }
    Ok(program)
}

/// Whether `expression` calls the `map` macro (`.map(` outside string
/// literals).
fn calls_map(expression: &str) -> bool {
    let bytes = expression.as_bytes();
    let mut quote: Option<u8> = None;
    let mut at = 0;
    while at < bytes.len() {
        let c = bytes[at];
        match quote {
            Some(_) if c == b'\\' => at += 1,
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == b'"' || c == b'\'' => quote = Some(c),
            None if c == b'.' => {
                let rest = expression[at + 1..].trim_start();
                if let Some(after) = rest.strip_prefix("map")
                    && after.trim_start().starts_with('(')
                {
                    return true;
                }
            }
            None => {}
        }
        at += 1;
    }
    false
}

/// Whether a comprehension sits in the body of another.
fn nested_macro(expr: &cel::common::ast::IdedExpr, in_body: bool) -> bool {
    use cel::common::ast::{EntryExpr, Expr};
    let entry = |e: &cel::common::ast::IdedEntryExpr, in_body| match &e.expr {
        EntryExpr::StructField(field) => nested_macro(&field.value, in_body),
        EntryExpr::MapEntry(entry) => {
            nested_macro(&entry.key, in_body) || nested_macro(&entry.value, in_body)
        }
    };
    match &expr.expr {
        Expr::Comprehension(c) => {
            in_body
                || nested_macro(&c.iter_range, in_body)
                || nested_macro(&c.accu_init, in_body)
                || nested_macro(&c.loop_cond, true)
                || nested_macro(&c.loop_step, true)
                || nested_macro(&c.result, true)
        }
        Expr::Call(call) => {
            call.target
                .as_ref()
                .is_some_and(|t| nested_macro(t, in_body))
                || call.args.iter().any(|a| nested_macro(a, in_body))
        }
        Expr::List(list) => list.elements.iter().any(|e| nested_macro(e, in_body)),
        Expr::Map(map) => map.entries.iter().any(|e| entry(e, in_body)),
        Expr::Struct(s) => s.entries.iter().any(|e| entry(e, in_body)),
        Expr::Select(select) => nested_macro(&select.operand, in_body),
        Expr::Unspecified | Expr::Ident(_) | Expr::Literal(_) => false,
    }
}

/// Checks a Lua script compiles (nothing of it runs).
pub fn compile_lua(file: &str, script: &str) -> Result<(), RuleError> {
    let lua = sandbox().map_err(|e| RuleError {
        file: file.to_string(),
        line: None,
        column: None,
        message: e.to_string(),
    })?;
    lua.load(script)
        .set_name(format!("={file}"))
        .into_function()
        .map(|_| ())
        .map_err(|error| lua_error(file, &error))
}

/// A Lua error as a [`RuleError`], its line read from Lua's message
/// (`file:3: '=' expected near 'x'`).
fn lua_error(file: &str, error: &mlua::Error) -> RuleError {
    let text = match error {
        mlua::Error::SyntaxError { message, .. } => message.clone(),
        other => other.to_string(),
    };
    let text = text.lines().next().unwrap_or_default().to_string();
    let after = text
        .strip_prefix(file)
        .and_then(|rest| rest.strip_prefix(':'));
    let (line, message) = match after.and_then(|rest| rest.split_once(':')) {
        Some((line, message)) if line.parse::<u64>().is_ok() => {
            (line.parse().ok(), message.trim().to_string())
        }
        _ => (None, text.clone()),
    };
    RuleError {
        file: file.to_string(),
        line,
        column: None,
        message,
    }
}

/// A Lua state with the safe libraries only, its memory bounded.
fn sandbox() -> mlua::Result<mlua::Lua> {
    use mlua::{LuaOptions, StdLib};
    let lua = mlua::Lua::new_with(
        StdLib::STRING | StdLib::TABLE | StdLib::MATH,
        LuaOptions::default(),
    )?;
    // The base library reads files and compiles text: none of that.
    let globals = lua.globals();
    for name in [
        "dofile",
        "loadfile",
        "load",
        "loadstring",
        "require",
        "print",
        "collectgarbage",
    ] {
        globals.set(name, mlua::Value::Nil)?;
    }
    // Lua's pattern matcher backtracks inside C, where the instruction
    // budget does not reach: patterns with quantifiers get short subjects
    // and few quantifiers (a plain find is linear, and free).
    lua.load(GUARDED_PATTERNS).set_name("=gantry").exec()?;
    lua.set_memory_limit(LUA_MEMORY)?;
    Ok(lua)
}

/// Wraps `string.find`, `match`, `gmatch` and `gsub` (see [`sandbox`]).
const GUARDED_PATTERNS: &str = r#"
local gsub = string.gsub
for _, name in ipairs({ "find", "match", "gmatch", "gsub" }) do
  local original = string[name]
  string[name] = function(s, pattern, a, b)
    if type(s) == "string" and type(pattern) == "string" and not (name == "find" and b == true) then
      local _, quantifiers = gsub(pattern, "[%*%+%-%?]", "")
      if quantifiers > 0 and #s > 4096 then
        error("a pattern match on " .. #s .. " characters (at most 4096 with * + - ?)", 2)
      end
      if quantifiers > 3 then
        error("a pattern with " .. quantifiers .. " quantifiers (at most 3)", 2)
      end
    end
    return original(s, pattern, a, b)
  end
end
"#;

/// Rules compiled for one deploy (or one `gantry health`).
#[derive(Clone, Default)]
pub struct Compiled {
    rules: Vec<(String, String, Arc<Compiled1>)>,
}

enum Compiled1 {
    Cel {
        current: Arc<cel::Program>,
        in_progress: Option<Arc<cel::Program>>,
        failed: Option<Arc<cel::Program>>,
    },
    Lua {
        file: String,
        script: String,
    },
}

impl std::fmt::Debug for Compiled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.rules.iter().map(|(g, k, _)| format!("{g}/{k}")))
            .finish()
    }
}

impl RuleSet {
    /// Compiles every rule; the first that does not compile is named.
    pub fn compile(&self) -> Result<Compiled, RuleError> {
        let mut rules = Vec::new();
        for rule in &self.rules {
            let compiled = match &rule.check {
                Check::Cel {
                    current,
                    in_progress,
                    failed,
                } => {
                    let one = |text: &str| {
                        compile_cel(text)
                            .map(Arc::new)
                            .map_err(|(line, column, message)| RuleError {
                                file: rule.file.clone(),
                                line: Some(line),
                                column: Some(column),
                                message: format!("{}/{}: {message}", rule.group, rule.kind),
                            })
                    };
                    Compiled1::Cel {
                        current: one(current)?,
                        in_progress: in_progress.as_deref().map(one).transpose()?,
                        failed: failed.as_deref().map(one).transpose()?,
                    }
                }
                Check::Lua { script } => {
                    compile_lua(&rule.file, script)?;
                    Compiled1::Lua {
                        file: rule.file.clone(),
                        script: script.clone(),
                    }
                }
            };
            rules.push((rule.group.clone(), rule.kind.clone(), Arc::new(compiled)));
        }
        Ok(Compiled { rules })
    }
}

impl Compiled {
    /// The health a rule gives `object` of `group`/`kind`; `None` when no
    /// rule is for that kind.
    pub fn evaluate(&self, group: &str, kind: &str, object: &Value) -> Option<Health> {
        let (_, _, rule) = self
            .rules
            .iter()
            .find(|(g, k, _)| g == group && k == kind)?;
        Some(match rule.as_ref() {
            Compiled1::Cel {
                current,
                in_progress,
                failed,
            } => cel_health(object, current, in_progress.as_ref(), failed.as_ref()),
            Compiled1::Lua { file, script } => lua_health(file, script, object),
        })
    }
}

fn cel_health(
    object: &Value,
    current: &Arc<cel::Program>,
    in_progress: Option<&Arc<cel::Program>>,
    failed: Option<&Arc<cel::Program>>,
) -> Health {
    // Evaluated in place: with no nested macro and no `map`, an expression
    // can neither grow the data nor go over it more than once per macro,
    // so its cost is bounded by its length times the object's size.
    let mut context = cel::Context::default();
    if let Some(fields) = object.as_object() {
        for (name, value) in fields {
            if context.add_variable(name.as_str(), value).is_err() {
                return Health::Unknown(format!("the object's {name} cannot be read"));
            }
        }
    }
    for name in ["metadata", "spec", "status"] {
        if object.get(name).is_none_or(Value::is_null) {
            let _ = context.add_variable(name, serde_json::Map::new());
        }
    }
    let programs = [
        in_progress.map(|p| ("inProgress", p)),
        failed.map(|p| ("failed", p)),
        Some(("current", current)),
    ];
    for (name, program) in programs.into_iter().flatten() {
        match program.execute(&context) {
            Ok(cel::Value::Bool(true)) => {
                return match name {
                    "current" => Health::Healthy,
                    "failed" => {
                        Health::Failed("the health rule's failed expression is true".into())
                    }
                    _ => {
                        Health::InProgress("the health rule's inProgress expression is true".into())
                    }
                };
            }
            Ok(cel::Value::Bool(false)) => {}
            // A field that is not there yet (no status) is not true.
            Err(cel::ExecutionError::NoSuchKey(_)) => {}
            Ok(other) => {
                return Health::Unknown(format!(
                    "the {name} expression gave {other:?}, not true or false"
                ));
            }
            Err(error) => {
                return Health::Unknown(format!("the {name} expression failed: {error}"));
            }
        }
    }
    Health::InProgress("no expression of the health rule is true yet".into())
}

fn lua_health(file: &str, script: &str, object: &Value) -> Health {
    match run_lua(file, script, object) {
        Ok(health) => health,
        Err(why) => Health::Unknown(why.0),
    }
}

fn run_lua(file: &str, script: &str, object: &Value) -> Result<Health, Rejected> {
    use mlua::{HookTriggers, LuaSerdeExt, VmState};
    let lua = sandbox().map_err(|e| e.to_string())?;
    let started = Instant::now();
    let counted = std::sync::atomic::AtomicU64::new(0);
    lua.set_hook(
        HookTriggers::new().every_nth_instruction(LUA_HOOK_EVERY),
        move |_, _| {
            let ran = counted.fetch_add(
                u64::from(LUA_HOOK_EVERY),
                std::sync::atomic::Ordering::Relaxed,
            );
            if ran >= LUA_INSTRUCTIONS || started.elapsed() >= LUA_TIME {
                return Err(mlua::Error::runtime("budget"));
            }
            Ok(VmState::Continue)
        },
    )
    .map_err(|e| e.to_string())?;
    let options = mlua::serde::SerializeOptions::new()
        .serialize_none_to_null(false)
        .serialize_unit_to_null(false)
        .set_array_metatable(false);
    let obj = lua
        .to_value_with(object, options)
        .map_err(|e| format!("the object cannot be given to the script: {e}"))?;
    lua.globals().set("obj", obj).map_err(|e| e.to_string())?;
    let outcome: mlua::Result<mlua::Value> = lua.load(script).set_name(format!("={file}")).eval();
    let value = match outcome {
        Ok(value) => value,
        Err(error) => {
            let text = error.to_string();
            if text.contains("budget") {
                return Err(format!(
                    "the health rule ran past its budget ({} million instructions or {} ms)",
                    LUA_INSTRUCTIONS / 1_000_000,
                    LUA_TIME.as_millis()
                )
                .into());
            }
            if matches!(error, mlua::Error::MemoryError(_)) || text.contains("not enough memory") {
                return Err(format!(
                    "the health rule ran past its memory budget of {} MiB",
                    LUA_MEMORY >> 20
                )
                .into());
            }
            return Err(format!(
                "the health rule failed: {}",
                text.lines().next().unwrap_or_default()
            )
            .into());
        }
    };
    let mlua::Value::Table(table) = value else {
        return Err(
            "the health rule returned no table (expected {status = …, message = …})".into(),
        );
    };
    let status: Option<String> = table.get("status").ok();
    let message: String = table
        .get::<Option<String>>("message")
        .ok()
        .flatten()
        .unwrap_or_default();
    let said = |default: &str| {
        if message.is_empty() {
            default.to_string()
        } else {
            message.clone()
        }
    };
    Ok(match status.as_deref() {
        Some("Healthy") => Health::Healthy,
        // As Argo CD reads it: a suspended object is as its owner set it.
        Some("Suspended") => Health::Healthy,
        Some("Progressing") => Health::InProgress(said("progressing")),
        Some("Degraded") => Health::Failed(said("degraded")),
        Some("Missing") => Health::InProgress(said("missing")),
        Some("Unknown") => Health::Unknown(said("unknown")),
        Some(other) => {
            return Err(format!(
                "the health rule returned status {other:?}; expected Healthy, Progressing, Degraded, Suspended, Missing or Unknown"
            ).into());
        }
        None => return Err("the health rule returned no status".into()),
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn widget(phase: &str) -> Value {
        json!({ "apiVersion": "example.com/v1", "kind": "Widget", "metadata": { "name": "w", "generation": 1 }, "status": { "phase": phase } })
    }

    fn cel_rules() -> Compiled {
        RuleSet {
            rules: vec![Rule {
                group: "example.com".into(),
                kind: "Widget".into(),
                file: "gantry.yaml".into(),
                check: Check::Cel {
                    current: "status.phase == 'Ready'".into(),
                    in_progress: Some("status.phase == 'Provisioning'".into()),
                    failed: Some("status.phase == 'Error'".into()),
                },
            }],
        }
        .compile()
        .expect("compiles")
    }

    #[test]
    fn a_cel_rule_decides_in_flux_order() {
        let rules = cel_rules();
        assert_eq!(
            rules.evaluate("example.com", "Widget", &widget("Ready")),
            Some(Health::Healthy)
        );
        assert!(matches!(
            rules.evaluate("example.com", "Widget", &widget("Error")),
            Some(Health::Failed(_))
        ));
        assert!(matches!(
            rules.evaluate("example.com", "Widget", &widget("Provisioning")),
            Some(Health::InProgress(_))
        ));
        assert!(matches!(
            rules.evaluate("example.com", "Widget", &widget("Other")),
            Some(Health::InProgress(_))
        ));
        // No status yet: not ready, not an error.
        let bare = json!({ "apiVersion": "example.com/v1", "kind": "Widget", "metadata": { "name": "w" } });
        assert!(matches!(
            rules.evaluate("example.com", "Widget", &bare),
            Some(Health::InProgress(_))
        ));
        assert_eq!(
            rules.evaluate("example.com", "Gadget", &widget("Ready")),
            None,
            "another kind"
        );
    }

    #[test]
    fn a_cel_expression_that_does_not_compile_or_could_run_long_is_refused() {
        let (line, column, message) = compile_cel("status.phase ==").unwrap_err();
        assert_eq!(line, 1);
        assert!(column > 1, "{column}: {message}");
        let nested =
            compile_cel("status.items.all(a, status.items.exists(b, a == b))").unwrap_err();
        assert!(nested.2.contains("inside another's body"), "{nested:?}");
        compile_cel("status.conditions.filter(c, c.type == 'Ready').all(c, c.status == 'True')")
            .expect("chained macros are fine");
        let grows = compile_cel("['a'].map(s, s + s).map(s, s + s).size() > 0").unwrap_err();
        assert!(grows.2.contains("`map` is not allowed"), "{grows:?}");
        compile_cel("metadata.name == '.map('").expect("a string is not a call");
        let long = "true && ".repeat(300) + "true";
        assert!(compile_cel(&long).unwrap_err().2.contains("at most 2000"));
    }

    const ARGO_STYLE: &str = r#"
hs = {}
if obj.status ~= nil and obj.status.conditions ~= nil then
  for i, condition in ipairs(obj.status.conditions) do
    if condition.type == "Ready" and condition.status == "False" then
      hs.status = "Degraded"
      hs.message = condition.message
      return hs
    end
    if condition.type == "Ready" and condition.status == "True" then
      hs.status = "Healthy"
      hs.message = "ready"
      return hs
    end
  end
end
hs.status = "Progressing"
hs.message = "Waiting for the widget"
return hs
"#;

    fn lua_rules(script: &str) -> Result<Compiled, RuleError> {
        RuleSet {
            rules: vec![Rule {
                group: "example.com".into(),
                kind: "Widget".into(),
                file: "health/example.com/Widget/health.lua".into(),
                check: Check::Lua {
                    script: script.into(),
                },
            }],
        }
        .compile()
    }

    #[test]
    fn an_argo_cd_lua_script_decides_as_it_does_there() {
        let rules = lua_rules(ARGO_STYLE).expect("compiles");
        let with = |status: &str, message: &str| json!({ "metadata": { "name": "w" }, "status": { "conditions": [{ "type": "Ready", "status": status, "message": message }] } });
        assert_eq!(
            rules.evaluate("example.com", "Widget", &with("True", "")),
            Some(Health::Healthy)
        );
        assert_eq!(
            rules.evaluate("example.com", "Widget", &with("False", "quota exceeded")),
            Some(Health::Failed("quota exceeded".into()))
        );
        assert_eq!(
            rules.evaluate(
                "example.com",
                "Widget",
                &json!({ "metadata": { "name": "w" } })
            ),
            Some(Health::InProgress("Waiting for the widget".into()))
        );
    }

    #[test]
    fn a_lua_script_is_bounded_and_has_no_io() {
        let error = lua_rules("hs = {\nstatus = = 1\n}").unwrap_err();
        assert_eq!(error.line, Some(2), "{error}");
        assert!(
            error
                .to_string()
                .starts_with("health/example.com/Widget/health.lua:2: "),
            "{error}"
        );

        let spin = lua_rules("while true do end").expect("compiles");
        let health = spin.evaluate("example.com", "Widget", &widget("x"));
        assert!(
            matches!(&health, Some(Health::Unknown(why)) if why.contains("budget")),
            "{health:?}"
        );

        let hog =
            lua_rules("local t = {} for i = 1, 100000000 do t[i] = string.rep('x', 1000) end")
                .expect("compiles");
        let health = hog.evaluate("example.com", "Widget", &widget("x"));
        assert!(
            matches!(&health, Some(Health::Unknown(why)) if why.contains("budget")),
            "{health:?}"
        );

        // A backtracking pattern on a long subject is refused, not run.
        let bomb = lua_rules("return { status = ('a'):rep(5000):find(('a*'):rep(20) .. 'b') and 'Healthy' or 'Degraded' }").expect("compiles");
        let health = bomb.evaluate("example.com", "Widget", &widget("x"));
        assert!(
            matches!(&health, Some(Health::Unknown(why)) if why.contains("at most")),
            "{health:?}"
        );
        let plain = lua_rules("return { status = string.find(obj.status.phase, 'x', 1, true) and 'Healthy' or 'Degraded' }").expect("compiles");
        assert_eq!(
            plain.evaluate("example.com", "Widget", &widget("x")),
            Some(Health::Healthy)
        );

        for escape in [
            "return io.open('/etc/passwd')",
            "return os.execute('touch /tmp/owned')",
            "return require('os')",
            "return dofile('/etc/passwd')",
            "return load('return 1')()",
        ] {
            let rules = lua_rules(escape).expect("compiles");
            let health = rules.evaluate("example.com", "Widget", &widget("x"));
            assert!(
                matches!(&health, Some(Health::Unknown(why)) if why.contains("failed")),
                "{escape}: {health:?}"
            );
        }
    }
}
