//! Scripts: what they are called, how they are compiled, and the sandbox they run in.
//!
//! The file name says what a script is (see `CONTRACT.md`):
//! `GetWebhookResponseBody_<Trigger>.rhai` defines a trigger and builds its payload;
//! `SysNotification_<Table>_ParseForEach.rhai` runs for each changed row of `<Table>` and makes that
//! table tracked. Every script is compiled once into an AST shared by all runs; a [`ScriptSet`] is an
//! immutable snapshot of the folder, swapped whole in the [`ScriptRegistry`].

mod diagnostic;
mod sandbox;
mod snapshot_answers;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use sha2::{Digest, Sha256};

pub use diagnostic::Diagnostic;
pub use sandbox::{build_engine, FilterInput, Fired, Sandbox, SandboxPool};

use crate::config::SandboxLimits;

const BODY_PREFIX: &str = "GetWebhookResponseBody_";
const NOTIFICATION_PREFIX: &str = "SysNotification_";
const NOTIFICATION_SUFFIX: &str = "_ParseForEach";
/// The application's schema, applied at start (one per database, see `Database::schema_file`);
/// not scripts.
pub const SCHEMA_FILES: [&str; 2] = ["schema.sql", "schema.postgres.sql"];

/// What a script file is, from its name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScriptKind {
    /// Builds the payload of trigger `trigger`.
    Body { trigger: String },
    /// Runs for each changed row of `table`.
    Notification { table: String },
    /// A hook's filter: not a file, but the hook's `filter` field (see `crate::filters`).
    Filter,
}

/// `[A-Za-z0-9_]+`, the shape of trigger and table names.
fn is_name(text: &str) -> bool {
    !text.is_empty() && text.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl ScriptKind {
    /// `None` for a file that is not a herald script at all (not `.rhai`).
    pub fn from_file_name(file_name: &str) -> Option<Result<ScriptKind, String>> {
        let stem = file_name.strip_suffix(".rhai")?;
        if let Some(trigger) = stem.strip_prefix(BODY_PREFIX) {
            return Some(if is_name(trigger) {
                Ok(ScriptKind::Body {
                    trigger: trigger.to_owned(),
                })
            } else {
                Err(format!(
                    "trigger name '{trigger}' must be letters, digits and underscores"
                ))
            });
        }
        if let Some(rest) = stem.strip_prefix(NOTIFICATION_PREFIX) {
            return Some(match rest.strip_suffix(NOTIFICATION_SUFFIX) {
                Some(table) if is_name(table) => Ok(ScriptKind::Notification {
                    table: table.to_owned(),
                }),
                _ => Err(format!(
                    "a notification script is named {NOTIFICATION_PREFIX}<Table>{NOTIFICATION_SUFFIX}.rhai"
                )),
            });
        }
        Some(Err(format!(
            "not a herald script name: expected {BODY_PREFIX}<Trigger>.rhai or \
             {NOTIFICATION_PREFIX}<Table>{NOTIFICATION_SUFFIX}.rhai"
        )))
    }
}

/// One compiled script.
#[derive(Debug)]
pub struct Script {
    pub file_name: String,
    pub kind: ScriptKind,
    pub ast: rhai::AST,
    /// The text it was compiled from, to show the offending line of an error.
    pub source: String,
    /// The first 16 hex digits of the SHA-256 of the source: which version rendered an event.
    pub hash: String,
}

/// What the folder holds under one file name.
#[derive(Debug)]
pub struct ScriptEntry<'a> {
    pub file_name: &'a str,
    /// `None` for a file whose name is not a valid script name.
    pub kind: Option<ScriptKind>,
    /// The version in use.
    pub live: Option<&'a Arc<Script>>,
    /// Why the file on disk is not in use.
    pub error: Option<&'a Diagnostic>,
}

/// Every script of the folder, compiled; what failed to compile is in `diagnostics`.
#[derive(Debug, Default)]
pub struct ScriptSet {
    pub folder: PathBuf,
    body: BTreeMap<String, Arc<Script>>,
    notification: BTreeMap<String, Arc<Script>>,
    trigger_names: Arc<BTreeSet<String>>,
    pub diagnostics: Vec<Diagnostic>,
    /// `schema.sql` and `schema.postgres.sql`, those the folder has, by file name.
    pub schemas: BTreeMap<String, String>,
    /// When the folder was read, Unix milliseconds.
    pub loaded_at: i64,
}

