//! `Range: bytes=FIRST-LAST` and `bytes=FIRST-` (one range: the updater never asks for more).

/// The first and last byte a `Range` header value asks for, in a file of `len` bytes: `None`
/// when it is not one byte range, is inverted, or starts at or past the end. An open end
/// (`bytes=5-`) is the last byte. A last byte past the end is returned as asked: RFC 9110
/// servers shorten it to the file ([`clamp`]), a strict server refuses it (416).
pub fn parse_range(value: &str, len: u64) -> Option<(u64, u64)> {
    let spec = value.trim().strip_prefix("bytes=")?;
    let (a, b) = spec.split_once('-')?;
    let first: u64 = a.trim().parse().ok()?;
    let last = match b.trim() {
        "" => len.checked_sub(1)?,
        b => b.parse().ok()?,
    };
    (first <= last && first < len).then_some((first, last))
}

/// [`parse_range`] with the last byte shortened to the file, as RFC 9110 (and nginx) do.
pub fn clamp(value: &str, len: u64) -> Option<(u64, u64)> {
    parse_range(value, len).map(|(first, last)| (first, last.min(len - 1)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-9", 100), Some((0, 9)));
        assert_eq!(parse_range(" bytes=90- ", 100), Some((90, 99)));
        assert_eq!(parse_range("bytes=90-200", 100), Some((90, 200)));
        assert_eq!(clamp("bytes=90-200", 100), Some((90, 99)));
        assert_eq!(parse_range("bytes=100-", 100), None);
        assert_eq!(parse_range("bytes=100-101", 100), None);
        assert_eq!(parse_range("bytes=5-4", 100), None);
        assert_eq!(parse_range("items=0-1", 100), None);
        assert_eq!(parse_range("bytes=0-1", 0), None);
        assert_eq!(
            parse_range("bytes=-5", 100),
            None,
            "suffix ranges are not used"
        );
    }
}
