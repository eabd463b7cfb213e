//! The log of 4-tuples a table inserted or removed, kept only while someone
//! reads it (the XDP fast path publishes tracked tuples from it,
//! `engine::fast_path`). Owns the on/off switch and the buffer; never
//! decides what a key means.

use super::flow::FlowKey;

/// Off (`None`) costs one branch per table change; on, one push.
#[derive(Debug, Default)]
pub struct KeyLog(Option<Vec<FlowKey>>);

impl KeyLog {
    /// Start logging, with `existing` (the table's keys now) as the first
    /// entries, so a reader that starts late still learns every key.
    pub fn enable(&mut self, existing: impl IntoIterator<Item = FlowKey>) {
        self.0.get_or_insert_with(Vec::new).extend(existing);
    }

    pub fn note(&mut self, key: FlowKey) {
        if let Some(keys) = &mut self.0 {
            keys.push(key);
        }
    }

    /// Move the keys logged since the last drain to `out`.
    pub fn drain_into(&mut self, out: &mut Vec<FlowKey>) {
        if let Some(keys) = &mut self.0 {
            out.append(keys);
        }
    }
}
