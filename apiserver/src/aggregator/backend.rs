//! Where an extension server is: the address an APIService's `spec.service`
//! resolves to. Keel has no Service proxy yet, so a Service's cluster IP
//! leads nowhere; the address comes instead from, in this order:
//!
//! 1. the annotation `keel.dev/backend: host:port` on the APIService;
//! 2. the Endpoints object named as the Service, in its namespace: the
//!    first ready address, with the port that the APIService's
//!    `spec.service.port` names. When the Service object exists, its port
//!    numbered `spec.service.port` gives the port's name (Kubernetes' rule);
//!    without one, the Endpoints port numbered `spec.service.port` is taken,
//!    else the subset's only port.
//!
//! A failure carries the reason and message of the APIService's
//! `Available` condition, worded as Kubernetes words them.

use serde_json::Value;

use super::registration::{Registration, ServiceRef};
use crate::registry::Registry;
use crate::registry::storage::{Consistency, StorageError};

/// Why no address was found: the `Available` condition's reason and message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unresolved {
    pub reason: &'static str,
    pub message: String,
}

/// `host:port` of the extension server of `reg` (a remote registration).
pub async fn resolve(registry: &Registry, reg: &Registration) -> Result<String, Unresolved> {
    if let Some(addr) = &reg.backend {
        return Ok(addr.clone());
    }
    let Some(svc) = &reg.service else {
        return Err(Unresolved {
            reason: "Local",
            message: "Local APIServices are always available".into(),
        });
    };
    let service = read(registry, "services", svc).await?;
    let endpoints = read(registry, "endpoints", svc).await?;
    pick(svc, service.as_ref(), endpoints.as_ref())
}

/// The object `kind` named as the Service, `None` when there is none.
async fn read(
    registry: &Registry,
    plural: &str,
    svc: &ServiceRef,
) -> Result<Option<Value>, Unresolved> {
    let Some(rt) = registry.kinds.find("", "v1", plural) else {
        return Ok(None);
    };
    let key = rt.key(Some(&svc.namespace), &svc.name);
    match registry.storage.get(&key, Consistency::Local).await {
        Ok((kv, _)) => Ok(serde_json::from_slice(&kv.value).ok()),
        Err(StorageError::NotFound { .. }) => Ok(None),
        Err(e) => Err(Unresolved {
            reason: if plural == "services" {
                "ServiceAccessError"
            } else {
                "EndpointsAccessError"
            },
            message: e.to_string(),
        }),
    }
}

/// The address from the Service (if any) and its Endpoints (if any).
pub fn pick(
    svc: &ServiceRef,
    service: Option<&Value>,
    endpoints: Option<&Value>,
) -> Result<String, Unresolved> {
    let named = format!("service/{} in {:?}", svc.name, svc.namespace);
    // With a Service, its port numbered spec.service.port names the port.
    let port_name = match service {
        None => None,
        Some(s) => {
            let ports = s
                .pointer("/spec/ports")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let port = ports
                .iter()
                .find(|p| p["port"].as_u64() == Some(u64::from(svc.port)))
                .ok_or_else(|| Unresolved {
                    reason: "ServicePortError",
                    message: format!("{named} is not listening on port {}", svc.port),
                })?;
            Some(port["name"].as_str().unwrap_or_default().to_string())
        }
    };
    let Some(endpoints) = endpoints else {
        return Err(match service {
            None => Unresolved {
                reason: "ServiceNotFound",
                message: format!("{named} is not present"),
            },
            Some(_) => Unresolved {
                reason: "EndpointsNotFound",
                message: format!("cannot find endpoints for {named}"),
            },
        });
    };
    let subsets = endpoints
        .get("subsets")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    for subset in subsets {
        let ports = subset
            .get("ports")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let port = match &port_name {
            Some(name) => ports
                .iter()
                .find(|p| p["name"].as_str().unwrap_or_default() == name)
                .or_else(|| (ports.len() == 1 && name.is_empty()).then(|| &ports[0])),
            None => ports
                .iter()
                .find(|p| p["port"].as_u64() == Some(u64::from(svc.port)))
                .or_else(|| (ports.len() == 1).then(|| &ports[0])),
        };
        let Some(port) = port.and_then(|p| p["port"].as_u64()) else {
            continue;
        };
        let ip = subset
            .get("addresses")
            .and_then(Value::as_array)
            .and_then(|a| a.iter().find_map(|addr| addr["ip"].as_str()));
        if let Some(ip) = ip {
            return Ok(if ip.contains(':') {
                format!("[{ip}]:{port}")
            } else {
                format!("{ip}:{port}")
            });
        }
    }
    Err(Unresolved {
        reason: "MissingEndpoints",
        message: match port_name {
            Some(name) => {
                format!("endpoints for {named} have no addresses with port name {name:?}")
            }
            None => format!(
                "endpoints for {named} have no addresses with port {}",
                svc.port
            ),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn svc() -> ServiceRef {
        ServiceRef {
            namespace: "wardle".into(),
            name: "api".into(),
            port: 443,
        }
    }

    fn endpoints(ports: Value) -> Value {
        json!({"subsets": [
            {"notReadyAddresses": [{"ip": "10.0.0.9"}], "ports": ports.clone()},
            {"addresses": [{"ip": "127.0.0.1"}, {"ip": "127.0.0.2"}], "ports": ports},
        ]})
    }

    #[test]
    fn the_first_ready_address_with_the_numbered_port_without_a_service() {
        let ep =
            endpoints(json!([{"name": "metrics", "port": 9000}, {"name": "https", "port": 443}]));
        assert_eq!(pick(&svc(), None, Some(&ep)), Ok("127.0.0.1:443".into()));
        let single = endpoints(json!([{"port": 8443}]));
        assert_eq!(
            pick(&svc(), None, Some(&single)),
            Ok("127.0.0.1:8443".into()),
            "a subset's only port"
        );
        let none = endpoints(json!([{"port": 1}, {"port": 2}]));
        assert_eq!(
            pick(&svc(), None, Some(&none)).unwrap_err().reason,
            "MissingEndpoints"
        );
        let e = pick(&svc(), None, None).unwrap_err();
        assert_eq!(
            (e.reason, e.message.as_str()),
            (
                "ServiceNotFound",
                r#"service/api in "wardle" is not present"#
            )
        );
    }

    #[test]
    fn a_service_names_the_endpoints_port() {
        let service =
            json!({"spec": {"ports": [{"name": "https", "port": 443, "targetPort": 8443}]}});
        let ep =
            endpoints(json!([{"name": "metrics", "port": 443}, {"name": "https", "port": 8443}]));
        assert_eq!(
            pick(&svc(), Some(&service), Some(&ep)),
            Ok("127.0.0.1:8443".into())
        );
        assert_eq!(
            pick(&svc(), Some(&service), None).unwrap_err().reason,
            "EndpointsNotFound"
        );
        let other = json!({"spec": {"ports": [{"name": "https", "port": 8080}]}});
        let e = pick(&svc(), Some(&other), Some(&ep)).unwrap_err();
        assert_eq!(
            (e.reason, e.message.as_str()),
            (
                "ServicePortError",
                r#"service/api in "wardle" is not listening on port 443"#
            )
        );
        let unready = json!({"subsets": [{"notReadyAddresses": [{"ip": "10.0.0.9"}], "ports": [{"name": "https", "port": 8443}]}]});
        let e = pick(&svc(), Some(&service), Some(&unready)).unwrap_err();
        assert_eq!(e.reason, "MissingEndpoints");
        assert!(
            e.message
                .ends_with(r#"have no addresses with port name "https""#),
            "{}",
            e.message
        );
    }
}
