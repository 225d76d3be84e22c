//! Every change travels with its author's ed25519 signature, so any device
//! can pass on any change it holds and the server can tell who made it.
//!
//! A device makes its key at `field init` from 32 random bytes the caller
//! supplies (this crate reads no RNG); enrolment registers the public key.
//! What is signed is [`SIGNED_PREFIX`] followed by the change's 32-byte
//! Automerge hash, which covers the change's bytes, actor and dependencies.

use automerge::ChangeHash;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};

/// Domain separation: a signature over a change hash can never be taken
/// for a signature over anything else.
pub const SIGNED_PREFIX: &[u8; 20] = b"grid-sync change v1\0";
/// Bytes of a signature.
pub const SIGNATURE_LEN: usize = 64;

/// A device's signing key.
#[derive(Clone)]
pub struct DeviceKey(SigningKey);

impl std::fmt::Debug for DeviceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DeviceKey(public {})", hex(&self.public()))
    }
}

fn message(hash: &ChangeHash) -> [u8; 52] {
    let mut m = [0u8; 52];
    m[..20].copy_from_slice(SIGNED_PREFIX);
    m[20..].copy_from_slice(&hash.0);
    m
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl DeviceKey {
    pub fn from_seed(seed: [u8; 32]) -> DeviceKey {
        DeviceKey(SigningKey::from_bytes(&seed))
    }

    pub fn seed(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    /// The seed as 64 hex digits, as the device store keeps it.
    pub fn seed_hex(&self) -> String {
        hex(&self.seed())
    }

    /// A key from [`DeviceKey::seed_hex`]'s text; `None` for anything else.
    pub fn from_seed_hex(text: &str) -> Option<DeviceKey> {
        if text.len() != 64 || !text.is_ascii() {
            return None;
        }
        let mut seed = [0u8; 32];
        for (i, b) in seed.iter_mut().enumerate() {
            *b = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
        }
        Some(DeviceKey::from_seed(seed))
    }

    pub fn public(&self) -> [u8; 32] {
        self.0.verifying_key().to_bytes()
    }

    pub fn sign(&self, hash: &ChangeHash) -> [u8; SIGNATURE_LEN] {
        self.0.sign(&message(hash)).to_bytes()
    }
}

/// Whether `sig` is `public`'s signature over the change `hash`. Any
/// malformed key or signature is simply not valid.
pub fn verify(public: &[u8], hash: &ChangeHash, sig: &[u8]) -> bool {
    let (Ok(public), Ok(sig)) = (<[u8; 32]>::try_from(public), <[u8; 64]>::try_from(sig)) else {
        return false;
    };
    let Ok(key) = VerifyingKey::from_bytes(&public) else {
        return false;
    };
    key.verify_strict(&message(hash), &Signature::from_bytes(&sig)).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_holds_for_its_hash_and_key_only() {
        let key = DeviceKey::from_seed([7; 32]);
        let other = DeviceKey::from_seed([8; 32]);
        let (h, g) = (ChangeHash([1; 32]), ChangeHash([2; 32]));
        let sig = key.sign(&h);
        assert!(verify(&key.public(), &h, &sig));
        assert!(!verify(&key.public(), &g, &sig), "another change");
        assert!(!verify(&other.public(), &h, &sig), "another key");
        let mut bent = sig;
        bent[10] ^= 1;
        assert!(!verify(&key.public(), &h, &bent));
        assert!(!verify(&key.public(), &h, &sig[..63]), "a short signature");
        assert!(!verify(&[0; 31], &h, &sig), "a short key");
        assert_eq!(DeviceKey::from_seed(key.seed()).public(), key.public());
        let back = DeviceKey::from_seed_hex(&key.seed_hex()).unwrap();
        assert_eq!(back.public(), key.public());
        for bad in ["", "zz", &"0".repeat(63), &"é".repeat(32)] {
            assert!(DeviceKey::from_seed_hex(bad).is_none(), "{bad}");
        }
    }
}
