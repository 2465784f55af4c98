//! Content hashes: the one form flipside keeps (`sha256:<hex>`) and the forms Nix prints
//! (`sha256:<base32>`, SRI `sha256-<base64>`, bare hex or base-32 in `nix-store --dump-db`).

use base64::Engine;

use crate::base32;

/// Length of a sha256 digest in bytes.
const SHA256_LEN: usize = 32;

/// `sha256:<hex>` of a digest.
pub fn format_sha256(digest: &[u8]) -> String {
    format!("sha256:{}", hex::encode(digest))
}

/// Rewrites any sha256 hash Nix prints to `sha256:<lowercase hex>`.
///
/// Accepted: `sha256:` or SRI `sha256-` prefix, or none; then 64 hex digits, 52 Nix base-32
/// digits or 44 base-64 characters. Other algorithms are refused: flipside compares hashes as
/// strings, so every hash of a closure must be of one kind.
pub fn normalize_nix_hash(value: &str) -> Result<String, String> {
    let body = if let Some(rest) = value.strip_prefix("sha256:") {
        rest
    } else if let Some(rest) = value.strip_prefix("sha256-") {
        rest
    } else if let Some((algo, _)) = value.split_once([':', '-']) {
        return Err(format!("{algo} hashes are not supported, only sha256"));
    } else {
        value
    };
    let digest = match body.len() {
        64 => hex::decode(body).map_err(|e| format!("bad hex digits: {e}"))?,
        52 => base32::decode(body, SHA256_LEN).map_err(|e| e.to_string())?,
        44 => base64::engine::general_purpose::STANDARD
            .decode(body)
            .map_err(|e| format!("bad base-64: {e}"))?,
        n => {
            return Err(format!(
                "{n} characters is no sha256 encoding (64 hex, 52 base-32 or 44 base-64)"
            ))
        }
    };
    if digest.len() != SHA256_LEN {
        return Err(format!("decodes to {} bytes, not 32", digest.len()));
    }
    Ok(format_sha256(&digest))
}

#[cfg(test)]
mod tests {
    use super::*;

    // One NAR hash as Nix 2.8 printed it in its three forms (path-info, dump-db, to-base32).
    const HEX: &str = "e94439dfe58259bb03c03c8ade3bf85bde345ccfa64152598a6dd317ea4da896";
    const SRI: &str = "sha256-6UQ53+WCWbsDwDyK3jv4W940XM+mQVJZim3TF+pNqJY=";
    const B32: &str = "15m89pm1glvdi9cm4hd6rxf39pjvz0xxx2iwq01vnnc2wpgkji79";

    #[test]
    fn every_nix_form_normalizes_to_the_same_hex() {
        let want = format!("sha256:{HEX}");
        for form in [
            SRI.to_string(),
            format!("sha256:{B32}"),
            B32.to_string(),
            HEX.to_string(),
            format!("sha256:{HEX}"),
            format!("sha256:{}", SRI.trim_start_matches("sha256-")),
        ] {
            assert_eq!(normalize_nix_hash(&form).as_ref(), Ok(&want), "{form}");
        }
    }

    #[test]
    fn refuses_other_algorithms_and_garbage() {
        for bad in [
            "md5:d41d8cd98f00b204e9800998ecf8427e",
            "sha512-AAAA",
            "sha256:abc",
            "",
            &format!("sha256:{}", "g".repeat(64)),
            &format!("sha256:{}", "e".repeat(52)),
        ] {
            assert!(normalize_nix_hash(bad).is_err(), "{bad:?} accepted");
        }
    }
}