impl ScriptSet {
    /// Reads and compiles every `.rhai` file of `folder` (not its subfolders). A file that fails is
    /// left out and described in `diagnostics`; the others are usable.
    pub fn load(folder: &Path, limits: &SandboxLimits) -> std::io::Result<ScriptSet> {
        Self::load_over(folder, limits, None)
    }

    /// Loads the folder again after a change. A file that no longer compiles keeps its previous
    /// working version live (and its error is in `diagnostics`); a file that is gone is gone. A file
    /// whose text did not change is not compiled again.
    pub fn reload(&self, limits: &SandboxLimits) -> std::io::Result<ScriptSet> {
        Self::load_over(&self.folder, limits, Some(self))
    }

    /// What the set is, in 16 hex digits: the same for two folders with the same live scripts and
    /// schema scripts, different if any differs (nodes show it, so a folder that drifted is seen).
    pub fn fingerprint(&self) -> String {
        use sha2::{Digest, Sha256};
        let mut digest = Sha256::new();
        for script in self.body.values().chain(self.notification.values()) {
            digest.update(script.file_name.as_bytes());
            digest.update([0]);
            digest.update(script.hash.as_bytes());
            digest.update([0]);
        }
        for (file, sql) in &self.schemas {
            digest.update(file.as_bytes());
            digest.update([0]);
            digest.update(sql.as_bytes());
            digest.update([0]);
        }
        digest.finalize()[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// The schema script `file_name` (see `SCHEMA_FILES`), if the folder has it.
    pub fn schema(&self, file_name: &str) -> Option<&str> {
        self.schemas.get(file_name).map(String::as_str)
    }

    /// The live script loaded from `file_name`, if any.
    pub fn by_file(&self, file_name: &str) -> Option<&Arc<Script>> {
        self.body
            .values()
            .chain(self.notification.values())
            .find(|s| s.file_name == file_name)
    }

    /// Every live script, body scripts first, each group sorted by name.
    pub fn scripts(&self) -> impl Iterator<Item = &Arc<Script>> {
        self.body.values().chain(self.notification.values())
    }

    /// One entry per file of the folder that is (or claims to be) a script, sorted by file name:
    /// its live version, its error, or both when an edit broke a working script.
    pub fn entries(&self) -> Vec<ScriptEntry<'_>> {
        let mut entries: BTreeMap<&str, ScriptEntry<'_>> = BTreeMap::new();
        for script in self.scripts() {
            entries.insert(
                &script.file_name,
                ScriptEntry {
                    file_name: &script.file_name,
                    kind: Some(script.kind.clone()),
                    live: Some(script),
                    error: None,
                },
            );
        }
        for diagnostic in &self.diagnostics {
            entries
                .entry(&diagnostic.file)
                .or_insert_with(|| ScriptEntry {
                    file_name: &diagnostic.file,
                    kind: ScriptKind::from_file_name(&diagnostic.file).and_then(Result::ok),
                    live: None,
                    error: None,
                })
                .error = Some(diagnostic);
        }
        entries.into_values().collect()
    }

    fn load_over(
        folder: &Path,
        limits: &SandboxLimits,
        previous: Option<&ScriptSet>,
    ) -> std::io::Result<ScriptSet> {
        let engine = build_engine(limits);
        let mut set = ScriptSet {
            folder: folder.to_owned(),
            loaded_at: crate::clock::now_ms(),
            ..ScriptSet::default()
        };
        let mut entries: Vec<_> = std::fs::read_dir(folder)?
            .filter_map(Result::ok)
            .filter(|e| e.file_type().map(|t| t.is_file()).unwrap_or(false))
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        entries.sort();
        for file_name in entries {
            let path = folder.join(&file_name);
            if SCHEMA_FILES.contains(&file_name.as_str()) {
                let sql = std::fs::read_to_string(&path)?;
                set.schemas.insert(file_name, sql);
                continue;
            }
            let kind = match ScriptKind::from_file_name(&file_name) {
                None => continue,
                Some(Err(message)) => {
                    set.diagnostics
                        .push(Diagnostic::new(&file_name, None, message));
                    continue;
                }
                Some(Ok(kind)) => kind,
            };
            let source = match std::fs::read_to_string(&path) {
                Ok(source) => source,
                Err(e) => {
                    set.diagnostics.push(Diagnostic::new(
                        &file_name,
                        None,
                        format!("cannot read: {e}"),
                    ));
                    continue;
                }
            };
            let old = previous.and_then(|p| p.by_file(&file_name));
            if let Some(old) = old.filter(|old| old.source == source) {
                set.insert(old.clone());
                continue;
            }
            let compiled = if source.trim().is_empty() {
                // Most likely caught between an editor's truncate and its write; an empty script
                // is never what its author meant to run.
                Err(Diagnostic::new(&file_name, None, "the file is empty"))
            } else {
                compile(&engine, &file_name, &kind, &source)
            };
            match compiled {
                Ok(script) => set.insert(Arc::new(script)),
                Err(diagnostic) => {
                    if let Some(old) = old {
                        // A broken edit never replaces a working version.
                        set.insert(old.clone());
                    }
                    set.diagnostics.push(diagnostic.with_source(&source));
                }
            }
        }
        set.trigger_names = Arc::new(set.body.keys().cloned().collect());
        Ok(set)
    }

    fn insert(&mut self, script: Arc<Script>) {
        match &script.kind {
            ScriptKind::Body { trigger } => self.body.insert(trigger.clone(), script),
            ScriptKind::Notification { table } => self.notification.insert(table.clone(), script),
            ScriptKind::Filter => None,
        };
    }

    pub fn body(&self, trigger: &str) -> Option<&Arc<Script>> {
        self.body.get(trigger)
    }

    pub fn notification(&self, table: &str) -> Option<&Arc<Script>> {
        self.notification.get(table)
    }

    /// The triggers defined by body scripts, sorted.
    pub fn trigger_names(&self) -> &Arc<BTreeSet<String>> {
        &self.trigger_names
    }

    /// The tables that have a notification script, sorted.
    pub fn tracked_tables(&self) -> Vec<String> {
        self.notification.keys().cloned().collect()
    }
}

/// The variables each kind of script finds in scope. Declared at compile time so that a misspelt
/// variable is a compile error (`herald check` finds it) rather than a failed event.
pub(crate) fn scope_variables(kind: &ScriptKind) -> &'static [&'static str] {
    match kind {
        ScriptKind::Body { .. } => &["row_id", "sample", "limit", "change"],
        ScriptKind::Notification { .. } => {
            &["table", "row_id", "action", "action_key", "row", "old_row"]
        }
        ScriptKind::Filter => &["payload", "event", "change"],
    }
}

