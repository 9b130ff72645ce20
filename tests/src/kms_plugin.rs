//! A KMS v2 plugin for tests (`v2.KeyManagementService` on a Unix socket),
//! standing in for Vault or CyberArk: it wraps data keys with AES-256-GCM-SIV
//! under one key of its own, bound to its key id, and counts its calls. The
//! `keel-test-kms-plugin` binary serves it for process tests; in-process tests
//! call [`serve`].

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use keel_apiserver::encryption::aesgcmsiv::AesKey;
use keel_proto::kms_v2 as pb;
use keel_proto::kms_v2::key_management_service_server::{
    KeyManagementService, KeyManagementServiceServer,
};
use tonic::{Request, Response, Status};

/// The plugin's key and what it has been asked.
pub struct Plugin {
    key: AesKey,
    key_id: String,
    pub encrypts: AtomicU64,
    pub decrypts: AtomicU64,
    /// Print each call to stderr (the binary's log, which tests count).
    pub log: bool,
}

impl Plugin {
    pub fn new(secret: [u8; 32], key_id: &str) -> Arc<Plugin> {
        Arc::new(Plugin {
            key: AesKey::new("kek", secret),
            key_id: key_id.to_string(),
            encrypts: AtomicU64::new(0),
            decrypts: AtomicU64::new(0),
            log: false,
        })
    }
}

struct Service(Arc<Plugin>);

#[tonic::async_trait]
impl KeyManagementService for Service {
    async fn status(
        &self,
        _: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusResponse>, Status> {
        Ok(Response::new(pb::StatusResponse {
            version: "v2".into(),
            healthz: "ok".into(),
            key_id: self.0.key_id.clone(),
        }))
    }

    async fn decrypt(
        &self,
        req: Request<pb::DecryptRequest>,
    ) -> Result<Response<pb::DecryptResponse>, Status> {
        let req = req.into_inner();
        self.0.decrypts.fetch_add(1, Ordering::SeqCst);
        if self.0.log {
            eprintln!("kms: Decrypt uid={}", req.uid);
        }
        if req.key_id != self.0.key_id {
            return Err(Status::failed_precondition(format!(
                "unknown key id {:?}",
                req.key_id
            )));
        }
        let plaintext = self
            .0
            .key
            .open(&req.ciphertext, req.key_id.as_bytes())
            .ok_or_else(|| Status::invalid_argument("cannot unwrap: not wrapped by this key"))?;
        Ok(Response::new(pb::DecryptResponse { plaintext }))
    }

    async fn encrypt(
        &self,
        req: Request<pb::EncryptRequest>,
    ) -> Result<Response<pb::EncryptResponse>, Status> {
        let req = req.into_inner();
        self.0.encrypts.fetch_add(1, Ordering::SeqCst);
        if self.0.log {
            eprintln!("kms: Encrypt uid={}", req.uid);
        }
        Ok(Response::new(pb::EncryptResponse {
            ciphertext: self.0.key.seal(&req.plaintext, self.0.key_id.as_bytes()),
            key_id: self.0.key_id.clone(),
            annotations: HashMap::from([("keel.test/plugin".to_string(), b"1".to_vec())]),
        }))
    }
}

/// Serve `plugin` on a Unix socket at `socket` (replacing a stale one) until
/// the task is aborted.
pub fn serve(socket: &Path, plugin: Arc<Plugin>) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let _ = std::fs::remove_file(socket);
    let listener = tokio::net::UnixListener::bind(socket)?;
    Ok(tokio::spawn(async move {
        let _ = tonic::transport::Server::builder()
            .add_service(KeyManagementServiceServer::new(Service(plugin)))
            .serve_with_incoming(tokio_stream::wrappers::UnixListenerStream::new(listener))
            .await;
    }))
}
