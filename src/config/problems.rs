//! What is wrong with a configuration, and where: [`ConfigError`],
//! [`ConfigProblem`], and the collector the section validators write to.
//!
//! Each section is deserialized on its own from its `toml::Value`; the key
//! path of a type or form problem comes from serde's own path to the error
//! (`serde_path_to_error`), unknown keys are found by comparing the table
//! with the field names the section's `Deserialize` impl declares, and get a
//! "did you mean" suggestion by edit distance.

use serde::de::{DeserializeOwned, Visitor};
use std::fmt;
use std::path::PathBuf;

// ===== ConfigProblem =====

/// One thing wrong with a configuration: the key path and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigProblem {
    /// Dotted key path, such as `provider.issuer` or `route[0].path`; empty
    /// for a problem of the whole document (a TOML syntax error).
    pub key: String,
    /// What is wrong with it (never contains a secret).
    pub message: String,
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.key, self.message)
        }
    }
}

// ===== ConfigError =====

/// A configuration that could not be loaded.
#[derive(Debug)]
#[non_exhaustive]
pub enum ConfigError {
    /// There is no file at `path`.
    #[non_exhaustive]
    NotFound {
        /// The path looked at.
        path: PathBuf,
    },
    /// The file at `path` exists but cannot be read.
    #[non_exhaustive]
    Unreadable {
        /// The path of the file.
        path: PathBuf,
        /// Why it cannot be read.
        source: std::io::Error,
    },
    /// The document was read and has these problems.
    #[non_exhaustive]
    Invalid {
        /// Every problem found.
        problems: Vec<ConfigProblem>,
    },
}

impl ConfigError {
    pub(super) fn one(key: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError::Invalid {
            problems: vec![ConfigProblem {
                key: key.into(),
                message: message.into(),
            }],
        }
    }

    /// Every problem found in the document (none when the file could not
    /// be read).
    pub fn problems(&self) -> &[ConfigProblem] {
        match self {
            ConfigError::Invalid { problems } => problems,
            ConfigError::NotFound { .. } | ConfigError::Unreadable { .. } => &[],
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::NotFound { path } => write!(
                f,
                "no configuration file at {}: pass its path with --config PATH, \
                 or run `oidc-gateway demo` for a complete local setup",
                path.display()
            ),
            ConfigError::Unreadable { path, source } => {
                write!(f, "cannot read {}: {source}", path.display())
            }
            ConfigError::Invalid { problems } => {
                for (i, p) in problems.iter().enumerate() {
                    if i > 0 {
                        f.write_str("\n")?;
                    }
                    write!(f, "{p}")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for ConfigError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ConfigError::Unreadable { source, .. } => Some(source),
            ConfigError::NotFound { .. } | ConfigError::Invalid { .. } => None,
        }
    }
}

// ===== Problems =====

/// The problems found so far, in the order found.
#[derive(Debug, Default)]
pub(crate) struct Problems(Vec<ConfigProblem>);

impl Problems {
    /// Records that `key` (a full key path) is wrong.
    pub(crate) fn add(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.0.push(ConfigProblem {
            key: key.into(),
            message: message.into(),
        });
    }

    /// A view that records problems of keys under `path` (`""` for the
    /// top level, `"provider"`, `"route[0]"`).
    pub(crate) fn at(&mut self, path: &str) -> At<'_> {
        At {
            problems: self,
            path: path.to_string(),
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `Ok(value)` when nothing was found, else every problem.
    pub(crate) fn into_result<T>(self, value: T) -> Result<T, ConfigError> {
        if self.0.is_empty() {
            Ok(value)
        } else {
            Err(self.into_error())
        }
    }

    pub(crate) fn into_error(self) -> ConfigError {
        ConfigError::Invalid { problems: self.0 }
    }
}

/// The problems of one section: keys are relative to the section.
#[derive(Debug)]
pub(crate) struct At<'a> {
    problems: &'a mut Problems,
    path: String,
}

impl At<'_> {
    /// Records that `key` of this section is wrong.
    pub(crate) fn add(&mut self, key: &str, message: impl Into<String>) {
        self.problems.add(join(&self.path, key), message);
    }

    /// A view of the keys under `key` of this section (`"issuer[0]"`).
    pub(crate) fn at(&mut self, key: &str) -> At<'_> {
        At {
            path: join(&self.path, key),
            problems: self.problems,
        }
    }
}

/// `path.key`, or `key` at the top level; `[i]` indexes attach directly.
pub(crate) fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else if key.is_empty() || key.starts_with('[') {
        format!("{path}{key}")
    } else {
        format!("{path}.{key}")
    }
}

// ===== sections =====

