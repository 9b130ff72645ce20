//! Who a node's requests act as. A kubelet authenticates as
//! `system:node:<name>` in the group `system:nodes`, and the API's Node
//! authorizer and NodeRestriction admission limit it to its own Node, Lease
//! and pods. Hollow nodes share one process and one credential, so
//! [`Identity::Node`] gives each node a client whose requests carry
//! `Impersonate-User: system:node:<name>` and `Impersonate-Group:
//! system:nodes` over the shared client's connections: the API then
//! authorizes every request as that node's kubelet, and the credential
//! itself needs only the `impersonate` verb on those users and that group.
//! [`Identity::Kubeconfig`] sends everything as the kubeconfig's user
//! (Kubemark's shared credential).

use http::{HeaderName, HeaderValue, Request};
use kube::Client;
use kube::client::Body;

use crate::Error;

/// The group every node is in.
pub const NODES_GROUP: &str = "system:nodes";

/// A node's user name.
pub fn node_user(node: &str) -> String {
    format!("system:node:{node}")
}

const IMPERSONATE_USER: HeaderName = HeaderName::from_static("impersonate-user");
const IMPERSONATE_GROUP: HeaderName = HeaderName::from_static("impersonate-group");

/// How the nodes of one process present themselves to the API.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Identity {
    /// Each node as its kubelet: `system:node:<name>` in `system:nodes`.
    Node,
    /// Every node as the kubeconfig's own user.
    Kubeconfig,
}

impl Identity {
    /// The client node `node` sends its requests through.
    pub fn client(self, base: &Client, node: &str) -> Result<Client, Error> {
        match self {
            Identity::Kubeconfig => Ok(base.clone()),
            Identity::Node => impersonating(base, &node_user(node), &[NODES_GROUP]),
        }
    }
}

/// A client whose every request acts as `user` in `groups`, sent through
/// `base` (its credentials, connections and timeouts).
pub fn impersonating(base: &Client, user: &str, groups: &[&str]) -> Result<Client, Error> {
    let user = HeaderValue::from_str(user)
        .map_err(|_| Error::Config(format!("{user:?} cannot be sent as a user name")))?;
    let groups = groups
        .iter()
        .map(|g| {
            HeaderValue::from_str(g)
                .map_err(|_| Error::Config(format!("{g:?} cannot be sent as a group name")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let inner = base.clone();
    let service = tower::service_fn(move |mut req: Request<Body>| {
        let headers = req.headers_mut();
        headers.insert(IMPERSONATE_USER, user.clone());
        headers.remove(IMPERSONATE_GROUP);
        for g in &groups {
            headers.append(IMPERSONATE_GROUP, g.clone());
        }
        let inner = inner.clone();
        async move { inner.send(req).await }
    });
    Ok(Client::new(service, base.default_namespace()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// A base client that records the headers of what it is asked to send
    /// and answers 200 with an empty object.
    fn recording() -> (Client, Arc<Mutex<Vec<http::HeaderMap>>>) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let service = tower::service_fn(move |req: Request<Body>| {
            log.lock().unwrap().push(req.headers().clone());
            async move {
                Ok::<_, std::convert::Infallible>(
                    http::Response::builder()
                        .status(200)
                        .body(Body::from(b"{}".to_vec()))
                        .unwrap(),
                )
            }
        });
        (Client::new(service, "default"), seen)
    }

    #[tokio::test]
    async fn a_node_client_impersonates_the_nodes_kubelet() {
        let (base, seen) = recording();
        let node = Identity::Node.client(&base, "n-7").unwrap();
        let req = Request::get("/api/v1/nodes/n-7")
            .header("impersonate-group", "system:masters")
            .body(Body::empty())
            .unwrap();
        node.send(req).await.unwrap();
        let shared = Identity::Kubeconfig.client(&base, "n-7").unwrap();
        shared
            .send(Request::get("/api/v1/nodes").body(Body::empty()).unwrap())
            .await
            .unwrap();
        let seen = seen.lock().unwrap();
        assert_eq!(seen[0]["impersonate-user"], "system:node:n-7");
        // A group the caller put there is replaced, not added to.
        let groups: Vec<_> = seen[0].get_all("impersonate-group").iter().collect();
        assert_eq!(groups, ["system:nodes"]);
        assert!(seen[1].get("impersonate-user").is_none());
        assert!(seen[1].get("impersonate-group").is_none());
    }

    #[test]
    fn a_name_that_is_not_a_header_value_is_refused() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let _guard = rt.enter();
        let (base, _) = recording();
        assert!(matches!(
            impersonating(&base, "bad\nname", &[NODES_GROUP]),
            Err(Error::Config(_))
        ));
    }
}