/// What a hook's filter is called in its errors, where a script has its file name.
pub const FILTER_NAME: &str = "filter";

/// Compiles a hook's filter with the engine of `limits`.
pub fn compile_filter(engine: &rhai::Engine, source: &str) -> Result<Script, Diagnostic> {
    if source.trim().is_empty() {
        return Err(Diagnostic::new(FILTER_NAME, None, "the filter is empty"));
    }
    compile(engine, FILTER_NAME, &ScriptKind::Filter, source)
        .map_err(|diagnostic| diagnostic.with_source(source))
}

fn compile(
    engine: &rhai::Engine,
    file_name: &str,
    kind: &ScriptKind,
    source: &str,
) -> Result<Script, Diagnostic> {
    let mut scope = rhai::Scope::new();
    for name in scope_variables(kind) {
        scope.push_dynamic(*name, rhai::Dynamic::UNIT);
    }
    let mut ast = engine
        .compile_with_scope(&scope, source)
        .map_err(|e| Diagnostic::from_parse_error(file_name, &e))?;
    ast.set_source(file_name);
    let digest = Sha256::digest(source.as_bytes());
    let hash = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    Ok(Script {
        file_name: file_name.to_owned(),
        kind: kind.clone(),
        ast,
        source: source.to_owned(),
        hash,
    })
}

/// The live set of scripts. Readers take a snapshot (an `Arc`) and keep it for a whole run, so a
/// reload never changes a script under a run that uses it.
pub struct ScriptRegistry {
    current: RwLock<Arc<ScriptSet>>,
}

