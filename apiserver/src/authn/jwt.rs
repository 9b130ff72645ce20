//! ServiceAccount tokens as JSON Web Tokens: compact JWS signed with Ed25519
//! (`alg: EdDSA`, RFC 8037), their claims (those of Kubernetes' bound
//! tokens), and the checks every token passes before the live objects are
//! looked at: signature, issuer, validity window and audience.
//!
//! The signing key is derived, not stored: HKDF-SHA256 over the cluster CA's
//! private key gives the Ed25519 seed ([`SigningKey::from_ca_key`]), so
//! every member that holds the shared CA signs and verifies the same tokens
//! with no key file of its own to copy.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use serde::{Deserialize, Deserializer, Serialize};

/// What HKDF extracts with: names the purpose, so the same CA key yields
/// unrelated keys for anything else derived from it later.
const HKDF_SALT: &[u8] = b"keel service account token signing key";
/// HKDF's info: the algorithm and a version, so a change of either yields
/// a new key instead of reusing this one.
const HKDF_INFO: &[u8] = b"ed25519 seed v1";

/// Clock skew tolerated on `nbf` and `exp`, as kube-apiserver's 60 s leeway.
pub const LEEWAY_SECS: i64 = 60;

/// Why a token was refused. Only logged: clients get a bare 401.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    #[error("not a JWT")]
    Malformed,
    #[error("unsupported algorithm {0:?}")]
    Algorithm(String),
    #[error("bad signature")]
    Signature,
    #[error("issuer {0:?} is not this cluster's")]
    Issuer(String),
    #[error("expired at {0}")]
    Expired(i64),
    #[error("not valid before {0}")]
    NotYetValid(i64),
    #[error("no audience of {0:?} is accepted")]
    Audience(Vec<String>),
}

/// A cluster's token key: an Ed25519 key pair and its key id.
pub struct SigningKey {
    pair: Ed25519KeyPair,
    /// Base64url of the SHA-256 of the public key: names the key in the
    /// header, so a verifier can tell a token from another key at once.
    kid: String,
}

impl SigningKey {
    /// The key of every member holding `ca_key_der` (the CA's PKCS#8 key,
    /// DER): HKDF-SHA256(salt, ca key) expanded to a 32-byte Ed25519 seed.
    pub fn from_ca_key(ca_key_der: &[u8]) -> SigningKey {
        struct Seed;
        impl ring::hkdf::KeyType for Seed {
            fn len(&self) -> usize {
                32
            }
        }
        let prk = ring::hkdf::Salt::new(ring::hkdf::HKDF_SHA256, HKDF_SALT).extract(ca_key_der);
        let mut seed = [0u8; 32];
        prk.expand(&[HKDF_INFO], Seed)
            .and_then(|okm| okm.fill(&mut seed))
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        SigningKey::from_seed(&seed)
    }

    /// A fresh random key: servers without a CA (in-process tests).
    pub fn random() -> SigningKey {
        let mut seed = [0u8; 32];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut seed)
            .expect("the system random source works");
        SigningKey::from_seed(&seed)
    }

    fn from_seed(seed: &[u8; 32]) -> SigningKey {
        let pair = Ed25519KeyPair::from_seed_unchecked(seed).expect("any 32 bytes is a seed");
        let digest = ring::digest::digest(&ring::digest::SHA256, pair.public_key().as_ref());
        SigningKey {
            kid: B64.encode(digest.as_ref()),
            pair,
        }
    }

    /// The compact JWS of `claims`.
    pub fn sign(&self, claims: &Claims) -> String {
        let header = serde_json::json!({"alg": "EdDSA", "kid": self.kid, "typ": "JWT"});
        let payload = serde_json::to_vec(claims).expect("claims serialize");
        let signing_input = format!("{}.{}", B64.encode(header.to_string()), B64.encode(payload));
        let sig = self.pair.sign(signing_input.as_bytes());
        format!("{signing_input}.{}", B64.encode(sig.as_ref()))
    }

    /// The claims of `token` if this key signed it; nothing else is checked.
    pub fn verify(&self, token: &str) -> Result<Claims, JwtError> {
        let mut parts = token.split('.');
        let (Some(h), Some(p), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(JwtError::Malformed);
        };
        let header: serde_json::Value = B64
            .decode(h)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or(JwtError::Malformed)?;
        // Only ever EdDSA: a token naming another algorithm (`none`, an
        // HMAC keyed with a public key) is refused before any check.
        match header.get("alg").and_then(|a| a.as_str()) {
            Some("EdDSA") => {}
            other => return Err(JwtError::Algorithm(other.unwrap_or("").to_string())),
        }
        let sig = B64.decode(s).map_err(|_| JwtError::Malformed)?;
        let signing_input = &token[..h.len() + 1 + p.len()];
        UnparsedPublicKey::new(&ED25519, self.pair.public_key().as_ref())
            .verify(signing_input.as_bytes(), &sig)
            .map_err(|_| JwtError::Signature)?;
        let payload = B64.decode(p).map_err(|_| JwtError::Malformed)?;
        serde_json::from_slice(&payload).map_err(|_| JwtError::Malformed)
    }
}

/// The claims of a ServiceAccount token, as Kubernetes' bound tokens carry
/// them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    /// `system:serviceaccount:<namespace>:<name>`.
    pub sub: String,
    /// A JWT may carry one audience as a string; Keel writes a list.
    #[serde(deserialize_with = "one_or_many")]
    pub aud: Vec<String>,
    pub exp: i64,
    pub iat: i64,
    pub nbf: i64,
    pub jti: String,
    #[serde(rename = "kubernetes.io")]
    pub kubernetes: KubernetesClaims,
}

