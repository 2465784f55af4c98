//! Boot state in GPT attribute bits.
