//! Secrets are encrypted without any flag: a server started without
//! `--encryption-provider-config` uses `<data-dir>/pki/encryption-config.yaml`,
//! which it writes on first start. Its one `aesgcmsiv` key is derived from
//! the cluster CA's private key (HKDF-SHA256), so every member that shares
//! the CA (`keel up` copies it to each) writes the same key and reads what
//! any other wrote; `identity` comes second, so secrets stored unencrypted
//! by an older Keel still read, and `keel secrets rotate` encrypts them.
//! Once written the file is what counts: a CA replaced later does not
//! change the key.

use std::path::{Path, PathBuf};

use base64::Engine;

use super::EncryptionError;

/// The file under `<data-dir>/pki`.
pub const FILE: &str = "encryption-config.yaml";

/// The name of the derived key in stored values' prefixes.
pub const KEY_NAME: &str = "default";

/// Where the default configuration of a data directory lives.
pub fn path(data_dir: &Path) -> PathBuf {
    data_dir.join("pki").join(FILE)
}

/// The default configuration's path, written first if it is missing.
pub fn ensure(data_dir: &Path) -> Result<PathBuf, EncryptionError> {
    let path = path(data_dir);
    if path.exists() {
        return Ok(path);
    }
    let ca_key = data_dir.join("pki").join("ca.key");
    let ikm = std::fs::read(&ca_key).map_err(|e| EncryptionError::Config {
        path: ca_key.display().to_string(),
        message: format!("cannot derive the default encryption key from the CA key: {e}"),
    })?;
    let text = config_text(&derive(&ikm));
    crate::pki::write_private(&path, text.as_bytes()).map_err(|e| EncryptionError::Config {
        path: path.display().to_string(),
        message: format!("cannot write the default encryption configuration: {e}"),
    })?;
    tracing::info!(file = %path.display(), "secrets are encrypted at rest with a key derived from the cluster CA");
    Ok(path)
}

/// The 32-byte key of a CA private key (its PEM bytes).
pub fn derive(ca_key: &[u8]) -> [u8; 32] {
    use ring::hkdf;
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, b"keel secrets encrypted at rest").extract(ca_key);
    let info: [&[u8]; 1] = [b"aesgcmsiv default key v1"];
    let mut out = [0u8; 32];
    prk.expand(&info, hkdf::HKDF_SHA256)
        .and_then(|okm| okm.fill(&mut out))
        .expect("32 bytes is a valid HKDF-SHA256 length");
    out
}

/// The default configuration with `secret` as its key.
pub fn config_text(secret: &[u8; 32]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(secret);
    format!(
        "# Written by keel on first start: secrets are encrypted with a key derived
# from the cluster CA key. To rotate, copy this file, add a new key first,
# start every member with --encryption-provider-config <copy>, then run
# `keel secrets rotate` (docs/SECURITY.md).
apiVersion: apiserver.config.k8s.io/v1
kind: EncryptionConfiguration
resources:
  - resources:
      - secrets
    providers:
      - aesgcmsiv:
          keys:
            - name: {KEY_NAME}
              secret: {b64}
      - identity: {{}}
"
    )
}
