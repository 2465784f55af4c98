//! Canonical JSON exactly as securesystemslib's `encode_canonical` writes it (OLPC canonical
//! JSON): object keys sorted by code point (Python's `sorted` on `str`), no whitespace, only `"`
//! and `\\` escaped (every other character, control characters included, as it is, in UTF-8),
//! integers only, strings never normalised.
//!
//! Written here rather than with a JSON formatter: sorting a key by its serialised bytes puts
//! `"a b"` before `"a"` (the closing quote sorts after the space), and normalising strings to
//! NFC changes bytes securesystemslib signs as they are; either makes a valid signature fail.

use serde::ser::Error as _;
use serde::Serialize;
use serde_json::Value;

use crate::{Error, Result};

/// The canonical JSON bytes of a JSON value; `what` names it in errors.
pub fn to_vec(value: &Value, what: &str) -> Result<Vec<u8>> {
    let mut buf = Vec::new();
    write(&mut buf, value).map_err(|source| Error::Canonical {
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

fn write(out: &mut Vec<u8>, value: &Value) -> std::result::Result<(), serde_json::Error> {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Value::Number(n) => {
            if !(n.is_i64() || n.is_u64()) {
                return Err(serde_json::Error::custom(format!("{n} is not an integer")));
            }
            out.extend_from_slice(n.to_string().as_bytes());
        }
        Value::String(s) => write_string(out, s),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write(out, item)?;
            }
            out.push(b']');
        }
        Value::Object(map) => {
            // UTF-8 byte order is code point order, which is how Python sorts `str`.
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push(b'{');
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_string(out, key);
                out.push(b':');
                write(out, item)?;
            }
            out.push(b'}');
        }
    }
    Ok(())
}

fn write_string(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    for &b in s.as_bytes() {
        if b == b'"' || b == b'\\' {
            out.push(b'\\');
        }
        out.push(b);
    }
    out.push(b'"');
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
        assert_eq!(vectors.len(), 6);
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
    fn keys_sort_by_code_point_not_by_their_quoted_bytes() {
        // The quoted bytes of "a b" sort before those of "a" ('"' > ' '); Python's do not.
        let got = to_vec(&json!({"a b": 2, "a": 1, "a!": 3}), "t").unwrap();
        assert_eq!(got, br#"{"a":1,"a b":2,"a!":3}"#);
    }

    #[test]
    fn strings_are_kept_as_they_are() {
        // "e" followed by a combining acute accent stays two code points.
        let got = to_vec(&json!({"a": "e\u{301}"}), "t").unwrap();
        assert_eq!(got, "{\"a\":\"e\u{301}\"}".as_bytes());
    }
}