impl ScriptRegistry {
    pub fn new(set: ScriptSet) -> ScriptRegistry {
        ScriptRegistry {
            current: RwLock::new(Arc::new(set)),
        }
    }

    pub fn current(&self) -> Arc<ScriptSet> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn replace(&self, set: ScriptSet) {
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(set);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_say_what_a_script_is() {
        assert_eq!(
            ScriptKind::from_file_name("GetWebhookResponseBody_NewOpportunity.rhai"),
            Some(Ok(ScriptKind::Body {
                trigger: "NewOpportunity".into()
            }))
        );
        assert_eq!(
            ScriptKind::from_file_name("SysNotification_Deal_Line_ParseForEach.rhai"),
            Some(Ok(ScriptKind::Notification {
                table: "Deal_Line".into()
            }))
        );
        assert_eq!(ScriptKind::from_file_name("schema.sql"), None);
        assert!(matches!(
            ScriptKind::from_file_name("GetWebhookResponseBody_New-Thing.rhai"),
            Some(Err(_))
        ));
        assert!(matches!(
            ScriptKind::from_file_name("SysNotification_Deal.rhai"),
            Some(Err(_))
        ));
        assert!(matches!(
            ScriptKind::from_file_name("helpers.rhai"),
            Some(Err(_))
        ));
    }

    #[test]
    fn a_folder_loads_with_its_errors_located() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("GetWebhookResponseBody_Ok.rhai"),
            "#{ id: row_id }",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("GetWebhookResponseBody_Broken.rhai"),
            "let x = 1;\nlet y = ;\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("SysNotification_Deal_ParseForEach.rhai"),
            "if actoin == \"1\" {}",
        )
        .unwrap();
        let set = ScriptSet::load(dir.path(), &SandboxLimits::default()).unwrap();
        assert!(set.body("Ok").is_some());
        assert!(set.body("Broken").is_none());
        let rendered: Vec<String> = set.diagnostics.iter().map(|d| d.to_string()).collect();
        assert!(
            rendered[0].starts_with("GetWebhookResponseBody_Broken.rhai:2:9: "),
            "{rendered:?}"
        );
        assert!(
            rendered[1].starts_with("SysNotification_Deal_ParseForEach.rhai:1:4: ")
                && rendered[1].contains("actoin"),
            "{rendered:?}"
        );
    }

    #[test]
    fn a_reload_keeps_working_versions_over_broken_or_empty_edits() {
        let dir = tempfile::tempdir().unwrap();
        let limits = SandboxLimits::default();
        let body = dir.path().join("GetWebhookResponseBody_A.rhai");
        std::fs::write(&body, "#{ v: 1 }").unwrap();
        std::fs::write(dir.path().join("GetWebhookResponseBody_B.rhai"), "#{}").unwrap();
        let first = ScriptSet::load(dir.path(), &limits).unwrap();
        let working = first.body("A").unwrap().clone();

        std::fs::write(&body, "#{ v: }").unwrap();
        let broken = first.reload(&limits).unwrap();
        assert!(Arc::ptr_eq(broken.body("A").unwrap(), &working));
        assert_eq!(broken.diagnostics.len(), 1);
        assert_eq!(
            broken.diagnostics[0].source_line.as_deref(),
            Some("#{ v: }")
        );
        assert!(
            Arc::ptr_eq(broken.body("B").unwrap(), first.body("B").unwrap()),
            "an unchanged file is not compiled again"
        );

        std::fs::write(&body, "").unwrap();
        let empty = broken.reload(&limits).unwrap();
        assert!(Arc::ptr_eq(empty.body("A").unwrap(), &working));
        assert_eq!(empty.diagnostics[0].message, "the file is empty");

        std::fs::write(&body, "#{ v: 2 }").unwrap();
        std::fs::remove_file(dir.path().join("GetWebhookResponseBody_B.rhai")).unwrap();
        let fixed = empty.reload(&limits).unwrap();
        assert_ne!(fixed.body("A").unwrap().hash, working.hash);
        assert!(fixed.diagnostics.is_empty());
        assert!(fixed.body("B").is_none());
        assert_eq!(fixed.trigger_names().iter().collect::<Vec<_>>(), ["A"]);
        let entries = fixed.entries();
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].file_name, "GetWebhookResponseBody_A.rhai");
    }
}
