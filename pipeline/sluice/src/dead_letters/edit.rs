//! The fixes `replay` applies to a JSON body before republishing it: set or delete the value
//! at a JSON pointer (RFC 6901).
//!
//! Not a jq: a dead letter is repaired by changing a field or two, and a pointer says exactly
//! which one, the same on every letter, with no language to learn or embed; an edit whose place
//! does not exist fails that letter (it stays in the queue) instead of quietly doing nothing.

use serde_json::Value;

/// One edit, from `--set POINTER=JSON` or `--delete POINTER`.
#[derive(Debug, Clone, PartialEq)]
pub enum Edit {
    /// Replace the value at `pointer`, or add it when its parent object (or array, with `-` or
    /// the index just past the end) exists. The empty pointer replaces the whole body.
    Set { pointer: String, value: Value },
    /// Remove the member or element at `pointer`, which must exist.
    Delete { pointer: String },
}

/// Parses `--set`: `POINTER=JSON`, split at the first `=`.
pub fn parse_set(argument: &str) -> Result<Edit, String> {
    let Some((pointer, value)) = argument.split_once('=') else {
        return Err(format!(
            "{argument:?} is not POINTER=JSON, e.g. --set /metric=42 or --set '/name=\"cpu\"'"
        ));
    };
    check_pointer(pointer)?;
    let value = serde_json::from_str(value).map_err(|error| {
        format!(
            "{value:?} is not a JSON value ({error}); a string needs its quotes: \
             --set '{pointer}=\"{value}\"'"
        )
    })?;
    Ok(Edit::Set {
        pointer: pointer.to_owned(),
        value,
    })
}

/// Parses `--delete`: a JSON pointer to a member or element.
pub fn parse_delete(argument: &str) -> Result<Edit, String> {
    check_pointer(argument)?;
    if argument.is_empty() {
        return Err("--delete needs a pointer below the root, e.g. /field".into());
    }
    Ok(Edit::Delete {
        pointer: argument.to_owned(),
    })
}

fn check_pointer(pointer: &str) -> Result<(), String> {
    if pointer.is_empty() || pointer.starts_with('/') {
        Ok(())
    } else {
        Err(format!(
            "{pointer:?} is not a JSON pointer: it starts with '/', e.g. /metric or /tags/0"
        ))
    }
}

/// The body after every edit, in order; the error names the edit that could not be applied.
pub fn apply(edits: &[Edit], body: &[u8]) -> Result<Vec<u8>, String> {
    let mut document: Value = serde_json::from_slice(body)
        .map_err(|error| format!("the body is not JSON ({error}), so it cannot be edited"))?;
    for edit in edits {
        match edit {
            Edit::Set { pointer, value } => set(&mut document, pointer, value.clone())
                .map_err(|error| format!("--set {pointer}: {error}"))?,
            Edit::Delete { pointer } => delete(&mut document, pointer)
                .map_err(|error| format!("--delete {pointer}: {error}"))?,
        }
    }
    serde_json::to_vec(&document).map_err(|error| format!("cannot encode the edited body: {error}"))
}

fn set(document: &mut Value, pointer: &str, value: Value) -> Result<(), String> {
    if let Some(target) = document.pointer_mut(pointer) {
        *target = value;
        return Ok(());
    }
    let (parent_pointer, token) = split_last(pointer);
    let parent = document
        .pointer_mut(parent_pointer)
        .ok_or_else(|| format!("nothing at {parent_pointer:?} to add a member to"))?;
    match parent {
        Value::Object(members) => {
            members.insert(token, value);
            Ok(())
        }
        Value::Array(elements) if token == "-" || token == elements.len().to_string() => {
            elements.push(value);
            Ok(())
        }
        Value::Array(elements) => Err(format!(
            "index {token:?} is past the end of an array of {}",
            elements.len()
        )),
        _ => Err(format!(
            "{parent_pointer:?} is neither an object nor an array"
        )),
    }
}