/// The `kubernetes.io` claim: what the token is bound to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KubernetesClaims {
    pub namespace: String,
    pub serviceaccount: ObjectRef,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<ObjectRef>,
}

/// A name and the uid it must still have.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectRef {
    pub name: String,
    pub uid: String,
}

fn one_or_many<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Aud {
        One(String),
        Many(Vec<String>),
    }
    Ok(match Aud::deserialize(d)? {
        Aud::One(a) => vec![a],
        Aud::Many(a) => a,
    })
}

impl Claims {
    /// The checks after the signature: the issuer is `issuer`, `now` lies
    /// in `[nbf, exp)` (with [`LEEWAY_SECS`]), and one audience is in
    /// `audiences`. Returns the audiences that matched.
    pub fn validate(
        &self,
        issuer: &str,
        now: i64,
        audiences: &[String],
    ) -> Result<Vec<String>, JwtError> {
        if self.iss != issuer {
            return Err(JwtError::Issuer(self.iss.clone()));
        }
        if now >= self.exp + LEEWAY_SECS {
            return Err(JwtError::Expired(self.exp));
        }
        if now + LEEWAY_SECS < self.nbf {
            return Err(JwtError::NotYetValid(self.nbf));
        }
        let matched: Vec<String> = self
            .aud
            .iter()
            .filter(|a| audiences.contains(a))
            .cloned()
            .collect();
        if matched.is_empty() {
            return Err(JwtError::Audience(self.aud.clone()));
        }
        Ok(matched)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ISS: &str = "https://kubernetes.default.svc.cluster.local";

    fn claims(now: i64) -> Claims {
        Claims {
            iss: ISS.into(),
            sub: "system:serviceaccount:default:robot".into(),
            aud: vec![ISS.into()],
            exp: now + 3600,
            iat: now,
            nbf: now,
            jti: "j".into(),
            kubernetes: KubernetesClaims {
                namespace: "default".into(),
                serviceaccount: ObjectRef {
                    name: "robot".into(),
                    uid: "u1".into(),
                },
                pod: None,
            },
        }
    }

    #[test]
    fn a_signed_token_verifies_and_validates() {
        let key = SigningKey::random();
        let c = claims(1_000_000);
        let token = key.sign(&c);
        assert_eq!(key.verify(&token).unwrap(), c);
        assert_eq!(
            c.validate(ISS, 1_000_000, &[ISS.to_string()]).unwrap(),
            [ISS]
        );
        // The wire form carries the bound-token claim names.
        let payload = token.split('.').nth(1).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&B64.decode(payload).unwrap()).unwrap();
        assert_eq!(v["kubernetes.io"]["serviceaccount"]["name"], "robot");
        assert!(v["kubernetes.io"].get("pod").is_none());
    }

    #[test]
    fn bad_signatures_are_refused() {
        let key = SigningKey::random();
        let token = key.sign(&claims(1_000_000));
        // Another cluster's key.
        assert_eq!(
            SigningKey::random().verify(&token),
            Err(JwtError::Signature)
        );
        // The payload changed after signing (another subject).
        let mut forged = claims(1_000_000);
        forged.sub = "system:serviceaccount:kube-system:admin".into();
        let parts: Vec<&str> = token.split('.').collect();
        let body = B64.encode(serde_json::to_vec(&forged).unwrap());
        let tampered = format!("{}.{body}.{}", parts[0], parts[2]);
        assert_eq!(key.verify(&tampered), Err(JwtError::Signature));
        // `alg: none` without a signature.
        let none = format!("{}.{}.", B64.encode(r#"{"alg":"none"}"#), parts[1]);
        assert_eq!(key.verify(&none), Err(JwtError::Algorithm("none".into())));
        assert_eq!(key.verify("a.b"), Err(JwtError::Malformed));
        assert_eq!(key.verify("not a token"), Err(JwtError::Malformed));
    }

    #[test]
    fn expiry_validity_audience_and_issuer_are_checked() {
        let now = 1_000_000;
        let c = claims(now);
        let api = [ISS.to_string()];
        // Past expiry (beyond the leeway).
        assert_eq!(
            c.validate(ISS, c.exp + LEEWAY_SECS, &api),
            Err(JwtError::Expired(c.exp))
        );
        assert!(c.validate(ISS, c.exp + LEEWAY_SECS - 1, &api).is_ok());
        // Not yet valid.
        let mut future = c.clone();
        future.nbf = now + 600;
        assert_eq!(
            future.validate(ISS, now, &api),
            Err(JwtError::NotYetValid(now + 600))
        );
        // Another audience.
        let mut other = c.clone();
        other.aud = vec!["vault".into()];
        assert_eq!(
            other.validate(ISS, now, &api),
            Err(JwtError::Audience(vec!["vault".into()]))
        );
        assert_eq!(
            other.validate(ISS, now, &["vault".into()]).unwrap(),
            ["vault"]
        );
        // Another issuer.
        assert_eq!(
            c.validate("https://elsewhere", now, &api),
            Err(JwtError::Issuer(ISS.into()))
        );
    }

    #[test]
    fn the_key_follows_the_ca_key_and_one_audience_may_be_a_string() {
        let a = SigningKey::from_ca_key(b"ca key one");
        let b = SigningKey::from_ca_key(b"ca key one");
        let c = SigningKey::from_ca_key(b"ca key two");
        let token = a.sign(&claims(5));
        assert!(b.verify(&token).is_ok(), "same CA key, same signing key");
        assert_eq!(c.verify(&token), Err(JwtError::Signature));
        let mut v = serde_json::to_value(claims(5)).unwrap();
        v["aud"] = serde_json::json!("one");
        let parsed: Claims = serde_json::from_value(v).unwrap();
        assert_eq!(parsed.aud, ["one"]);
    }
}
