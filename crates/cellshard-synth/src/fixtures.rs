//! Sites and designs shared by the crate's tests.

#![allow(clippy::unwrap_used)]

use cellshard_core::{MetadataTable, SiteMetadata};

/// A treatment site (siRNA 42, site 1) of `experiment`, with its cell type.
pub(crate) fn site(experiment: &str, plate: u32, well: &str) -> SiteMetadata {
    SiteMetadata {
        cell_type: cellshard_core::metadata::cell_type_of(experiment),
        dataset: Some("train".into()),
        experiment: experiment.into(),
        plate,
        well: well.into(),
        site: Some(1),
        well_type: "treatment".into(),
        sirna_id: Some(42),
        extra: vec![],
    }
}

/// A small design: HUVEC-01 plate 1 (wells B02, B03) and plate 2 (B02), two sites per well,
/// and one site of RPE-09 (test set, no siRNA); an extra `plate_group` column.
pub(crate) fn tiny_design() -> MetadataTable {
    let csv = "site_id,well_id,cell_type,dataset,experiment,plate,well,site,well_type,sirna_id,plate_group\n\
               HUVEC-01_1_B02_1,HUVEC-01_1_B02,HUVEC,train,HUVEC-01,1,B02,1,negative_control,1138,2\n\
               HUVEC-01_1_B02_2,HUVEC-01_1_B02,HUVEC,train,HUVEC-01,1,B02,2,negative_control,1138,2\n\
               HUVEC-01_1_B03_1,HUVEC-01_1_B03,HUVEC,train,HUVEC-01,1,B03,1,treatment,513,2\n\
               HUVEC-01_1_B03_2,HUVEC-01_1_B03,HUVEC,train,HUVEC-01,1,B03,2,treatment,513,2\n\
               HUVEC-01_2_B02_1,HUVEC-01_2_B02,HUVEC,train,HUVEC-01,2,B02,1,negative_control,1138,3\n\
               HUVEC-01_2_B02_2,HUVEC-01_2_B02,HUVEC,train,HUVEC-01,2,B02,2,negative_control,1138,3\n\
               RPE-09_1_C04_1,RPE-09_1_C04,RPE,test,RPE-09,1,C04,1,treatment,,0\n";
    let mut t = MetadataTable::new();
    t.add_csv("metadata.csv", csv.as_bytes()).unwrap();
    t
}