fn delete(document: &mut Value, pointer: &str) -> Result<(), String> {
    let (parent_pointer, token) = split_last(pointer);
    let removed = match document.pointer_mut(parent_pointer) {
        Some(Value::Object(members)) => members.remove(&token).is_some(),
        Some(Value::Array(elements)) => match token.parse::<usize>() {
            Ok(index) if index < elements.len() => {
                elements.remove(index);
                true
            }
            _ => false,
        },
        _ => false,
    };
    if removed {
        Ok(())
    } else {
        Err("nothing there to delete".into())
    }
}

/// The parent pointer and the last reference token, unescaped (`~1` is `/`, `~0` is `~`).
fn split_last(pointer: &str) -> (&str, String) {
    let (parent, token) = pointer.rsplit_once('/').unwrap_or(("", pointer));
    (parent, token.replace("~1", "/").replace("~0", "~"))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn edited(edits: &[&str], body: Value) -> Result<Value, String> {
        let edits: Vec<Edit> = edits
            .iter()
            .map(|edit| match edit.strip_prefix("-") {
                Some(pointer) => parse_delete(pointer),
                None => parse_set(edit),
            })
            .collect::<Result<_, _>>()?;
        let bytes = apply(&edits, body.to_string().as_bytes())?;
        Ok(serde_json::from_slice(&bytes).expect("JSON out"))
    }

    #[test]
    fn set_replaces_adds_and_appends() {
        let body = json!({ "metric": "high", "tags": ["a"], "nested": { "x": 1 } });
        assert_eq!(
            edited(
                &[
                    "/metric=42",
                    "/unit=\"%\"",
                    "/tags/-=\"b\"",
                    "/nested/x=null"
                ],
                body
            ),
            Ok(json!({ "metric": 42, "unit": "%", "tags": ["a", "b"], "nested": { "x": null } }))
        );
    }

    #[test]
    fn pointers_unescape_their_tokens() {
        assert_eq!(
            edited(&["/a~1b=1", "/c~0d=2"], json!({})),
            Ok(json!({ "a/b": 1, "c~d": 2 }))
        );
    }

    #[test]
    fn delete_removes_members_and_elements() {
        assert_eq!(
            edited(
                &["-/gone", "-/list/0"],
                json!({ "gone": 1, "kept": 2, "list": [1, 2] })
            ),
            Ok(json!({ "kept": 2, "list": [2] }))
        );
    }

    #[test]
    fn an_edit_with_nowhere_to_go_fails_rather_than_doing_nothing() {
        for (edit, message) in [
            ("/missing/deeper=1", "nothing at \"/missing\""),
            ("/list/5=1", "past the end"),
            ("/metric/x=1", "neither an object nor an array"),
            ("-/absent", "nothing there to delete"),
        ] {
            let error = edited(&[edit], json!({ "list": [], "metric": 3 })).expect_err(edit);
            assert!(error.contains(message), "{edit}: {error}");
        }
    }

    #[test]
    fn arguments_are_checked_when_parsed() {
        assert!(parse_set("metric=42").is_err(), "no leading slash");
        assert!(parse_set("/metric").is_err(), "no value");
        let unquoted = parse_set("/name=cpu").expect_err("bare word");
        assert!(unquoted.contains("--set '/name=\"cpu\"'"), "{unquoted}");
        assert!(parse_delete("").is_err());
        assert_eq!(
            parse_set("/a=b=\"c\"").map_err(|_| ()),
            Err(()),
            "split at the first '='"
        );
        assert_eq!(
            parse_set("=1"),
            Ok(Edit::Set {
                pointer: String::new(),
                value: json!(1)
            })
        );
    }

    #[test]
    fn a_body_that_is_not_json_cannot_be_edited() {
        let error = apply(&[parse_delete("/x").expect("edit")], b"not json").expect_err("text");
        assert!(error.contains("not JSON"), "{error}");
    }
}
