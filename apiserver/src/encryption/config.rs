//! The encryption configuration file, in Kubernetes' `EncryptionConfiguration`
//! shape (`apiserver.config.k8s.io/v1`), YAML or JSON: which resources are
//! encrypted, and for each an ordered list of providers (the first encrypts,
//! every one decrypts). Parsed and checked whole at start-up; every error
//! names the file and the field.

use std::path::Path;
use std::time::Duration;

use base64::Engine;
use serde::Deserialize;
use serde_json::Value;

use super::EncryptionError;

pub const API_VERSION: &str = "apiserver.config.k8s.io/v1";
pub const KIND: &str = "EncryptionConfiguration";

/// Deadline of one call to a KMS plugin when the file gives none
/// (kube-apiserver's default).
pub const DEFAULT_KMS_TIMEOUT: Duration = Duration::from_secs(3);

/// A checked configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct EncryptionConfig {
    pub rules: Vec<Rule>,
}

/// Providers for some resources.
#[derive(Clone, Debug, PartialEq)]
pub struct Rule {
    /// The resources as the file names them, and the storage key prefix of
    /// each (`secrets` → `/registry/core/secrets/`).
    pub resources: Vec<(String, String)>,
    pub providers: Vec<ProviderConfig>,
}

#[derive(Clone, PartialEq)]
pub enum ProviderConfig {
    /// Named 32-byte keys, the first of which encrypts.
    AesGcmSiv(Vec<(String, [u8; 32])>),
    Identity,
    Kms(KmsConfig),
}

impl std::fmt::Debug for ProviderConfig {
    // Never prints key material.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProviderConfig::AesGcmSiv(keys) => {
                let names: Vec<&str> = keys.iter().map(|(n, _)| n.as_str()).collect();
                write!(f, "aesgcmsiv{names:?}")
            }
            ProviderConfig::Identity => write!(f, "identity"),
            ProviderConfig::Kms(k) => write!(f, "kms({})", k.name),
        }
    }
}

