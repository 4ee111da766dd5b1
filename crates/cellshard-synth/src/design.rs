//! Choosing sites from the experiment design, and writing their metadata CSV.

use std::collections::{BTreeMap, BTreeSet};

use cellshard_core::{MetadataTable, SiteMetadata};

use crate::{Error, Result, SynthConfig, SynthSite};

/// The negative-control well of every RxRx1 plate.
const NEGATIVE_CONTROL_WELL: &str = "B02";

/// Rows of one well: per-site rows, and a well-level row (Kaggle dialect) if there is one.
#[derive(Default)]
struct WellRows<'a> {
    sites: BTreeMap<u32, &'a SiteMetadata>,
    well: Option<&'a SiteMetadata>,
}

type Plates<'a> = BTreeMap<u32, BTreeMap<&'a str, WellRows<'a>>>;

pub(crate) fn select_sites(design: &MetadataTable, cfg: &SynthConfig) -> Result<Vec<SynthSite>> {
    cfg.validate()?;
    let mut experiments: BTreeMap<&str, Plates<'_>> = BTreeMap::new();
    for row in design.rows() {
        let well = experiments
            .entry(row.experiment.as_str())
            .or_default()
            .entry(row.plate)
            .or_default()
            .entry(row.well.as_str())
            .or_default();
        match row.site {
            Some(s) => {
                well.sites.insert(s, row);
            }
            None => well.well = Some(row),
        }
    }
    if experiments.is_empty() {
        return Err(Error::EmptyDesign);
    }

    let chosen: BTreeSet<&str> = match &cfg.experiments {
        None => experiments.keys().take(1).copied().collect(),
        Some(list) if list.is_empty() => {
            return Err(Error::Config(
                "the experiment list is empty; leave it unset for the first experiment".into(),
            ));
        }
        Some(list) => {
            let mut set = BTreeSet::new();
            for name in list {
                let Some((key, _)) = experiments.get_key_value(name.as_str()) else {
                    return Err(Error::UnknownExperiment {
                        name: name.clone(),
                        known: known_list(&experiments),
                    });
                };
                set.insert(*key);
            }
            set
        }
    };

    let mut out = Vec::new();
    for experiment in chosen {
        let Some(plates) = experiments.get(experiment) else {
            continue;
        };
        if plates.len() < cfg.plates as usize {
            return Err(Error::NotInDesign(format!(
                "{} plates asked for, but experiment {experiment} has only {} in the design",
                cfg.plates,
                plates.len()
            )));
        }
        for (&plate, wells) in plates.iter().take(cfg.plates as usize) {
            let names: Vec<&str> = wells.keys().copied().collect();
            let picked = pick_wells(&names, cfg.wells);
            let mut max_site = 0;
            let mut site_level = false;
            for name in picked {
                let Some(rows) = wells.get(name) else {
                    continue;
                };
                if rows.sites.is_empty() {
                    if let Some(row) = rows.well {
                        for s in 1..=cfg.sites {
                            out.push(SynthSite {
                                meta: SiteMetadata {
                                    site: Some(s),
                                    ..row.clone()
                                },
                            });
                        }
                    }
                } else {
                    site_level = true;
                    for (&s, row) in &rows.sites {
                        max_site = max_site.max(s);
                        if s >= 1 && s <= cfg.sites {
                            out.push(SynthSite {
                                meta: (*row).clone(),
                            });
                        }
                    }
                }
            }
            if site_level && cfg.sites > max_site {
                return Err(Error::NotInDesign(format!(
                    "{} sites per well asked for, but plate {plate} of experiment {experiment} has at most {max_site} in the design",
                    cfg.sites
                )));
            }
        }
    }
    if out.is_empty() {
        return Err(Error::NotInDesign(
            "the configuration selects no sites of the design".into(),
        ));
    }
    Ok(out)
}

/// The first `cap` wells in sorted order, always including the negative control well.
fn pick_wells<'a>(sorted: &[&'a str], cap: Option<u32>) -> Vec<&'a str> {
    let Some(cap) = cap.map(|c| c as usize) else {
        return sorted.to_vec();
    };
    if cap >= sorted.len() {
        return sorted.to_vec();
    }
    let mut picked: Vec<&str> = sorted[..cap].to_vec();
    if sorted.contains(&NEGATIVE_CONTROL_WELL) && !picked.contains(&NEGATIVE_CONTROL_WELL) {
        picked.pop();
        picked.push(NEGATIVE_CONTROL_WELL);
        picked.sort_unstable();
    }
    picked
}

fn known_list(experiments: &BTreeMap<&str, Plates<'_>>) -> String {
    let names: Vec<&str> = experiments.keys().copied().collect();
    if names.len() <= 8 {
        names.join(", ")
    } else {
        format!("{}, ... {} in all", names[..8].join(", "), names.len())
    }
}

