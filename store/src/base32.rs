//! Nix's base-32 encoding of hashes: the alphabet `0-9a-z` without `e o t u`, and the bytes read
//! from the last to the first, so that store path hashes sort and read like Nix's own.

/// The 32 digits, in value order.
pub const ALPHABET: &[u8; 32] = b"0123456789abcdfghijklmnpqrsvwxyz";

/// Number of base-32 digits that encode `bytes` bytes.
pub const fn encoded_len(bytes: usize) -> usize {
    if bytes == 0 {
        0
    } else {
        (bytes * 8 - 1) / 5 + 1
    }
}

/// True if `c` is a digit of [`ALPHABET`].
pub fn is_digit(c: u8) -> bool {
    digit_value(c).is_some()
}

fn digit_value(c: u8) -> Option<u8> {
    ALPHABET.iter().position(|&d| d == c).map(|v| v as u8)
}

/// Encodes `bytes` the way `nix-hash --to-base32` prints them.
pub fn encode(bytes: &[u8]) -> String {
    let len = encoded_len(bytes.len());
    let mut out = String::with_capacity(len);
    // Digit n (counted from the end of the string) holds bits 5n..5n+5 of the little-endian
    // number formed by the bytes.
    for n in (0..len).rev() {
        let bit = n * 5;
        let (i, j) = (bit / 8, bit % 8);
        let low = bytes[i] >> j;
        let high = match bytes.get(i + 1) {
            Some(&next) if j > 3 => next << (8 - j),
            _ => 0,
        };
        out.push(ALPHABET[usize::from((low | high) & 0x1f)] as char);
    }
    out
}

/// Why a string is not the base-32 encoding of `len` bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    Length {
        expected: usize,
        found: usize,
    },
    Digit {
        found: char,
    },
    /// The digits encode a number wider than the byte length.
    Overflow,
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodeError::Length { expected, found } => {
                write!(f, "expected {expected} base-32 digits, found {found}")
            }
            DecodeError::Digit { found } => write!(f, "{found:?} is not a Nix base-32 digit"),
            DecodeError::Overflow => write!(f, "the digits encode more bits than the hash has"),
        }
    }
}

/// Decodes the base-32 encoding of exactly `len` bytes.
pub fn decode(text: &str, len: usize) -> Result<Vec<u8>, DecodeError> {
    let digits = text.as_bytes();
    if digits.len() != encoded_len(len) {
        return Err(DecodeError::Length {
            expected: encoded_len(len),
            found: digits.len(),
        });
    }
    let mut bytes = vec![0u8; len];
    for (n, &c) in digits.iter().rev().enumerate() {
        let digit = digit_value(c).ok_or(DecodeError::Digit { found: c as char })?;
        let bit = n * 5;
        let (i, j) = (bit / 8, bit % 8);
        bytes[i] |= digit << j;
        let carry = if j > 3 { digit >> (8 - j) } else { 0 };
        match bytes.get_mut(i + 1) {
            Some(next) => *next |= carry,
            None if carry != 0 => return Err(DecodeError::Overflow),
            None => {}
        }
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (hex, base-32) pairs printed by `nix-hash --type sha256|sha1 --to-base32 HEX` (Nix 2.8).
    const VECTORS: &[(&str, &str)] = &[
        (
            "0000000000000000000000000000000000000000000000000000000000000000",
            "0000000000000000000000000000000000000000000000000000",
        ),
        (
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73",
        ),
        (
            "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
            "1zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz",
        ),
        (
            "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "1vydmf4nfi9307pwvaw9cx2j60ggrnmqjrs54c0yzkdbi5kla8q1",
        ),
        (
            "e94439dfe58259bb03c03c8ade3bf85bde345ccfa64152598a6dd317ea4da896",
            "15m89pm1glvdi9cm4hd6rxf39pjvz0xxx2iwq01vnnc2wpgkji79",
        ),
        (
            "da39a3ee5e6b4b0d3255bfef95601890afd80709",
            "143xibwh31h9bvxzalr0sjvbbvpa6ffs",
        ),
        (
            "0102030405060708090a0b0c0d0e0f1011121314",
            "2h9i448h1w70s30b184hh1q60l2060h1",
        ),
        (
            "ffffffffffffffffffffffffffffffffffffffff",
            "zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz",
        ),
    ];

    #[test]
    fn matches_nix_hash_to_base32() {
        for (hex, b32) in VECTORS {
            let bytes = hex::decode(hex).unwrap();
            assert_eq!(encode(&bytes), *b32, "{hex}");
            assert_eq!(decode(b32, bytes.len()).unwrap(), bytes, "{b32}");
        }
    }

    #[test]
    fn lengths() {
        assert_eq!(encoded_len(20), 32);
        assert_eq!(encoded_len(32), 52);
        assert_eq!(encoded_len(0), 0);
        assert_eq!(encode(&[]), "");
    }

    #[test]
    fn every_single_byte_round_trips() {
        for b in 0..=255u8 {
            let text = encode(&[b]);
            assert_eq!(decode(&text, 1).unwrap(), vec![b]);
        }
    }

    #[test]
    fn every_digit_at_every_position_of_a_short_hash_round_trips() {
        for pos in 0..encoded_len(3) {
            for &d in ALPHABET {
                let mut text = vec![b'0'; encoded_len(3)];
                text[pos] = d;
                let text = String::from_utf8(text).unwrap();
                match decode(&text, 3) {
                    Ok(bytes) => assert_eq!(encode(&bytes), text),
                    Err(e) => assert_eq!(e, DecodeError::Overflow, "{text}"),
                }
            }
        }
    }

    #[test]
    fn refuses_bad_input() {
        assert_eq!(
            decode("0000", 20),
            Err(DecodeError::Length {
                expected: 32,
                found: 4
            })
        );
        let mut bad = "0".repeat(32);
        bad.replace_range(5..6, "e");
        assert_eq!(decode(&bad, 20), Err(DecodeError::Digit { found: 'e' }));
        // 52 digits hold 260 bits; a top digit above 1 does not fit 256.
        let over = format!("2{}", "0".repeat(51));
        assert_eq!(decode(&over, 32), Err(DecodeError::Overflow));
        for c in [b'e', b'o', b't', b'u', b'A', b'-'] {
            assert!(!is_digit(c));
        }
    }
}
