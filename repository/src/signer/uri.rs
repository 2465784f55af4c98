//! PKCS#11 URIs naming a key in a token (RFC 7512, the part a signer needs). Pure parsing.
//!
//! ```text
//! pkcs11:token=flipside-root;object=root-1?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=/etc/flipside/pin
//! pkcs11:token=hsm;id=%01%02?module-path=/usr/lib/x.so&pin-env=FLIPSIDE_PIN
//! ```
//!
//! | attribute | where | meaning |
//! |---|---|---|
//! | `token` | path | the token label (required) |
//! | `object` | path | the key's `CKA_LABEL` |
//! | `id` | path | the key's `CKA_ID`, percent-encoded bytes |
//! | `type` | path | `private` if given (the signer uses the private key) |
//! | `module-path` | query | the PKCS#11 module (shared library) to load (required) |
//! | `pin-source` | query | a file holding the user PIN (`file:` prefix optional) |
//! | `pin-env` | query | an environment variable holding the user PIN (flipside's extension) |
//!
//! At least one of `object` and `id`. The PIN is never part of the URI: `pin-value` is refused
//! (a command line and a log would show it). Without `pin-source` and `pin-env` the PIN is read
//! from `FLIPSIDE_PKCS11_PIN`. Values are percent-decoded; any other attribute is refused
//! rather than ignored, so a typo cannot select another key.

use std::fmt;
use std::path::PathBuf;

/// The environment variable the PIN is read from when the URI names no source.
pub const DEFAULT_PIN_ENV: &str = "FLIPSIDE_PKCS11_PIN";

/// Where the user PIN comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PinSource {
    /// A file; its content up to the first line end.
    File(PathBuf),
    /// An environment variable.
    Env(String),
}

/// A key in a PKCS#11 token, as a URI names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pkcs11Uri {
    pub module: PathBuf,
    pub token: String,
    pub object: Option<String>,
    pub id: Option<Vec<u8>>,
    pub pin: PinSource,
}

/// Why a URI does not name a key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct UriError(String);

impl Pkcs11Uri {
    /// Parses `pkcs11:PATH-ATTRS[?QUERY-ATTRS]`.
    pub fn parse(text: &str) -> Result<Self, UriError> {
        let bad = |why: String| Err(UriError(why));
        let Some(rest) = text.trim().strip_prefix("pkcs11:") else {
            return bad("a PKCS#11 URI starts with `pkcs11:`".to_string());
        };
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (mut token, mut object, mut id, mut module) = (None, None, None, None);
        let mut pin = None;
        let attrs = path
            .split(';')
            .map(|a| (a, ';'))
            .chain(query.split('&').map(|a| (a, '&')));
        for (attr, sep) in attrs.filter(|(a, _)| !a.is_empty()) {
            let Some((name, value)) = attr.split_once('=') else {
                return bad(format!("attribute {attr:?} has no `=`"));
            };
            let bytes = percent_decode(value)?;
            let string = || {
                String::from_utf8(bytes.clone())
                    .map_err(|_| UriError(format!("the {name} value is not UTF-8")))
            };
            let in_path = sep == ';';
            match (name, in_path) {
                ("token", true) => {
                    once(&token, name)?;
                    token = Some(string()?);
                }
                ("object", true) => {
                    once(&object, name)?;
                    object = Some(string()?);
                }
                ("id", true) => {
                    once(&id, name)?;
                    id = Some(bytes);
                }
                ("type", true) if value == "private" => {}
                ("type", true) => return bad(format!("type={value}: a signer names its private key (type=private)")),
                ("module-path", false) => {
                    once(&module, name)?;
                    module = Some(PathBuf::from(string()?));
                }
                ("pin-source", false) => {
                    once(&pin, name)?;
                    let source = string()?;
                    let path = source.strip_prefix("file:").unwrap_or(&source);
                    pin = Some(PinSource::File(PathBuf::from(path)));
                }
                ("pin-env", false) => {
                    once(&pin, name)?;
                    pin = Some(PinSource::Env(string()?));
                }
                ("pin-value", _) => {
                    return bad("pin-value is refused: a PIN in a URI ends up in shell histories and logs; put it in a file (pin-source=/path) or an environment variable (pin-env=NAME)".to_string())
                }
                _ => {
                    let part = if in_path { "path" } else { "query" };
                    return bad(format!("unknown {part} attribute {name:?}; known: token, object, id, type (path), module-path, pin-source, pin-env (query)"));
                }
            }
        }
        let Some(token) = token else {
            return bad("no token=LABEL: name the token that holds the key".to_string());
        };
        let Some(module) = module else {
            return bad("no module-path=PATH: name the PKCS#11 module, e.g. module-path=/usr/lib/softhsm/libsofthsm2.so".to_string());
        };
        if object.is_none() && id.is_none() {
            return bad("no object=LABEL or id=BYTES: name the key in the token".to_string());
        }
        Ok(Pkcs11Uri {
            module,
            token,
            object,
            id,
            pin: pin.unwrap_or_else(|| PinSource::Env(DEFAULT_PIN_ENV.to_string())),
        })
    }
}