/// A KMS v2 plugin.
#[derive(Clone, Debug, PartialEq)]
pub struct KmsConfig {
    pub name: String,
    /// Path of the plugin's Unix socket (`endpoint: unix:///path`).
    pub socket: String,
    pub timeout: Duration,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct File {
    api_version: String,
    kind: String,
    resources: Vec<RuleFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    resources: Vec<String>,
    providers: Vec<ProviderFile>,
}

/// One provider entry: exactly one of the fields is set. Kubernetes'
/// other providers are named so that their refusal says what to use.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProviderFile {
    aesgcmsiv: Option<KeysFile>,
    identity: Option<Value>,
    kms: Option<KmsFile>,
    aescbc: Option<Value>,
    aesgcm: Option<Value>,
    secretbox: Option<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeysFile {
    keys: Vec<KeyFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFile {
    name: String,
    secret: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct KmsFile {
    api_version: Option<String>,
    name: String,
    endpoint: String,
    timeout: Option<String>,
    /// kube-apiserver's v1-only field: accepted and unused.
    #[allow(dead_code)]
    cachesize: Option<u64>,
}

/// Read and check the configuration in `path`.
pub fn load(path: &Path) -> Result<EncryptionConfig, EncryptionError> {
    let text = std::fs::read_to_string(path).map_err(|e| EncryptionError::Config {
        path: path.display().to_string(),
        message: format!("cannot read the encryption configuration: {e}"),
    })?;
    parse(&text).map_err(|message| EncryptionError::Config {
        path: path.display().to_string(),
        message,
    })
}

/// Check a configuration's text (YAML, or JSON); the error says what is
/// wrong and where.
pub fn parse(text: &str) -> Result<EncryptionConfig, String> {
    let doc: Value = if text.trim_start().starts_with('{') {
        serde_json::from_str(text).map_err(|e| format!("invalid JSON: {e}"))?
    } else {
        serde_saphyr::from_str(text).map_err(|e| format!("invalid YAML: {e}"))?
    };
    let file: File = serde_path_to_error::deserialize(doc).map_err(|e| {
        let path = e.path().to_string();
        if path == "." {
            e.into_inner().to_string()
        } else {
            format!("{path}: {}", e.into_inner())
        }
    })?;
    if file.api_version != API_VERSION {
        return Err(format!(
            "apiVersion is {:?}, expected {API_VERSION:?}",
            file.api_version
        ));
    }
    if file.kind != KIND {
        return Err(format!("kind is {:?}, expected {KIND:?}", file.kind));
    }
    if file.resources.is_empty() {
        return Err("resources: at least one entry is required".into());
    }
    let mut seen: Vec<String> = Vec::new();
    let mut rules = Vec::new();
    for (i, r) in file.resources.into_iter().enumerate() {
        let at = format!("resources[{i}]");
        if r.resources.is_empty() {
            return Err(format!("{at}.resources: at least one resource is required"));
        }
        let mut resources = Vec::new();
        for (j, name) in r.resources.into_iter().enumerate() {
            let prefix = key_prefix(&name)
                .ok_or_else(|| format!("{at}.resources[{j}]: {name:?} is not a resource (such as \"secrets\", \"widgets.example.com\", \"*.apps\" or \"*.*\")"))?;
            if seen.contains(&name) {
                return Err(format!("{at}.resources[{j}]: {name:?} is named twice"));
            }
            seen.push(name.clone());
            resources.push((name, prefix));
        }
        if r.providers.is_empty() {
            return Err(format!("{at}.providers: at least one provider is required"));
        }
        let mut providers = Vec::new();
        let mut names: Vec<String> = Vec::new();
        for (j, p) in r.providers.into_iter().enumerate() {
            let at = format!("{at}.providers[{j}]");
            let provider = provider(p, &at)?;
            for name in provider_names(&provider) {
                if names.contains(&name) {
                    return Err(format!("{at}: the name {name:?} is used twice"));
                }
                names.push(name);
            }
            providers.push(provider);
        }
        rules.push(Rule {
            resources,
            providers,
        });
    }
    Ok(EncryptionConfig { rules })
}

/// Names that must be unique among a rule's providers (they appear in
/// stored values' prefixes): the type and the key or plugin name.
fn provider_names(p: &ProviderConfig) -> Vec<String> {
    match p {
        ProviderConfig::AesGcmSiv(keys) => {
            keys.iter().map(|(n, _)| format!("aesgcmsiv:{n}")).collect()
        }
        ProviderConfig::Identity => vec!["identity".into()],
        ProviderConfig::Kms(k) => vec![format!("kms:{}", k.name)],
    }
}

fn provider(p: ProviderFile, at: &str) -> Result<ProviderConfig, String> {
    for (set, name) in [
        (p.aescbc.is_some(), "aescbc"),
        (p.aesgcm.is_some(), "aesgcm"),
        (p.secretbox.is_some(), "secretbox"),
    ] {
        if set {
            return Err(format!(
                "{at}: the {name} provider is not supported; use aesgcmsiv, kms or identity"
            ));
        }
    }
    let given = [p.aesgcmsiv.is_some(), p.identity.is_some(), p.kms.is_some()];
    if given.iter().filter(|g| **g).count() != 1 {
        return Err(format!(
            "{at}: exactly one of aesgcmsiv, kms or identity is required"
        ));
    }
    if let Some(k) = p.aesgcmsiv {
        if k.keys.is_empty() {
            return Err(format!("{at}.aesgcmsiv.keys: at least one key is required"));
        }
        let mut keys = Vec::new();
        for (i, key) in k.keys.into_iter().enumerate() {
            let at = format!("{at}.aesgcmsiv.keys[{i}]");
            check_name(&key.name, &format!("{at}.name"))?;
            if keys.iter().any(|(n, _)| *n == key.name) {
                return Err(format!("{at}.name: {:?} is used twice", key.name));
            }
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(key.secret.trim())
                .map_err(|e| format!("{at}.secret: not base64: {e}"))?;
            let secret: [u8; 32] = bytes.try_into().map_err(|b: Vec<u8>| {
                format!(
                    "{at}.secret: {} bytes, expected 32 (head -c 32 /dev/urandom | base64)",
                    b.len()
                )
            })?;
            keys.push((key.name, secret));
        }
        return Ok(ProviderConfig::AesGcmSiv(keys));
    }
    if let Some(k) = p.kms {
        let version = k.api_version.as_deref().unwrap_or("v1");
        if version != "v2" {
            return Err(format!(
                "{at}.kms.apiVersion: {version:?} is not supported; Keel speaks KMS v2 (apiVersion: v2)"
            ));
        }
        check_name(&k.name, &format!("{at}.kms.name"))?;
        let socket = k
            .endpoint
            .strip_prefix("unix://")
            .filter(|s| !s.is_empty())
            .ok_or_else(|| {
                format!(
                    "{at}.kms.endpoint: {:?} is not a Unix socket (unix:///path/to/socket)",
                    k.endpoint
                )
            })?;
        let timeout = match k.timeout.as_deref() {
            None => DEFAULT_KMS_TIMEOUT,
            Some(t) => parse_duration(t).ok_or_else(|| {
                format!("{at}.kms.timeout: {t:?} is not a duration such as 3s or 500ms")
            })?,
        };
        return Ok(ProviderConfig::Kms(KmsConfig {
            name: k.name,
            socket: socket.to_string(),
            timeout,
        }));
    }
    Ok(ProviderConfig::Identity)
}

/// Names go into stored values' prefixes, which `:` delimits.
fn check_name(name: &str, at: &str) -> Result<(), String> {
    if name.is_empty() || name.contains(':') || name.chars().any(char::is_whitespace) {
        return Err(format!(
            "{at}: {name:?} must be non-empty, without ':' or spaces"
        ));
    }
    Ok(())
}

/// A positive duration as Go writes short ones: `3s`, `500ms`, `1m`, `1m30s`.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let mut total = Duration::ZERO;
    let mut rest = s.trim();
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let n: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let d = match &rest[..unit] {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(n.checked_mul(60)?),
            "h" => Duration::from_secs(n.checked_mul(3600)?),
            _ => return None,
        };
        total = total.checked_add(d)?;
        rest = &rest[unit..];
    }
    (!total.is_zero()).then_some(total)
}

/// The storage key prefix of a resource as the configuration names it.
/// Keys are `/registry/<group, or core>/<plural>/...` (`crate::kinds`).
pub fn key_prefix(name: &str) -> Option<String> {
    let valid = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
    };
    match name.split_once('.') {
        Some(("*", "*")) => Some("/registry/".into()),
        Some(("*", "")) => Some("/registry/core/".into()),
        Some(("*", group)) if valid(group) => Some(format!("/registry/{group}/")),
        Some((plural, group)) if valid(plural) && !plural.contains('.') && valid(group) => {
            Some(format!("/registry/{group}/{plural}/"))
        }
        None if valid(name) => Some(format!("/registry/core/{name}/")),
        _ => None,
    }
}
