//! The structure of every built-in kind, as Kubernetes' API document gives
//! it: each field's type and its strategic-merge and server-side-apply
//! metadata (patch strategy, merge key, list type, list map keys, map type).
//! Strategic merge patch and server-side apply walk objects with it.
//!
//! The table is `k8s-schema.json`, generated from Kubernetes' swagger.json by
//! `scripts/gen-k8s-schema.py` and embedded; it is parsed once, on first use.

use std::collections::HashMap;
use std::sync::OnceLock;

use serde::Deserialize;

/// The embedded table; regenerate it with `scripts/gen-k8s-schema.py`.
const TABLE: &str = include_str!("k8s-schema.json");

/// Every built-in kind's structure.
#[derive(Debug)]
pub struct Schema {
    kinds: HashMap<String, Ty>,
    types: HashMap<String, TypeDef>,
    /// `Ty::Def(name)` for every definition, so a node can point at one.
    defs: HashMap<String, Ty>,
}

/// The schema of the built-in kinds, parsed on first use.
pub fn builtin() -> &'static Schema {
    static SCHEMA: OnceLock<Schema> = OnceLock::new();
    SCHEMA.get_or_init(|| Schema::parse(TABLE).expect("the embedded k8s-schema.json is valid"))
}

/// What a value is, as far as merging goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// An object with named fields.
    Object,
    /// An object with arbitrary keys, every value of one type.
    Map,
    /// A list.
    List,
    /// A string, number or boolean (including quantities, times, int-or-string).
    Scalar,
    /// Any JSON, with no schema below it (RawExtension, JSON, FieldsV1).
    Any,
}

/// `x-kubernetes-list-type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListType {
    Atomic,
    Set,
    Map,
}

/// `x-kubernetes-map-type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapType {
    Atomic,
    Granular,
}

/// `x-kubernetes-patch-strategy`: a comma-separated set of these.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PatchStrategy {
    pub merge: bool,
    pub replace: bool,
    pub retain_keys: bool,
}

/// One place in the schema: a type, plus the annotations of the property
/// (field) that leads to it. The root and list or map elements carry none.
#[derive(Clone, Copy, Debug)]
pub struct Node<'a> {
    schema: &'a Schema,
    ty: &'a Ty,
    prop: Option<&'a Prop>,
}

/// A type expression of the table.
#[derive(Debug)]
enum Ty {
    Scalar,
    Any,
    Def(String),
    List(Box<Ty>),
    Map(Box<Ty>),
}

#[derive(Debug)]
struct TypeDef {
    props: HashMap<String, Prop>,
    map_type: Option<MapType>,
}

#[derive(Debug)]
struct Prop {
    ty: Ty,
    strategy: PatchStrategy,
    merge_key: Option<String>,
    list_type: Option<ListType>,
    map_keys: Vec<String>,
    map_type: Option<MapType>,
}

/// The table as it is written.
#[derive(Deserialize)]
struct RawTable {
    kinds: HashMap<String, String>,
    types: HashMap<String, RawType>,
}

#[derive(Deserialize)]
struct RawType {
    p: HashMap<String, RawProp>,
    #[serde(default)]
    mt: Option<String>,
}

#[derive(Deserialize)]
struct RawProp {
    t: serde_json::Value,
    #[serde(default)]
    ps: Option<String>,
    #[serde(default)]
    mk: Option<String>,
    #[serde(default)]
    lt: Option<String>,
    #[serde(default)]
    lk: Vec<String>,
    #[serde(default)]
    mt: Option<String>,
}

impl Schema {
    fn parse(table: &str) -> Result<Self, String> {
        let raw: RawTable = serde_json::from_str(table).map_err(|e| e.to_string())?;
        let mut types = HashMap::with_capacity(raw.types.len());
        for (name, t) in raw.types {
            let mut props = HashMap::with_capacity(t.p.len());
            for (field, p) in t.p {
                props.insert(
                    field,
                    Prop {
                        ty: ty(&p.t)?,
                        strategy: strategy(p.ps.as_deref()),
                        merge_key: p.mk,
                        list_type: p.lt.as_deref().map(list_type).transpose()?,
                        map_keys: p.lk,
                        map_type: p.mt.as_deref().map(map_type).transpose()?,
                    },
                );
            }
            let map_type = t.mt.as_deref().map(map_type).transpose()?;
            types.insert(name, TypeDef { props, map_type });
        }
        let kinds = raw
            .kinds
            .into_iter()
            .map(|(gvk, def)| (gvk, Ty::Def(def)))
            .collect();
        let defs = types
            .keys()
            .map(|name| (name.clone(), Ty::Def(name.clone())))
            .collect();
        Ok(Self { kinds, types, defs })
    }

