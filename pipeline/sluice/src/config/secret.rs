//! Secrets and their `<name>_file` siblings.
//!
//! Every secret setting (`amqp.url`, `influx.password`, ...) can instead be given as the path of
//! a file holding it, in `<name>_file`: that is how Docker and Kubernetes hand secrets to a
//! container. [`SecretFile`] is such a path together with what reading it gave, and [`secret`]
//! picks a setting's value from the two, so every secret is checked the same way.

use std::fmt;
use std::path::PathBuf;

use secrecy::{ExposeSecret as _, SecretString};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::fingerprint;

/// A `<name>_file` setting: a path, and the secret read from it (or why it could not be).
///
/// The file is read when the configuration is deserialized, so a loaded configuration keeps the
/// secrets it was loaded with: a reload reads the files again, while a reload's fallback to the
/// previous configuration gets the previous secrets, not whatever the files hold by then.
/// Neither `Debug` nor `Serialize` shows the contents (except into a fingerprint's hash, so a
/// changed file restarts the parts that use it).
#[derive(Clone)]
pub struct SecretFile {
    path: PathBuf,
    /// The contents, or the reading error's text (which never holds the contents).
    contents: Result<SecretString, String>,
}

impl SecretFile {
    /// Reads `path`: the secret is its contents without trailing line breaks, which `echo` and
    /// most editors leave when a secret file is written.
    pub fn read(path: impl Into<PathBuf>) -> Self {
        let path = path.into();
        let contents = match std::fs::read_to_string(&path) {
            Ok(text) => {
                let secret = text.trim_end_matches(['\n', '\r']);
                if secret.is_empty() {
                    Err("the file is empty".to_owned())
                } else {
                    Ok(SecretString::from(secret))
                }
            }
            Err(error) => Err(error.to_string()),
        };
        Self { path, contents }
    }
}

impl fmt::Debug for SecretFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("SecretFile").field(&self.path).finish()
    }
}

impl<'de> Deserialize<'de> for SecretFile {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // An unreadable file is not a deserialization error: `secret` reports it with the
        // setting's full name, which a deserializer inside `[sinks.<name>]` does not know.
        PathBuf::deserialize(deserializer).map(SecretFile::read)
    }
}

impl Serialize for SecretFile {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if fingerprint::revealing() {
            let contents = self.contents.as_ref().map(|secret| secret.expose_secret());
            return (&self.path, contents).serialize(serializer);
        }
        self.path.serialize(serializer)
    }
}

/// The setting's error has been reported to `fail` already.
#[derive(Debug)]
pub(super) struct Reported;

/// The secret that the setting `field` gives: its own `value`, or the contents of its `file`
/// (`<field>_file`); `Ok(None)` when neither is set. Both set, or a file that could not be read,
/// is reported to `fail` naming the field (and the path, never the contents).
pub(super) fn secret(
    field: &str,
    value: Option<&SecretString>,
    file: Option<&SecretFile>,
    fail: &mut impl FnMut(&str, String),
) -> Result<Option<SecretString>, Reported> {
    let file_field = format!("{field}_file");
    match (value, file) {
        (None, None) => Ok(None),
        (Some(value), None) => Ok(Some(value.clone())),
        (Some(_), Some(_)) => {
            fail(
                &file_field,
                format!("set either {field} or {file_field}, not both"),
            );
            Err(Reported)
        }
        (None, Some(file)) => match &file.contents {
            Ok(secret) => Ok(Some(secret.clone())),
            Err(error) => {
                fail(
                    &file_field,
                    format!("cannot read {}: {error}", file.path.display()),
                );
                Err(Reported)
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(errors: &mut Vec<(String, String)>) -> impl FnMut(&str, String) + '_ {
        |field, message| errors.push((field.to_owned(), message))
    }

    #[test]
    fn a_file_gives_its_contents_without_the_trailing_line_break() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("password");
        std::fs::write(&path, "  s3cret value \r\n").expect("write");
        let mut errors = Vec::new();
        let got = secret(
            "influx.password",
            None,
            Some(&SecretFile::read(&path)),
            &mut collect(&mut errors),
        )
        .expect("read")
        .expect("set");
        // Only line breaks go: spaces may be part of a password.
        assert_eq!(got.expose_secret(), "  s3cret value ");
        assert!(errors.is_empty(), "{errors:?}");
    }

    #[test]
    fn both_set_is_an_error_naming_both_fields() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("token");
        std::fs::write(&path, "file-secret\n").expect("write");
        let mut errors = Vec::new();
        let value = SecretString::from("inline-secret");
        let got = secret(
            "manager.token",
            Some(&value),
            Some(&SecretFile::read(&path)),
            &mut collect(&mut errors),
        );
        assert!(got.is_err());
        assert_eq!(errors.len(), 1, "{errors:?}");
        let (field, message) = &errors[0];
        assert_eq!(field, "manager.token_file");
        assert!(
            message.contains("manager.token ") && message.contains("manager.token_file"),
            "{message}"
        );
        assert!(!message.contains("secret"), "{message}");
    }

    #[test]
    fn an_unreadable_or_empty_file_is_an_error_naming_the_field_and_the_path() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let missing = dir.path().join("missing");
        let empty = dir.path().join("empty");
        std::fs::write(&empty, "\n").expect("write");
        for path in [missing, empty] {
            let mut errors = Vec::new();
            let got = secret(
                "elasticsearch.api_key",
                None,
                Some(&SecretFile::read(&path)),
                &mut collect(&mut errors),
            );
            assert!(got.is_err());
            let (field, message) = &errors[0];
            assert_eq!(field, "elasticsearch.api_key_file");
            assert!(message.contains(&path.display().to_string()), "{message}");
        }
    }

    #[test]
    fn debug_and_serialization_show_the_path_only() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("password");
        std::fs::write(&path, "hunter2-from-file\n").expect("write");
        let file = SecretFile::read(&path);
        let shown = [
            format!("{file:?}"),
            serde_json::to_string(&file).expect("serializes"),
        ];
        for shown in shown {
            assert!(shown.contains("password"), "{shown}");
            assert!(!shown.contains("hunter2"), "{shown}");
        }
    }
}
