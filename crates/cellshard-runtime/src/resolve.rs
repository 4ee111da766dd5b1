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
    let (good, conflicts) = one_cell_type(good);
    rejects.extend(conflicts);
    (good, rejects)
}

/// A plate is stored in one cell-type partition: the cell type most of its sites give
/// (the first in order on a tie). A site whose metadata gives another is a
/// `metadata_conflict` reject; the rest of the plate is stored.
fn one_cell_type(sites: Vec<ResolvedSite>) -> (Vec<ResolvedSite>, Vec<RejectRow>) {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for s in &sites {
        *counts.entry(s.meta.cell_type.as_str()).or_default() += 1;
    }
    let Some(plate_type) = counts
        .iter()
        .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0)))
        .map(|(t, _)| t.to_string())
    else {
        return (sites, Vec::new());
    };
    let mut rejects = Vec::new();
    let mut good = Vec::new();
    for s in sites {
        if s.meta.cell_type == plate_type {
            good.push(s);
            continue;
        }
        let msg = format!(
            "site {}: its metadata gives cell type {:?}, the rest of its plate {plate_type:?} (a plate is stored in one cell-type partition)",
            s.key.site_id(),
            s.meta.cell_type
        );
        let refs: Vec<&ObjectRef> = s.objects.iter().collect();
        rejects.extend(reject_rows(
            &s.key,
            &refs,
            RejectReason::MetadataConflict,
            &msg,
        ));
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

#[cfg(test)]
mod tests {
    use object_store::path::Path;

    use super::*;

    fn obj(name: &str) -> ObjectRef {
        ObjectRef {
            path: Path::from(name),
            display: name.into(),
            size: 1,
            etag: None,
        }
    }

    fn key(site: u32) -> SiteKey {
        SiteKey {
            experiment: "E-1".into(),
            plate: 1,
            well: "B02".into(),
            site,
        }
    }

    #[test]
    fn resolves_and_rejects_sites() {
        let mut md = MetadataTable::new();
        md.add_csv("m.csv", b"experiment,plate,well,site,well_type\nE-1,1,B02,1,negative_control\nE-1,1,B02,2,negative_control\n")
            .unwrap();
        let mut sites = BTreeMap::new();
        let mut complete = SiteInputs::default();
        for c in 1..=3 {
            complete.channels.insert(c, vec![obj(&format!("s1_w{c}"))]);
        }
        complete.channels.insert(7, vec![obj("s1_w7")]);
        sites.insert(key(1), complete);
        let mut partial = SiteInputs::default();
        partial.channels.insert(1, vec![obj("s2_w1")]);
        sites.insert(key(2), partial);
        let mut dup = SiteInputs::default();
        for c in 1..=3 {
            dup.channels.insert(c, vec![obj(&format!("s3_w{c}"))]);
        }
        dup.channels.get_mut(&2).unwrap().push(obj("s3_w2.PNG"));
        sites.insert(key(3), dup);
        let (good, rejects) = resolve_plate(sites, &md, 3);
        assert_eq!(good.len(), 1);
        assert_eq!(good[0].objects.len(), 3);
        assert_eq!(good[0].meta.well_type, "negative_control");
        let reasons: Vec<(&str, &str)> = rejects
            .iter()
            .map(|r| (r.object_path.as_deref().unwrap(), r.reason.code()))
            .collect();
        assert!(reasons.contains(&("s1_w7", "channel_out_of_range")));
        assert!(reasons.contains(&("s2_w1", "missing_channels")));
        assert_eq!(
            reasons
                .iter()
                .filter(|r| r.1 == "duplicate_channel")
                .count(),
            4
        );
        let missing = rejects
            .iter()
            .find(|r| r.reason == RejectReason::MissingChannels)
            .unwrap();
        assert!(
            missing
                .message
                .contains("missing channels w2, w3 (found w1)"),
            "{}",
            missing.message
        );
        // site 3 has no metadata row but is rejected for its duplicate first
        assert_eq!(rejects.len(), 1 + 1 + 4);
    }

    #[test]
    fn a_site_of_another_cell_type_than_its_plate_is_a_conflict_reject() {
        let mut md = MetadataTable::new();
        md.add_csv(
            "m.csv",
            b"experiment,plate,well,site,well_type,cell_type\nE-1,1,B02,1,treatment,HUVEC\nE-1,1,B02,2,treatment,RPE\nE-1,1,B02,3,treatment,HUVEC\n",
        )
        .unwrap();
        let mut sites = BTreeMap::new();
        for site in 1..=3 {
            let mut inputs = SiteInputs::default();
            for c in 1..=2 {
                inputs
                    .channels
                    .insert(c, vec![obj(&format!("s{site}_w{c}"))]);
            }
            sites.insert(key(site), inputs);
        }
        let (good, rejects) = resolve_plate(sites, &md, 2);
        assert_eq!(good.len(), 2);
        assert!(good.iter().all(|s| s.meta.cell_type == "HUVEC"));
        assert_eq!(rejects.len(), 2);
        assert!(
            rejects
                .iter()
                .all(|r| r.reason == RejectReason::MetadataConflict
                    && r.site_id.as_deref() == Some("E-1_1_B02_2")
                    && r.message.contains("RPE"))
        );
    }
}
