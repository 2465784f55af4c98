//! Canonical JSON as securesystemslib and python-tuf produce it (OLPC canonical JSON): object
//! keys sorted, no whitespace, only `"` and `\` escaped, integers only.
//!
//! The `olpc-cjson` formatter does the writing. It normalises strings to NFC while
//! securesystemslib keeps them as they are, so a string that is not already NFC is refused:
//! both sides then always produce the same bytes for what they accept.

use serde::Serialize;
use serde_json::Value;
use unicode_normalization::is_nfc;

use crate::{Error, Result};

/// The canonical JSON bytes of a JSON value; `what` names it in errors.
pub fn to_vec(value: &Value, what: &str) -> Result<Vec<u8>> {
    check_nfc(value)?;
    let mut buf = Vec::new();
    let mut ser =
        serde_json::Serializer::with_formatter(&mut buf, olpc_cjson::CanonicalFormatter::new());
    value
        .serialize(&mut ser)
        .map_err(|source| Error::Canonical {
            what: what.to_string(),
            source,
        })?;
    Ok(buf)
}

/// The canonical JSON bytes of any serialisable value (through its JSON value).
pub fn to_vec_of<T: Serialize>(value: &T, what: &str) -> Result<Vec<u8>> {
    let value = serde_json::to_value(value).map_err(|source| Error::Canonical {
        what: what.to_string(),
        source,
    })?;
    to_vec(&value, what)
}

fn check_nfc(value: &Value) -> Result<()> {
    let check = |s: &str| {
        if is_nfc(s) {
            Ok(())
        } else {
            Err(Error::NotNfc {
                string: s.to_string(),
            })
        }
    };
    match value {
        Value::String(s) => check(s),
        Value::Array(items) => items.iter().try_for_each(check_nfc),
        Value::Object(map) => map.iter().try_for_each(|(k, v)| {
            check(k)?;
            check_nfc(v)
        }),
        Value::Null | Value::Bool(_) | Value::Number(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// Inputs and the bytes securesystemslib's `encode_canonical` made of them
    /// (tests/data/make_fixtures.py).
    #[test]
    fn matches_securesystemslib_vectors() {
        let text = include_str!("../tests/data/canonical-vectors.json");
        let vectors: Vec<Value> = serde_json::from_str(text).unwrap();
        assert_eq!(vectors.len(), 4);
        for vector in vectors {
            let expected = vector["canonical"].as_str().unwrap();
            let got = to_vec(&vector["input"], "vector").unwrap();
            assert_eq!(String::from_utf8(got).unwrap(), expected);
        }
    }

    #[test]
    fn sorts_keys_and_escapes_only_quote_and_backslash() {
        let value = json!({"b": [1, {"d": null, "c": true}], "a": "\"\\\n\u{7f}/"});
        let got = to_vec(&value, "t").unwrap();
        assert_eq!(
            got,
            b"{\"a\":\"\\\"\\\\\n\x7f/\",\"b\":[1,{\"c\":true,\"d\":null}]}"
        );
    }

    #[test]
    fn floats_are_refused() {
        let err = to_vec(&json!({"a": 1.5}), "t").unwrap_err();
        assert!(matches!(err, Error::Canonical { .. }), "{err}");
    }

    #[test]
    fn strings_not_in_nfc_are_refused_in_values_and_keys() {
        // "e" followed by a combining acute accent: NFC would turn it into one code point.
        for value in [
            json!({"a": "e\u{301}"}),
            json!({"e\u{301}": 1}),
            json!(["e\u{301}"]),
        ] {
            let err = to_vec(&value, "t").unwrap_err();
            assert!(matches!(err, Error::NotNfc { .. }), "{err}");
        }
        assert!(to_vec(&json!({"a": "\u{e9}"}), "t").is_ok());
    }
}
