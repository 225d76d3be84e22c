//! Tokens and enrolment codes: made from the OS's randomness, handed out
//! once, and stored only as a hash.

/// Tokens and codes are stored only as this hash.
pub fn secret_hash(secret: &str) -> String {
    blake3::hash(secret.as_bytes()).to_hex().to_string()
}

/// A device token: 32 random bytes, hex.
pub fn random_token() -> String {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).expect("the OS has randomness");
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Letters and digits that cannot be misread for one another.
const CODE_ALPHABET: &[u8] = b"ABCDEFGHJKMNPQRSTUVWXYZ23456789";

/// A one-time enrolment code such as `K7QF-M2XD-9PRT`, easy to read out.
pub fn random_code() -> String {
    let mut b = [0u8; 12];
    getrandom::fill(&mut b).expect("the OS has randomness");
    let chars: Vec<char> = b
        .iter()
        .map(|x| CODE_ALPHABET[*x as usize % CODE_ALPHABET.len()] as char)
        .collect();
    chars
        .chunks(4)
        .map(|c| c.iter().collect::<String>())
        .collect::<Vec<_>>()
        .join("-")
}

/// Codes are compared without dashes, spaces or case.
pub fn normalise_code(code: &str) -> String {
    code.chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_uppercase())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_read_out_and_typed_back_match() {
        let code = random_code();
        assert_eq!(code.len(), 14, "{code}");
        let typed = code.to_lowercase().replace('-', " ");
        assert_eq!(normalise_code(&typed), normalise_code(&code));
        assert_ne!(random_token(), random_token());
    }
}

/// How long a signed photo link works, in seconds.
pub const LINK_SECS: i64 = 3600;

/// The signature of a photo link: a keyed blake3 of the file and the
/// link's expiry (Unix seconds), hex, 32 characters.
pub fn link_sig(key: &[u8; 32], file: &str, expires: i64) -> String {
    let mut h = blake3::Hasher::new_keyed(key);
    h.update(file.as_bytes());
    h.update(b"\0");
    h.update(expires.to_string().as_bytes());
    h.finalize().to_hex()[..32].to_owned()
}

/// Whether `sig` signs `file` until `expires`, and that has not passed at `now`.
pub fn link_valid(key: &[u8; 32], file: &str, expires: i64, sig: &str, now: i64) -> bool {
    // Compared as blake3 digests of both, so the time taken says nothing
    // of how much of a forged signature was right.
    now <= expires && blake3::hash(link_sig(key, file, expires).as_bytes()) == blake3::hash(sig.as_bytes())
}
