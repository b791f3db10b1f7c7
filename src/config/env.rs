//! Before the typed parse: `${VAR}` in every string value is expanded from
//! an [`Environment`], and every `<key>_file` twin of a secret key is
//! replaced by the file's content (trailing newline trimmed).

use super::problems::{join, Problems};
use std::collections::HashMap;
use std::fmt;

/// Where `${VAR}` values come from. The process environment in production,
/// a map in tests.
pub trait Environment {
    /// The value of `name`, if set.
    fn var(&self, name: &str) -> Option<String>;
}

/// The process environment.
#[derive(Clone, Copy, Debug, Default)]
pub struct ProcessEnv;

impl Environment for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl Environment for HashMap<String, String> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).cloned()
    }
}

/// Keys whose `<key>_file` twin reads the value from a file: (section, key).
const FILE_KEYS: &[(&str, &str)] = &[
    ("provider", "client_secret"),
    ("session", "secret"),
    ("session", "redis_url"),
];

/// Expands `${VAR}` in every string of `doc`, then reads the `<key>_file`
/// keys. Problems carry the key path.
pub(super) fn expand(doc: &mut toml::Table, env: &dyn Environment, problems: &mut Problems) {
    expand_table(doc, "", env, problems);
    read_file_keys(doc, problems);
}

fn expand_table(
    table: &mut toml::Table,
    path: &str,
    env: &dyn Environment,
    problems: &mut Problems,
) {
    for (k, v) in table.iter_mut() {
        expand_value(v, &join(path, k), env, problems);
    }
}

fn expand_value(v: &mut toml::Value, key: &str, env: &dyn Environment, problems: &mut Problems) {
    match v {
        toml::Value::String(s) => match expand_vars(s, env) {
            Ok(expanded) => *s = expanded,
            Err(e) => problems.add(key, e.to_string()),
        },
        toml::Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                expand_value(item, &format!("{key}[{i}]"), env, problems);
            }
        }
        toml::Value::Table(t) => expand_table(t, key, env, problems),
        _ => {}
    }
}

/// Why a `${VAR}` reference could not be expanded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum ExpandError {
    /// `${` without its `}`.
    Unterminated,
    /// `${...}` whose content is not a variable name.
    BadName(String),
    /// The variable is not set.
    NotSet(String),
}

impl fmt::Display for ExpandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExpandError::Unterminated => f.write_str("unterminated `${` in value"),
            ExpandError::BadName(name) => write!(f, "`${{{name}}}` is not a variable name"),
            ExpandError::NotSet(name) => write!(f, "environment variable {name} is not set"),
        }
    }
}

/// Expands `${VAR}` from `env`; `$$` is a literal `$`.
pub(super) fn expand_vars(s: &str, env: &dyn Environment) -> Result<String, ExpandError> {
    if !s.contains('$') {
        return Ok(s.to_string());
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(stripped) = after.strip_prefix('$') {
            out.push('$');
            rest = stripped;
        } else if let Some(body) = after.strip_prefix('{') {
            let end = body.find('}').ok_or(ExpandError::Unterminated)?;
            let name = &body[..end];
            if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                return Err(ExpandError::BadName(name.to_string()));
            }
            let value = env
                .var(name)
                .ok_or_else(|| ExpandError::NotSet(name.to_string()))?;
            out.push_str(&value);
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

fn read_file_keys(root: &mut toml::Table, problems: &mut Problems) {
    for (section, key) in FILE_KEYS {
        let Some(toml::Value::Table(t)) = root.get_mut(*section) else {
            continue;
        };
        let file_key = format!("{key}_file");
        let Some(v) = t.remove(&file_key) else {
            continue;
        };
        let full = join(section, &file_key);
        if t.contains_key(*key) {
            problems.add(full, format!("set either {key} or {file_key}, not both"));
            continue;
        }
        let toml::Value::String(path) = v else {
            problems.add(full, "must be a path string");
            continue;
        };
        match std::fs::read_to_string(&path) {
            Ok(content) => {
                let value = content.strip_suffix('\n').unwrap_or(&content);
                let value = value.strip_suffix('\r').unwrap_or(value);
                t.insert((*key).to_string(), toml::Value::String(value.to_string()));
            }
            Err(e) => problems.add(full, format!("cannot read {path}: {}", e.kind())),
        }
    }
}
