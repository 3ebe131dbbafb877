//! The independent check after an edit: both files are loaded with libyaml (serde_yaml_ng),
//! the intended change is applied to the old data, and the result must equal the new data.

use serde::Deserialize;
use serde_yaml_ng::Value;

use super::{Desired, DigestChange, EditError, KIND};

fn load_all(text: &str) -> Result<Vec<Value>, EditError> {
    // libyaml reads a leading byte-order mark through &str as content; the edit never
    // touches it (it is kept byte for byte), so compare the data after it.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    serde_yaml_ng::Deserializer::from_str(text)
        .map(|doc| Value::deserialize(doc).map_err(|e| EditError::Verification(e.to_string())))
        .collect()
}

fn is_target(doc: &Value, name: &str) -> bool {
    doc.get("kind").and_then(Value::as_str) == Some(KIND)
        && doc
            .get("metadata")
            .and_then(|m| m.get("name"))
            .and_then(Value::as_str)
            == Some(name)
}

pub(super) fn same_except_model(
    old: &str,
    new: &str,
    name: &str,
    desired: &Desired,
) -> Result<(), EditError> {
    let mut expected = load_all(old)?;
    let actual = load_all(new)?;
    let mut targets = expected.iter_mut().filter(|doc| is_target(doc, name));
    let (Some(target), None) = (targets.next(), targets.next()) else {
        return Err(EditError::Verification(format!(
            "libyaml does not see exactly one {KIND} {name:?}"
        )));
    };
    let Some(model) = target
        .get_mut("spec")
        .and_then(|spec| spec.get_mut("model"))
        .and_then(Value::as_mapping_mut)
    else {
        return Err(EditError::Verification(
            "libyaml does not see spec.model as a mapping".to_string(),
        ));
    };
    model.insert("version".into(), Value::String(desired.version.clone()));
    model.insert("uri".into(), Value::String(desired.uri.clone()));
    match &desired.sha256 {
        DigestChange::Set(digest) => {
            model.insert("sha256".into(), Value::String(digest.clone()));
        }
        DigestChange::Remove => {
            model.remove("sha256");
        }
        DigestChange::Unspecified => {}
    }
    if expected != actual {
        return Err(EditError::Verification(
            "the edited file differs from the original in more than spec.model".to_string(),
        ));
    }
    Ok(())
}
