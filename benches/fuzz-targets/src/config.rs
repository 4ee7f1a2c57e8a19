//! The configuration file, as `sluice run --config` and `sluice validate` read it (without the
//! environment's overrides, which are no part of the file).
//!
//! The input is the file's text. A file that loads serialises (as the configuration shows
//! itself) and is validated; whatever is refused, at loading or validation, is refused with at
//! least one error, each naming its field and saying what is wrong.
//!
//! A file that sets a `<name>_file` setting is skipped: loading reads the file it names, and a
//! fuzzer's path (`/dev/zero`, a FIFO) would test the file system, not the parser.

use sluice::config::{ConfigErrors, RawConfig};

/// Loads and validates `data` as a configuration file; panics when a property above does not
/// hold.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if names_a_file(text) {
        return;
    }
    let raw = match RawConfig::from_toml(text) {
        Ok(raw) => raw,
        Err(errors) => return assert_explained(&errors),
    };
    if let Err(error) = serde_json::to_string(&raw) {
        panic!("a loaded configuration does not serialise: {error}");
    }
    if let Err(errors) = raw.validate() {
        assert_explained(&errors);
    }
}

/// Whether any key, at any depth, is a `<name>_file` setting. Text that is not TOML names
/// nothing, since the loader refuses it before it reads a value.
fn names_a_file(text: &str) -> bool {
    fn walk(value: &toml::Value) -> bool {
        match value {
            toml::Value::Table(table) => table
                .iter()
                .any(|(key, value)| key.ends_with("_file") || walk(value)),
            toml::Value::Array(values) => values.iter().any(walk),
            _ => false,
        }
    }
    text.parse::<toml::Table>()
        .is_ok_and(|table| walk(&toml::Value::Table(table)))
}

fn assert_explained(errors: &ConfigErrors) {
    assert!(!errors.0.is_empty(), "refused without an error");
    for error in &errors.0 {
        assert!(
            !error.field.is_empty() && !error.message.trim().is_empty(),
            "an error without its field or message: {error:?}"
        );
    }
}