/// `prefix/metadata.csv` content: the RxRx1 dialect, one row per selected site.
pub(crate) fn metadata_csv(design: &MetadataTable, sites: &[SynthSite]) -> Result<Vec<u8>> {
    let csv_err = |e: csv::Error| Error::Csv(e.to_string());
    let mut w = csv::Writer::from_writer(Vec::new());
    let mut header: Vec<&str> = vec![
        "site_id",
        "well_id",
        "cell_type",
        "dataset",
        "experiment",
        "plate",
        "well",
        "site",
        "well_type",
        "sirna_id",
    ];
    header.extend(design.extra_columns().iter().map(String::as_str));
    w.write_record(&header).map_err(csv_err)?;
    for site in sites {
        let m = &site.meta;
        let s = m.site.unwrap_or(1);
        let mut record = vec![
            format!("{}_{}_{}_{}", m.experiment, m.plate, m.well, s),
            format!("{}_{}_{}", m.experiment, m.plate, m.well),
            m.cell_type.clone(),
            m.dataset.clone().unwrap_or_default(),
            m.experiment.clone(),
            m.plate.to_string(),
            m.well.clone(),
            s.to_string(),
            m.well_type.clone(),
            m.sirna_id.map(|v| v.to_string()).unwrap_or_default(),
        ];
        for i in 0..design.extra_columns().len() {
            record.push(m.extra.get(i).cloned().flatten().unwrap_or_default());
        }
        w.write_record(&record).map_err(csv_err)?;
    }
    w.into_inner().map_err(|e| Error::Csv(e.to_string()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn real_design() -> MetadataTable {
        let t = crate::rxrx1_design().unwrap();
        assert!(
            t.row_errors.is_empty(),
            "{:?}",
            &t.row_errors[..t.row_errors.len().min(5)]
        );
        assert_eq!(t.len(), 125_510);
        t
    }

    #[test]
    fn selects_from_the_real_design() {
        let design = real_design();
        let cfg = SynthConfig {
            experiments: Some(vec!["HUVEC-01".into()]),
            plates: 2,
            wells: Some(3),
            sites: 2,
            ..SynthConfig::default()
        };
        let sites = select_sites(&design, &cfg).unwrap();
        assert_eq!(sites.len(), 12);
        for plate in [1, 2] {
            let wells: BTreeSet<&str> = sites
                .iter()
                .filter(|s| s.meta.plate == plate)
                .map(|s| s.meta.well.as_str())
                .collect();
            assert_eq!(wells.len(), 3, "plate {plate}: {wells:?}");
            assert!(wells.contains("B02"), "plate {plate}: {wells:?}");
        }
        assert!(
            sites
                .iter()
                .all(|s| s.meta.experiment == "HUVEC-01" && matches!(s.meta.plate, 1 | 2))
        );
        // Ordered by (experiment, plate, well, site).
        let keys: Vec<_> = sites
            .iter()
            .map(|s| (s.meta.plate, s.meta.well.clone(), s.meta.site))
            .collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted);
        let b02 = sites.iter().find(|s| s.meta.well == "B02").unwrap();
        assert_eq!(b02.meta.well_type, "negative_control");

        let err = select_sites(
            &design,
            &SynthConfig {
                experiments: Some(vec!["HUVEC-99".into()]),
                ..SynthConfig::default()
            },
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("experiment HUVEC-99 is not in the design"),
            "{err}"
        );

        // Default: the first experiment by name, plate 1, every well, both sites.
        let all = select_sites(&design, &SynthConfig::default()).unwrap();
        assert!(
            all.iter()
                .all(|s| s.meta.experiment == "HEPG2-01" && s.meta.plate == 1)
        );
        assert!(all.len() > 500, "{}", all.len());

        let too_many = SynthConfig {
            plates: 5,
            ..SynthConfig::default()
        };
        assert!(
            select_sites(&design, &too_many)
                .unwrap_err()
                .to_string()
                .contains("only 4")
        );
        let three_sites = SynthConfig {
            sites: 3,
            ..SynthConfig::default()
        };
        assert!(select_sites(&design, &three_sites).is_err());
    }

    #[test]
    fn negative_control_is_always_kept() {
        let wells = ["B02", "B03", "B04", "C02"];
        assert_eq!(pick_wells(&wells, Some(2)), ["B02", "B03"]);
        let wells = ["A01", "A02", "B02", "B03"];
        assert_eq!(pick_wells(&wells, Some(1)), ["B02"]);
        assert_eq!(pick_wells(&wells, Some(2)), ["A01", "B02"]);
        assert_eq!(pick_wells(&wells, None).len(), 4);
        let no_control = ["C03", "C04"];
        assert_eq!(pick_wells(&no_control, Some(1)), ["C03"]);
    }

    #[test]
    fn well_level_rows_expand_to_sites_and_csv_round_trips() {
        let mut design = MetadataTable::new();
        design
            .add_csv(
                "kaggle/train.csv",
                b"id_code,experiment,plate,well,sirna\nE-1_1_B03,E-1,1,B03,5\nE-1_1_B04,E-1,1,B04,6\n",
            )
            .unwrap();
        let cfg = SynthConfig {
            sites: 3,
            ..SynthConfig::default()
        };
        let sites = select_sites(&design, &cfg).unwrap();
        assert_eq!(sites.len(), 6);
        let csv = metadata_csv(&design, &sites).unwrap();
        let mut back = MetadataTable::new();
        assert_eq!(back.add_csv("metadata.csv", &csv).unwrap(), 6);
        let text = String::from_utf8(csv).unwrap();
        assert!(text.starts_with(
            "site_id,well_id,cell_type,dataset,experiment,plate,well,site,well_type,sirna_id\n"
        ));
        assert!(
            text.contains("E-1_1_B04_3,E-1_1_B04,E,train,E-1,1,B04,3,treatment,6"),
            "{text}"
        );
    }
}
