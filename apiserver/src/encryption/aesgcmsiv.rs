//! The `aesgcmsiv` provider: AES-256-GCM-SIV under named 256-bit keys, a
//! fresh random nonce per write, and the storage key as associated data so
//! that a ciphertext copied under another key does not decrypt.
//!
//! A value is `k8s:enc:aesgcmsiv:v1:<key name>:` + nonce (12 bytes) +
//! ciphertext and tag. GCM-SIV rather than GCM: a repeated random nonce
//! (2^-96 per pair of writes) reveals only that two values are equal,
//! instead of the key stream.

use aes_gcm_siv::aead::{Aead, Generate, KeyInit, Payload};
use aes_gcm_siv::{Aes256GcmSiv, Key, Nonce};

/// Bytes of a nonce, stored in front of the ciphertext.
pub const NONCE_LEN: usize = 12;

/// One named key.
pub struct AesKey {
    pub name: String,
    cipher: Aes256GcmSiv,
}

impl AesKey {
    pub fn new(name: impl Into<String>, secret: [u8; 32]) -> AesKey {
        AesKey {
            name: name.into(),
            cipher: Aes256GcmSiv::new(&Key::<Aes256GcmSiv>::from(secret)),
        }
    }

    /// Nonce and ciphertext of `plaintext`, bound to `aad`.
    pub fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Vec<u8> {
        let nonce = Nonce::generate();
        let sealed = self
            .cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            // Only a message beyond 2^36 bytes fails; values are far smaller.
            .expect("AES-GCM-SIV encrypts any value below 64 GiB");
        let mut out = Vec::with_capacity(NONCE_LEN + sealed.len());
        out.extend_from_slice(nonce.as_slice());
        out.extend_from_slice(&sealed);
        out
    }

    /// The plaintext of what [`AesKey::seal`] wrote; `None` when the key is
    /// wrong, the bytes were altered or `aad` differs (AEAD tells no more).
    pub fn open(&self, sealed: &[u8], aad: &[u8]) -> Option<Vec<u8>> {
        if sealed.len() < NONCE_LEN {
            return None;
        }
        let (nonce, body) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_from(nonce).ok()?;
        self.cipher.decrypt(&nonce, Payload { msg: body, aad }).ok()
    }
}

/// 32 random bytes for a new key.
pub fn random_secret() -> [u8; 32] {
    Key::<Aes256GcmSiv>::generate().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seals_and_opens_with_a_fresh_nonce_each_time() {
        let k = AesKey::new("k1", random_secret());
        let a = k.seal(b"hunter2", b"/registry/core/secrets/ns/a");
        let b = k.seal(b"hunter2", b"/registry/core/secrets/ns/a");
        assert_ne!(a, b, "two writes of one value must not look alike");
        assert_eq!(
            k.open(&a, b"/registry/core/secrets/ns/a").as_deref(),
            Some(&b"hunter2"[..])
        );
        assert!(!a.windows(7).any(|w| w == b"hunter2"));
    }

    #[test]
    fn a_wrong_key_altered_bytes_or_another_storage_key_do_not_open() {
        let k = AesKey::new("k1", random_secret());
        let other = AesKey::new("k1", random_secret());
        let sealed = k.seal(b"value", b"/a");
        assert_eq!(other.open(&sealed, b"/a"), None);
        assert_eq!(k.open(&sealed, b"/b"), None);
        for i in 0..sealed.len() {
            let mut t = sealed.clone();
            t[i] ^= 1;
            assert_eq!(k.open(&t, b"/a"), None, "flipping byte {i}");
        }
        assert_eq!(k.open(&sealed[..NONCE_LEN - 1], b"/a"), None);
    }
}