    /// The root node of a built-in kind (`""` is the core group).
    pub fn kind(&self, group: &str, version: &str, kind: &str) -> Option<Node<'_>> {
        let ty = self.kinds.get(&format!("{group}/{version}/{kind}"))?;
        Some(Node {
            schema: self,
            ty,
            prop: None,
        })
    }

    /// A definition by its swagger name, e.g. `io.k8s.api.core.v1.PodSpec`.
    pub fn definition(&self, name: &str) -> Option<Node<'_>> {
        Some(Node {
            schema: self,
            ty: self.defs.get(name)?,
            prop: None,
        })
    }
}

impl<'a> Node<'a> {
    /// The definition this node's type names, if it is an object.
    fn def(&self) -> Option<&'a TypeDef> {
        match self.ty {
            Ty::Def(name) => self.schema.types.get(name),
            _ => None,
        }
    }

    /// What the value here is.
    pub fn shape(&self) -> Shape {
        match self.ty {
            Ty::Scalar => Shape::Scalar,
            Ty::Any => Shape::Any,
            Ty::List(_) => Shape::List,
            Ty::Map(_) => Shape::Map,
            Ty::Def(_) => match self.def() {
                Some(_) => Shape::Object,
                None => Shape::Any,
            },
        }
    }

    /// Object: the node of field `name` (None if the type has no such field).
    pub fn field(&self, name: &str) -> Option<Node<'a>> {
        let prop = self.def()?.props.get(name)?;
        Some(Node {
            schema: self.schema,
            ty: &prop.ty,
            prop: Some(prop),
        })
    }

    /// The names of an object's fields (empty for other shapes).
    pub fn field_names(&self) -> impl Iterator<Item = &'a str> + use<'a> {
        self.def()
            .into_iter()
            .flat_map(|d| d.props.keys().map(String::as_str))
    }

    /// List: the item node; Map: the value node.
    pub fn elem(&self) -> Option<Node<'a>> {
        match self.ty {
            Ty::List(t) | Ty::Map(t) => Some(Node {
                schema: self.schema,
                ty: t,
                prop: None,
            }),
            _ => None,
        }
    }

    /// `x-kubernetes-patch-strategy` of the property (all false when absent).
    pub fn patch_strategy(&self) -> PatchStrategy {
        self.prop.map(|p| p.strategy).unwrap_or_default()
    }

    /// `x-kubernetes-patch-merge-key` of the property.
    pub fn merge_key(&self) -> Option<&'a str> {
        self.prop.and_then(|p| p.merge_key.as_deref())
    }

    /// `x-kubernetes-list-type` of the property.
    pub fn list_type(&self) -> Option<ListType> {
        self.prop.and_then(|p| p.list_type)
    }

    /// `x-kubernetes-list-map-keys` of the property (empty when absent).
    pub fn map_keys(&self) -> &'a [String] {
        self.prop.map(|p| p.map_keys.as_slice()).unwrap_or(&[])
    }

    /// `x-kubernetes-map-type` of the property, else of the object type.
    pub fn map_type(&self) -> Option<MapType> {
        self.prop
            .and_then(|p| p.map_type)
            .or_else(|| self.def().and_then(|d| d.map_type))
    }
}

fn ty(v: &serde_json::Value) -> Result<Ty, String> {
    use serde_json::Value;
    Ok(match v {
        Value::String(s) if s == "s" => Ty::Scalar,
        Value::String(s) if s == "a" => Ty::Any,
        Value::String(s) if s.starts_with('#') => Ty::Def(s[1..].to_string()),
        Value::Object(m) if m.len() == 1 => match m.iter().next() {
            Some((k, inner)) if k == "l" => Ty::List(Box::new(ty(inner)?)),
            Some((k, inner)) if k == "m" => Ty::Map(Box::new(ty(inner)?)),
            _ => return Err(format!("unknown type expression {v}")),
        },
        _ => return Err(format!("unknown type expression {v}")),
    })
}

