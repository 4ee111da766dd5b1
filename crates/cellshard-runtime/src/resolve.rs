//! Resolution: a plate's sites checked (channels complete and unique, metadata present)
//! and split into complete sites and reject rows, one per object.

use std::collections::BTreeMap;

use cellshard_core::metadata::Lookup;
use cellshard_core::{MetadataTable, RejectReason, SiteKey};
use cellshard_store::schema::RejectRow;

use crate::discover::{ObjectRef, ResolvedSite, SiteInputs};

/// Check a plate's sites (channels complete and unique, metadata present) and split them
/// into complete sites and reject rows (one per object).
pub fn resolve_plate(
    sites: BTreeMap<SiteKey, SiteInputs>,
    metadata: &MetadataTable,
    channels: u32,
) -> (Vec<ResolvedSite>, Vec<RejectRow>) {
    let mut good = Vec::new();
    let mut rejects = Vec::new();
    for (key, inputs) in sites {
        let id = key.site_id();
        // Channel numbers outside 1..=channels: reject those objects, judge the rest.
        let mut usable: BTreeMap<u32, Vec<ObjectRef>> = BTreeMap::new();
        for (ch, objs) in inputs.channels {
            if ch == 0 || ch > channels {
                let refs: Vec<&ObjectRef> = objs.iter().collect();
                let msg = format!("site {id}: channel w{ch} is outside w1..w{channels}");
                rejects.extend(reject_rows(
                    &key,
                    &refs,
                    RejectReason::ChannelOutOfRange,
                    &msg,
                ));
            } else {
                usable.insert(ch, objs);
            }
        }
        let all: Vec<&ObjectRef> = usable.values().flatten().collect();
        if all.is_empty() {
            continue;
        }
        let dups: Vec<u32> = usable
            .iter()
            .filter(|(_, v)| v.len() > 1)
            .map(|(c, _)| *c)
            .collect();
        if !dups.is_empty() {
            let names: Vec<String> = dups
                .iter()
                .flat_map(|c| usable[c].iter().map(|o| o.display.clone()))
                .collect();
            let msg = format!(
                "site {id}: more than one file for channel {}: {}",
                channel_list(dups.iter().copied()),
                names.join(", ")
            );
            rejects.extend(reject_rows(
                &key,
                &all,
                RejectReason::DuplicateChannel,
                &msg,
            ));
            continue;
        }
        let missing: Vec<u32> = (1..=channels).filter(|c| !usable.contains_key(c)).collect();
        if !missing.is_empty() {
            let msg = format!(
                "site {id}: missing channels {} (found {})",
                channel_list(missing.into_iter()),
                channel_list(usable.keys().copied())
            );
            rejects.extend(reject_rows(&key, &all, RejectReason::MissingChannels, &msg));
            continue;
        }
        let meta = match metadata.lookup(&key) {
            Lookup::Found(m) => m.clone(),
            Lookup::Missing => {
                let msg = format!("site {id}: no metadata row for this site or its well");
                rejects.extend(reject_rows(&key, &all, RejectReason::NoMetadata, &msg));
                continue;
            }
            Lookup::Conflict(why) => {
                let msg = format!("site {id}: conflicting metadata: {why}");
                rejects.extend(reject_rows(
                    &key,
                    &all,
                    RejectReason::MetadataConflict,
                    &msg,
                ));
                continue;
            }
        };
        let dataset = meta.dataset.clone().or(inputs.dataset);
        let objects = usable.into_values().flatten().collect();
        good.push(ResolvedSite {
            key,
            meta,
            dataset,
            objects,
        });
    }
    (good, rejects)
}

fn reject_rows(
    key: &SiteKey,
    objects: &[&ObjectRef],
    reason: RejectReason,
    message: &str,
) -> Vec<RejectRow> {
    objects
        .iter()
        .map(|o| RejectRow {
            site_id: Some(key.site_id()),
            experiment: Some(key.experiment.clone()),
            plate: Some(key.plate as i32),
            object_path: Some(o.display.clone()),
            reason,
            message: message.to_string(),
        })
        .collect()
}

fn channel_list(chs: impl Iterator<Item = u32>) -> String {
    chs.map(|c| format!("w{c}")).collect::<Vec<_>>().join(", ")
}