/// A section of the document: deserialized on its own, then validated.
pub(crate) trait Section: DeserializeOwned {
    /// Checks what types alone cannot; `at` is this section.
    fn validate(&self, at: &mut At<'_>);
}

/// Deserializes and validates the section at `path` from `value`. Unknown
/// keys are reported (with a suggestion) and left out, so that the rest of
/// the section is still checked; a value of the wrong type or form is
/// reported with its key path. `None` when the section could not be built.
pub(crate) fn section<T: Section>(
    path: &str,
    value: toml::Value,
    problems: &mut Problems,
) -> Option<T> {
    let toml::Value::Table(mut table) = value else {
        problems.add(path, "must be a table");
        return None;
    };
    unknown_keys::<T>(path, &mut table, problems);
    match serde_path_to_error::deserialize::<_, T>(toml::Value::Table(table)) {
        Ok(section) => {
            section.validate(&mut problems.at(path));
            Some(section)
        }
        Err(e) => {
            let (key, message) = locate(path, &e);
            problems.add(key, message);
            None
        }
    }
}

/// Reports and removes the keys of `table` that `T` has no field for.
pub(crate) fn unknown_keys<T: DeserializeOwned>(
    path: &str,
    table: &mut toml::Table,
    problems: &mut Problems,
) {
    let Some(known) = field_names::<T>() else {
        return;
    };
    let unknown: Vec<String> = table
        .keys()
        .filter(|k| !known.contains(&k.as_str()))
        .cloned()
        .collect();
    for key in unknown {
        table.remove(&key);
        problems.add(join(path, &key), unknown_key_message(&key, known));
    }
}

/// "unknown key, did you mean `listen`?", or the valid keys when none is close.
pub(crate) fn unknown_key_message(key: &str, known: &[&str]) -> String {
    match suggest(key, known) {
        Some(s) => format!("unknown key, did you mean `{s}`?"),
        None => format!("unknown key (valid keys: {})", known.join(", ")),
    }
}

/// The known key closest to `key` by edit distance (transpositions count
/// as one edit), if it is close enough to be a typo: at most one edit per
/// three characters.
pub(crate) fn suggest<'a>(key: &str, known: &[&'a str]) -> Option<&'a str> {
    let key_lower = key.to_ascii_lowercase().replace('-', "_");
    known
        .iter()
        .map(|k| (strsim::damerau_levenshtein(&key_lower, k), *k))
        .filter(|(d, k)| *d * 3 <= key.len().max(k.len()))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// The key path and message of a deserialization error.
fn locate(path: &str, e: &serde_path_to_error::Error<toml::de::Error>) -> (String, String) {
    use serde_path_to_error::Segment;
    let mut key = path.to_string();
    for segment in e.path().iter() {
        match segment {
            Segment::Seq { index } => key.push_str(&format!("[{index}]")),
            Segment::Map { key: k } | Segment::Enum { variant: k } => key = join(&key, k),
            Segment::Unknown => {}
        }
    }
    let message = e.inner().message().trim();
    // serde's derive reports a missing field at the struct, as
    // "missing field `name`": name the field itself.
    if let Some(field) = message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.strip_suffix('`'))
    {
        return (join(&key, field), "missing".to_string());
    }
    (key, message.to_string())
}

// ===== field names =====

/// The field names `T`'s derived `Deserialize` asks for, read by handing it
/// a deserializer that records them and stops. `None` for a type that is
/// not a struct.
pub(crate) fn field_names<T: DeserializeOwned>() -> Option<&'static [&'static str]> {
    match T::deserialize(FieldNames) {
        Err(Stop(fields)) => fields,
        Ok(_) => None,
    }
}

struct FieldNames;

#[derive(Debug)]
struct Stop(Option<&'static [&'static str]>);

impl fmt::Display for Stop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("field names recorded")
    }
}

impl std::error::Error for Stop {}

impl serde::de::Error for Stop {
    fn custom<T: fmt::Display>(_msg: T) -> Self {
        Stop(None)
    }
}

impl<'de> serde::Deserializer<'de> for FieldNames {
    type Error = Stop;

    fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, Stop> {
        Err(Stop(None))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Stop> {
        Err(Stop(Some(fields)))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map enum identifier ignored_any
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggest_finds_typos_and_ignores_unrelated_keys() {
        let known = ["listen", "tls_cert", "tls_key", "public_url", "prefix"];
        assert_eq!(suggest("listn", &known), Some("listen"));
        assert_eq!(suggest("lsiten", &known), Some("listen"));
        assert_eq!(suggest("public-url", &known), Some("public_url"));
        assert_eq!(suggest("PREFIX", &known), Some("prefix"));
        assert_eq!(suggest("bogus", &known), None);
        assert_eq!(suggest("url", &known), None);
    }

    #[test]
    fn join_builds_key_paths() {
        assert_eq!(join("", "server"), "server");
        assert_eq!(join("server", "listen"), "server.listen");
        assert_eq!(join("route", "[0]"), "route[0]");
        assert_eq!(join("route[0]", "path"), "route[0].path");
    }

    #[test]
    fn field_names_are_read_from_the_derive() {
        #[derive(serde::Deserialize)]
        #[expect(dead_code, reason = "only the field names are read")]
        struct Probe {
            a: u8,
            #[serde(rename = "b_renamed")]
            b: u8,
        }
        assert_eq!(field_names::<Probe>(), Some(&["a", "b_renamed"][..]));
        assert_eq!(field_names::<String>(), None);
    }
}