fn strategy(s: Option<&str>) -> PatchStrategy {
    let mut out = PatchStrategy::default();
    for part in s.unwrap_or("").split(',') {
        match part.trim() {
            "merge" => out.merge = true,
            "replace" => out.replace = true,
            "retainKeys" => out.retain_keys = true,
            _ => {}
        }
    }
    out
}

fn list_type(s: &str) -> Result<ListType, String> {
    match s {
        "atomic" => Ok(ListType::Atomic),
        "set" => Ok(ListType::Set),
        "map" => Ok(ListType::Map),
        other => Err(format!("unknown list type {other}")),
    }
}

fn map_type(s: &str) -> Result<MapType, String> {
    match s {
        "atomic" => Ok(MapType::Atomic),
        "granular" => Ok(MapType::Granular),
        other => Err(format!("unknown map type {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_containers_merge_by_name() {
        let pod = builtin().kind("", "v1", "Pod").expect("Pod");
        assert_eq!(pod.shape(), Shape::Object);
        let containers = pod.field("spec").unwrap().field("containers").unwrap();
        assert_eq!(containers.shape(), Shape::List);
        assert!(containers.patch_strategy().merge);
        assert_eq!(containers.merge_key(), Some("name"));
        assert_eq!(containers.list_type(), Some(ListType::Map));
        assert_eq!(containers.map_keys(), ["name".to_string()]);
        let c = containers.elem().unwrap();
        assert_eq!(c.shape(), Shape::Object);
        let env = c.field("env").unwrap();
        assert_eq!(env.merge_key(), Some("name"));
        let ports = c.field("ports").unwrap();
        assert_eq!(ports.merge_key(), Some("containerPort"));
        assert_eq!(
            c.field("resources")
                .unwrap()
                .field("limits")
                .unwrap()
                .elem()
                .unwrap()
                .shape(),
            Shape::Scalar
        );
    }

    #[test]
    fn metadata_labels_finalizers_and_owner_references() {
        let cm = builtin().kind("", "v1", "ConfigMap").expect("ConfigMap");
        let meta = cm.field("metadata").unwrap();
        assert_eq!(meta.field("labels").unwrap().shape(), Shape::Map);
        let fin = meta.field("finalizers").unwrap();
        assert_eq!(fin.list_type(), Some(ListType::Set));
        assert!(fin.patch_strategy().merge);
        let owners = meta.field("ownerReferences").unwrap();
        assert_eq!(owners.merge_key(), Some("uid"));
        assert_eq!(cm.field("data").unwrap().shape(), Shape::Map);
        assert!(cm.field("nosuchfield").is_none());
    }

    #[test]
    fn retain_keys_atomic_lists_and_map_types() {
        let d = builtin()
            .kind("apps", "v1", "Deployment")
            .expect("Deployment");
        let strategy = d.field("spec").unwrap().field("strategy").unwrap();
        assert!(strategy.patch_strategy().retain_keys);
        let spec = d
            .field("spec")
            .unwrap()
            .field("template")
            .unwrap()
            .field("spec")
            .unwrap();
        assert_eq!(
            spec.field("tolerations").unwrap().list_type(),
            Some(ListType::Atomic)
        );
        assert!(!spec.field("tolerations").unwrap().patch_strategy().merge);
        let selector = d.field("spec").unwrap().field("selector").unwrap();
        assert_eq!(selector.map_type(), Some(MapType::Atomic));
        let volume = spec.field("volumes").unwrap().elem().unwrap();
        assert_eq!(volume.field("configMap").unwrap().shape(), Shape::Object);
    }

    #[test]
    fn raw_extensions_are_any_and_definitions_resolve() {
        let crd = builtin()
            .kind("apiextensions.k8s.io", "v1", "CustomResourceDefinition")
            .expect("CRD");
        assert_eq!(crd.shape(), Shape::Object);
        let spec = builtin()
            .definition("io.k8s.api.core.v1.PodSpec")
            .expect("PodSpec");
        assert!(spec.field("containers").is_some());
        assert!(spec.field_names().any(|n| n == "nodeName"));
        let cr = builtin().kind("apps", "v1", "ControllerRevision").unwrap();
        assert_eq!(cr.field("data").unwrap().shape(), Shape::Any);
        assert!(builtin().kind("example.com", "v1", "Widget").is_none());
    }
}