/// The URI in its canonical form, for messages; it never holds a PIN.
impl fmt::Display for Pkcs11Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pkcs11:token={}", percent_encode(self.token.as_bytes()))?;
        if let Some(object) = &self.object {
            write!(f, ";object={}", percent_encode(object.as_bytes()))?;
        }
        if let Some(id) = &self.id {
            let hex: String = id.iter().map(|b| format!("%{b:02x}")).collect();
            write!(f, ";id={hex}")?;
        }
        let module = self.module.to_string_lossy();
        write!(f, "?module-path={}", percent_encode(module.as_bytes()))?;
        match &self.pin {
            PinSource::File(path) => {
                let path = path.to_string_lossy();
                write!(f, "&pin-source={}", percent_encode(path.as_bytes()))
            }
            PinSource::Env(name) => write!(f, "&pin-env={}", percent_encode(name.as_bytes())),
        }
    }
}

/// Refuses an attribute given twice.
fn once<T>(slot: &Option<T>, name: &str) -> Result<(), UriError> {
    match slot {
        Some(_) => Err(UriError(format!("attribute {name} is given twice"))),
        None => Ok(()),
    }
}

fn percent_decode(text: &str) -> Result<Vec<u8>, UriError> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| UriError(format!("bad percent escape in {text:?}")))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Ok(out)
}

fn percent_encode(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|&b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'/' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02x}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SOFTHSM: &str = "/usr/lib/softhsm/libsofthsm2.so";

    #[test]
    fn full_uri() {
        let uri = Pkcs11Uri::parse(&format!(
            "pkcs11:token=flip%20side;object=root-1;id=%01%ff;type=private?module-path={SOFTHSM}&pin-source=file:/run/pin"
        ))
        .unwrap();
        assert_eq!(uri.token, "flip side");
        assert_eq!(uri.object.as_deref(), Some("root-1"));
        assert_eq!(uri.id, Some(vec![1, 0xff]));
        assert_eq!(uri.module, PathBuf::from(SOFTHSM));
        assert_eq!(uri.pin, PinSource::File(PathBuf::from("/run/pin")));
        // The canonical form parses back to the same key.
        assert_eq!(Pkcs11Uri::parse(&uri.to_string()).unwrap(), uri);
    }

    #[test]
    fn pin_sources() {
        let base = format!("pkcs11:token=t;object=k?module-path={SOFTHSM}");
        let uri = Pkcs11Uri::parse(&base).unwrap();
        assert_eq!(uri.pin, PinSource::Env(DEFAULT_PIN_ENV.to_string()));
        let uri = Pkcs11Uri::parse(&format!("{base}&pin-env=MY_PIN")).unwrap();
        assert_eq!(uri.pin, PinSource::Env("MY_PIN".to_string()));
        let uri = Pkcs11Uri::parse(&format!("{base}&pin-source=/p")).unwrap();
        assert_eq!(uri.pin, PinSource::File(PathBuf::from("/p")));
    }

    #[test]
    fn refusals_say_why() {
        let cases = [
            ("token=t;object=k?module-path=/m", "starts with `pkcs11:`"),
            ("pkcs11:object=k?module-path=/m", "no token="),
            ("pkcs11:token=t;object=k", "no module-path="),
            ("pkcs11:token=t?module-path=/m", "no object="),
            (
                "pkcs11:token=t;object=k?module-path=/m&pin-value=1234",
                "pin-value is refused",
            ),
            (
                "pkcs11:token=t;object=k;slot=1?module-path=/m",
                "unknown path attribute",
            ),
            (
                "pkcs11:token=t;object=k?module-path=/m&token=u",
                "unknown query attribute",
            ),
            (
                "pkcs11:token=t;token=u;object=k?module-path=/m",
                "given twice",
            ),
            (
                "pkcs11:token=t;object=%zz?module-path=/m",
                "bad percent escape",
            ),
            (
                "pkcs11:token=t;object=k;type=public?module-path=/m",
                "type=private",
            ),
            ("pkcs11:token=t;object?module-path=/m", "has no `=`"),
        ];
        for (text, why) in cases {
            let err = Pkcs11Uri::parse(text).unwrap_err();
            assert!(err.to_string().contains(why), "{text}: {err}");
        }
    }

    #[test]
    fn display_never_holds_a_pin() {
        let uri = Pkcs11Uri::parse("pkcs11:token=t;object=k?module-path=/m&pin-env=P").unwrap();
        assert!(!uri.to_string().contains("pin-value"));
    }
}
