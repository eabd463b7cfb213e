//! The per-flow map the programs forward from (`sg_flows`): writing and
//! removing the entries the engine publishes, the reader through which the
//! engine gets the progress back, and the entries an adopted map brought
//! from an earlier process.
//!
//! Never decides which flows are forwarded (`engine::forward` does).

use aya::maps::MapInfo;

use crate::engine::forward::{FlowProgress, ForwardProgressSource};

use super::*;

impl XdpFastPath {
    /// A reader of the progress the program records, for the engine
    /// ([`Engine::set_forward_progress_source`]); its own handle on the map.
    pub fn progress_reader(&self) -> Result<ForwardProgressReader, XdpError> {
        let data = MapData::from_id(self.flows_map_id)
            .map_err(|e| XdpError::Load(format!("sg_flows: {e}")))?;
        let flows = HashMap::try_from(Map::HashMap(data)).map_err(|_| XdpError::Map("sg_flows"))?;
        Ok(ForwardProgressReader { flows })
    }

    /// Kernel ids of the two per-flow maps, `sg_flows` and `sg_tracked`
    /// (the memory bench reads their memlock).
    pub fn per_flow_map_ids(&self) -> [(&'static str, u32); 2] {
        [
            ("sg_flows", self.flows_map_id),
            ("sg_tracked", self.tracked_map_id),
        ]
    }

    /// The program's entry for an established flow, if it forwards it.
    pub fn flow_entry(&self, key: &FlowKey) -> Option<SgFlow> {
        self.flows.get(&SgFlowKey::from_key(key), 0).ok()
    }

    /// The established flows an earlier process published into the
    /// adopted `sg_flows` (empty when nothing was adopted). Entries no
    /// engine could have written are removed.
    pub fn take_adopted_flows(&mut self) -> Vec<(FlowKey, ForwardEntry)> {
        if !std::mem::take(&mut self.adopted) {
            return Vec::new();
        }
        let mut out = Vec::new();
        let mut damaged = Vec::new();
        for item in self.flows.iter() {
            let Ok((k, v)) = item else { continue };
            match v.to_entry() {
                Some(e) => out.push((k.to_key(), e)),
                None => damaged.push(k),
            }
        }
        for k in damaged {
            let _ = self.flows.remove(&k);
        }
        out
    }

    /// Remove `sg_flows` entries the engine did not publish (adopted ones
    /// it refused: no longer protected, no room): the program must not
    /// forward a flow the engine does not know.
    pub fn prune_unpublished_flows(&mut self) -> usize {
        let stale: Vec<SgFlowKey> = self
            .flows
            .keys()
            .filter_map(Result::ok)
            .filter(|k| !self.forwarded.contains(k))
            .collect();
        for k in &stale {
            let _ = self.flows.remove(k);
        }
        stale.len()
    }

    /// Write the flow's forwarding entry, or remove the one written before.
    pub(super) fn publish_flow(
        &mut self,
        key: SgFlowKey,
        entry: Option<&ForwardEntry>,
    ) -> Result<(), aya::maps::MapError> {
        match entry {
            Some(e) => {
                self.flows.insert(key, SgFlow::from_entry(e), 0)?;
                self.forwarded.insert(key);
            }
            None if self.forwarded.remove(&key) => match self.flows.remove(&key) {
                Ok(()) | Err(aya::maps::MapError::KeyNotFound) => {}
                Err(e) => return Err(e),
            },
            None => {}
        }
        Ok(())
    }
}

/// Does the pinned `sg_flows` at `path` have this build's key and value
/// layout (only then may its entries be read as `SgFlow`)?
pub(super) fn pinned_flows_map_fits(path: &std::path::Path) -> bool {
    MapInfo::from_pin(path).is_ok_and(|i| {
        i.key_size() as usize == std::mem::size_of::<SgFlowKey>()
            && i.value_size() as usize == std::mem::size_of::<SgFlow>()
    })
}

/// The engine's [`ForwardProgressSource`]: reads `sg_flows` through its
/// own handle (one lookup syscall per read; the engine reads only before it
/// acts on a forwarded flow).
pub struct ForwardProgressReader {
    flows: HashMap<MapData, SgFlowKey, SgFlow>,
}

impl ForwardProgressSource for ForwardProgressReader {
    fn read(&self, key: &FlowKey) -> Option<FlowProgress> {
        self.flows
            .get(&SgFlowKey::from_key(key), 0)
            .ok()
            .map(|f| f.progress())
    }
}
