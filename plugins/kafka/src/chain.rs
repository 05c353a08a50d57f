//! Where a partition's records are: an incremental backup's `kafka.json` lists only its own
//! segments, and marks a partition `chained` when its records below `start` are its base's.
//! The host binds the bases read-only as `base-1` (the nearest), `base-2`, …, each with its
//! own `kafka.json`; a partition's segments are found by walking down while it is chained.

use crate::model::{self, Backup, Partition, Segment};
use coffer_plugin_sdk::{Error, location};
use std::collections::BTreeMap;

/// Links walked at most (the host binds no longer chains).
const MAX_DEPTH: usize = 10_000;

/// One partition's segments across the chain, the deepest base's first.
pub struct Pieces {
    /// (logical location, segment)
    pub segments: Vec<(String, Segment)>,
    pub records: u64,
}

/// The bases' records, read as first needed.
pub struct Links {
    stores: BTreeMap<String, location::Store>,
    /// The base `depth` links away is at index `depth - 1`.
    bases: Vec<Backup>,
}

fn location_name(depth: usize) -> String {
    match depth {
        0 => crate::LOCATION.to_string(),
        d => format!("base-{d}"),
    }
}

impl Links {
    pub fn new(own: location::Store) -> Links {
        Links {
            stores: BTreeMap::from([(location_name(0), own)]),
            bases: Vec::new(),
        }
    }

    pub fn store(&mut self, name: &str) -> Result<&location::Store, Error> {
        if !self.stores.contains_key(name) {
            self.stores.insert(name.to_string(), location::open(name)?);
        }
        Ok(&self.stores[name])
    }

    fn base(&mut self, depth: usize) -> Result<&Backup, Error> {
        while self.bases.len() < depth {
            let name = location_name(self.bases.len() + 1);
            let b = model::read(self.store(&name)?, &format!("{name}'s backup"))?;
            self.bases.push(b);
        }
        Ok(&self.bases[depth - 1])
    }

    /// The segments of `topic`'s partition `own` (this backup's record of it) and of its
    /// bases, in offset order.
    pub fn pieces(&mut self, topic: &str, own: &Partition) -> Result<Pieces, Error> {
        let mut found = vec![(location_name(0), own.segments.clone())];
        let mut records = own.records;
        let mut chained = own.chained;
        let mut depth = 0;
        while chained {
            depth += 1;
            if depth > MAX_DEPTH {
                return Err(Error::Io(format!(
                    "{topic}/{} chains more than {MAX_DEPTH} backups deep",
                    own.partition
                )));
            }
            let base = self.base(depth)?;
            let p = base
                .topics
                .iter()
                .find(|t| t.name == topic)
                .and_then(|t| t.partitions.iter().find(|p| p.partition == own.partition))
                .ok_or_else(|| {
                    Error::Io(format!(
                        "{topic}/{} continues in {}, whose backup does not hold it: the chain is damaged",
                        own.partition,
                        location_name(depth)
                    ))
                })?;
            found.push((location_name(depth), p.segments.clone()));
            records += p.records;
            chained = p.chained;
        }
        found.reverse();
        Ok(Pieces {
            segments: found
                .into_iter()
                .flat_map(|(loc, segs)| segs.into_iter().map(move |s| (loc.clone(), s)))
                .collect(),
            records,
        })
    }
}
