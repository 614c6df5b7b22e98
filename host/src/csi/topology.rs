//! Node-local topology: a volume of a `node-local` driver exists on the node
//! whose host made it, so the host pins it there.
//!
//! The driver never learns the node's name (it has no ambient authority and
//! needs none for this): the host answers NodeGetInfo with the segment
//! `topology.wasmvol.io/node = <node id>`, refuses a CreateVolume whose
//! requisite topology does not include this node, returns the segment as
//! the volume's accessible topology and reports no capacity for another
//! node. With external-provisioner in `--node-deployment` mode each node's
//! host provisions the claims scheduled onto it.

use std::collections::HashMap;

use tonic::Status;

use super::proto::{Topology, TopologyRequirement};

/// The topology key of node-local volumes.
pub const NODE_KEY: &str = "topology.wasmvol.io/node";

/// This node, as node-local topology sees it.
#[derive(Debug, Clone)]
pub struct NodeTopology {
    node_id: String,
}

impl NodeTopology {
    /// The topology of the node named `node_id` (the CSI node id).
    pub fn new(node_id: &str) -> Self {
        Self {
            node_id: node_id.to_owned(),
        }
    }

    /// The segment naming this node.
    pub fn segment(&self) -> Topology {
        Topology {
            segments: HashMap::from([(NODE_KEY.to_owned(), self.node_id.clone())]),
        }
    }

    /// Whether a volume may be made here under CreateVolume's
    /// `accessibility_requirements` (CSI: the volume must be reachable from
    /// one of the requisite topologies; preferred ones must be among them).
    /// A node-local volume can only be made here, so preferred order picks
    /// nothing; a requirement this node cannot meet is RESOURCE_EXHAUSTED.
    pub fn admit(&self, wanted: Option<&TopologyRequirement>) -> Result<(), Status> {
        let Some(wanted) = wanted else {
            return Ok(());
        };
        for (field, list) in [
            ("requisite", &wanted.requisite),
            ("preferred", &wanted.preferred),
        ] {
            for (i, t) in list.iter().enumerate() {
                self.check_keys(t, &format!("accessibility_requirements.{field}[{i}]"))?;
            }
        }
        if !wanted.requisite.is_empty() {
            if let Some(p) = wanted
                .preferred
                .iter()
                .find(|p| !wanted.requisite.contains(p))
            {
                return Err(Status::invalid_argument(format!(
                    "preferred topology {:?} is not among the requisite ones",
                    p.segments
                )));
            }
            if !wanted.requisite.iter().any(|t| self.is_here(t)) {
                return Err(Status::resource_exhausted(format!(
                    "volumes of this driver live on the node that makes them, `{}`, which no \
                     requisite topology includes",
                    self.node_id
                )));
            }
        }
        Ok(())
    }

    /// Whether GetCapacity's `accessible_topology` asks about this node
    /// (no topology asks about the node serving the call).
    pub fn serves(&self, asked: Option<&Topology>) -> Result<bool, Status> {
        match asked {
            None => Ok(true),
            Some(t) => {
                self.check_keys(t, "accessible_topology")?;
                Ok(self.is_here(t))
            }
        }
    }

    fn is_here(&self, t: &Topology) -> bool {
        t.segments.get(NODE_KEY) == Some(&self.node_id)
    }

    fn check_keys(&self, t: &Topology, field: &str) -> Result<(), Status> {
        match t.segments.keys().find(|k| k.as_str() != NODE_KEY) {
            Some(k) => Err(Status::invalid_argument(format!(
                "{field}: topology key `{k}` is not one this plugin reports (only `{NODE_KEY}`)"
            ))),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    fn at(node: &str) -> Topology {
        NodeTopology::new(node).segment()
    }

    fn wanted(requisite: &[&str], preferred: &[&str]) -> TopologyRequirement {
        TopologyRequirement {
            requisite: requisite.iter().map(|n| at(n)).collect(),
            preferred: preferred.iter().map(|n| at(n)).collect(),
        }
    }

    #[test]
    fn a_volume_is_made_here_only_when_the_requisite_topology_includes_this_node() {
        let here = NodeTopology::new("node-a");
        assert!(here.admit(None).is_ok());
        assert!(here.admit(Some(&wanted(&[], &[]))).is_ok());
        assert!(here
            .admit(Some(&wanted(&["node-b", "node-a"], &[])))
            .is_ok());
        assert!(here
            .admit(Some(&wanted(&["node-a", "node-b"], &["node-b"])))
            .is_ok());
        // Preferred alone is a wish: the volume is still made here.
        assert!(here.admit(Some(&wanted(&[], &["node-b"]))).is_ok());
        let elsewhere = here.admit(Some(&wanted(&["node-b"], &[]))).unwrap_err();
        assert_eq!(elsewhere.code(), Code::ResourceExhausted);
        assert!(elsewhere.message().contains("node-a"), "{elsewhere:?}");
    }

    #[test]
    fn requirements_the_spec_forbids_or_keys_it_never_reported_are_invalid() {
        let here = NodeTopology::new("node-a");
        let not_requisite = here
            .admit(Some(&wanted(&["node-a"], &["node-b"])))
            .unwrap_err();
        assert_eq!(not_requisite.code(), Code::InvalidArgument);
        let zone = TopologyRequirement {
            requisite: vec![Topology {
                segments: HashMap::from([("topology.kubernetes.io/zone".into(), "z".into())]),
            }],
            preferred: Vec::new(),
        };
        let err = here.admit(Some(&zone)).unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
        assert!(err.message().contains("topology.kubernetes.io/zone"));
    }

    #[test]
    fn capacity_is_this_nodes_only() {
        let here = NodeTopology::new("node-a");
        assert!(here.serves(None).unwrap());
        assert!(here.serves(Some(&at("node-a"))).unwrap());
        assert!(!here.serves(Some(&at("node-b"))).unwrap());
    }
}
