//! Tests of [`crate::metadata`]: the RxRx1, RxRx3, Kaggle and JUMP dialects, joins and
//! bad rows.

use super::*;

fn key(e: &str, p: u32, w: &str, s: u32) -> SiteKey {
    SiteKey {
        experiment: e.into(),
        plate: p,
        well: w.into(),
        site: s,
    }
}

#[test]
fn rxrx1_dialect_per_site() {
    let csv = "site_id,well_id,cell_type,dataset,experiment,plate,well,site,well_type,sirna_id,plate_group\n\
               HEPG2-01_1_B02_1,HEPG2-01_1_B02,HEPG2,train,HEPG2-01,1,B02,1,negative_control,1138,1\n\
               HEPG2-08_1_B03_2,HEPG2-08_1_B03,HEPG2,test,HEPG2-08,1,B03,2,treatment,,1\n";
    let mut t = MetadataTable::new();
    assert_eq!(t.add_csv("metadata.csv", csv.as_bytes()).unwrap(), 2);
    assert_eq!(t.extra_columns(), ["plate_group"]);
    let Lookup::Found(m) = t.lookup(&key("HEPG2-01", 1, "B02", 1)) else {
        panic!()
    };
    assert_eq!(
        (m.well_type.as_str(), m.sirna_id),
        ("negative_control", Some(1138))
    );
    assert_eq!(m.extra, vec![Some("1".to_string())]);
    let Lookup::Found(m) = t.lookup(&key("HEPG2-08", 1, "B03", 2)) else {
        panic!()
    };
    assert_eq!(m.sirna_id, None);
    assert_eq!(t.lookup(&key("HEPG2-08", 1, "B03", 1)), Lookup::Missing);
}

#[test]
fn rxrx3_dialect_per_well_keeps_every_column_and_quoted_smiles() {
    let mut t = MetadataTable::new();
    let csv = "well_id,experiment_name,plate,address,gene,treatment,SMILES,concentration,perturbation_type,cell_type\n\
               gene-079_8_AD27,gene-079,8,AD27,EMPTY_control,,,,CONTROL,HUVEC\n\
               compound-001_1_B02,compound-001,1,B02,,SID-17,\"CC(=O)O,c1ccccc1 [Na+].[Cl-]\",2.5,COMPOUND,HUVEC\n";
    assert_eq!(t.add_csv("rxrx3/metadata.csv", csv.as_bytes()).unwrap(), 2);
    assert_eq!(
        t.extra_columns(),
        [
            "gene",
            "treatment",
            "SMILES",
            "concentration",
            "perturbation_type"
        ]
    );
    // One row per well: every site of the well has it.
    for s in [1, 9] {
        let Lookup::Found(m) = t.lookup(&key("gene-079", 8, "AD27", s)) else {
            panic!()
        };
        assert_eq!((m.cell_type.as_str(), m.well.as_str()), ("HUVEC", "AD27"));
        assert_eq!(m.extra[0].as_deref(), Some("EMPTY_control"));
        assert_eq!(m.extra[4].as_deref(), Some("CONTROL"));
    }
    let Lookup::Found(m) = t.lookup(&key("compound-001", 1, "B02", 1)) else {
        panic!()
    };
    assert_eq!(m.extra[2].as_deref(), Some("CC(=O)O,c1ccccc1 [Na+].[Cl-]"));
    assert_eq!(m.extra[3].as_deref(), Some("2.5"));
    assert!(t.row_errors.is_empty(), "{:?}", t.row_errors);
}

#[test]
fn kaggle_dialect_per_well() {
    let mut t = MetadataTable::new();
    t.add_csv(
        "kaggle/train.csv",
        b"id_code,experiment,plate,well,sirna\nHUVEC-01_1_B03,HUVEC-01,1,B03,513\n",
    )
    .unwrap();
    t.add_csv(
        "kaggle/train_controls.csv",
        b"id_code,experiment,plate,well,sirna,well_type\nHUVEC-01_1_B02,HUVEC-01,1,B02,1138,negative_control\n",
    )
    .unwrap();
    for s in [1, 2] {
        let Lookup::Found(m) = t.lookup(&key("HUVEC-01", 1, "B03", s)) else {
            panic!()
        };
        assert_eq!(m.cell_type, "HUVEC");
        assert_eq!(m.dataset.as_deref(), Some("train"));
        assert_eq!((m.well_type.as_str(), m.sirna_id), ("treatment", Some(513)));
    }
    let Lookup::Found(m) = t.lookup(&key("HUVEC-01", 1, "B02", 1)) else {
        panic!()
    };
    assert_eq!(m.well_type, "negative_control");
    assert!(t.extra_columns().is_empty());
}

#[test]
fn bad_rows_are_collected_and_conflicts_flagged() {
    let csv = "experiment,plate,well,site,well_type,note\n\
               E,1,B02,1,treatment,\"a, quoted note\"\n\
               E,x,B02,1,treatment,n\n\
               E,1,B03\n\
               E,1,B02,1,negative_control,n\n";
    let mut t = MetadataTable::new();
    t.add_csv("m.csv", csv.as_bytes()).unwrap();
    assert_eq!(t.row_errors.len(), 3, "{:?}", t.row_errors);
    assert!(
        t.row_errors[0].to_string().starts_with("m.csv:3: plate"),
        "{:?}",
        t.row_errors
    );
    assert!(matches!(
        t.lookup(&key("E", 1, "B02", 1)),
        Lookup::Conflict(_)
    ));
}

#[test]
fn empty_and_headerless_files() {
    let mut t = MetadataTable::new();
    assert_eq!(t.add_csv("empty.csv", b"").unwrap(), 0);
    assert_eq!(t.add_csv("bad.csv", b"a,b,c\n1,2,3\n").unwrap(), 0);
    assert_eq!(
        t.add_csv("header.csv", b"experiment,plate,well,site\n")
            .unwrap(),
        0
    );
    assert_eq!(t.row_errors.len(), 2, "{:?}", t.row_errors);
    assert!(
        t.row_errors[0]
            .to_string()
            .starts_with("empty.csv: the file is empty"),
        "{:?}",
        t.row_errors
    );
    assert!(
        t.row_errors[1]
            .to_string()
            .contains("lacks required columns"),
        "{:?}",
        t.row_errors
    );
}

#[test]
fn jump_load_data_joins_wells_plates_and_compounds() {
    let mut t = MetadataTable::new();
    let load = "Metadata_Source,Metadata_Plate,Metadata_Well,Metadata_Site,FileName_OrigDNA,PathName_OrigDNA,FileName_OrigMito,PathName_OrigMito\n\
                source_4,BR00117035,A01,1,r01c01f01p01-ch5sk1fk1fl1.tiff,/x/Images,r01c01f01p01-ch1sk1fk1fl1.tiff,/x/Images\n\
                source_4,BR00117035,A01,2,r01c01f02p01-ch5sk1fk1fl1.tiff,/x/Images,r01c01f02p01-ch1sk1fk1fl1.tiff,/x/Images\n";
    let well = "Metadata_Source,Metadata_Plate,Metadata_Well,Metadata_JCP2022\n\
                source_4,BR00117035,A01,JCP2022_085227\n";
    let plate = "Metadata_Source,Metadata_Batch,Metadata_Plate,Metadata_PlateType\n\
                 source_4,2021_04_26_Batch1,BR00117035,COMPOUND\n";
    let compound = "Metadata_JCP2022,Metadata_InChIKey,Metadata_SMILES\n\
                    JCP2022_085227,AAAA-BBBB-N,\"CC(C)O,N\"\n\
                    JCP2022_000001,CCCC-DDDD-N,C\n";
    assert_eq!(t.add_csv("load_data.csv", load.as_bytes()).unwrap(), 2);
    assert_eq!(t.add_csv("well.csv", well.as_bytes()).unwrap(), 1);
    assert_eq!(t.add_csv("plate.csv", plate.as_bytes()).unwrap(), 1);
    assert_eq!(t.add_csv("compound.csv", compound.as_bytes()).unwrap(), 2);
    t.finish();
    assert!(t.row_errors.is_empty(), "{:?}", t.row_errors);
    let Lookup::Found(m) = t.lookup(&key("BR00117035", 1, "A01", 2)) else {
        panic!()
    };
    let col = |name: &str| {
        let i = t.extra_columns().iter().position(|c| c == name).unwrap();
        m.extra.get(i).cloned().flatten()
    };
    // Original column names are kept, the barcode included.
    assert_eq!(col("Metadata_Plate").as_deref(), Some("BR00117035"));
    assert_eq!(col("Metadata_JCP2022").as_deref(), Some("JCP2022_085227"));
    assert_eq!(col("Metadata_Batch").as_deref(), Some("2021_04_26_Batch1"));
    assert_eq!(col("Metadata_SMILES").as_deref(), Some("CC(C)O,N"));
    assert_eq!(
        col("FileName_OrigDNA").as_deref(),
        Some("r01c01f02p01-ch5sk1fk1fl1.tiff")
    );
    // load_data names each channel's file.
    assert_eq!(
        t.channel_of_file("BR00117035", "r01c01f02p01-ch5sk1fk1fl1.tiff"),
        Some("DNA")
    );
    assert_eq!(
        t.channel_of_file("BR00117035", "r01c01f02p01-ch1sk1fk1fl1.tiff"),
        Some("Mito")
    );
    assert_eq!(
        t.channel_of_file("BR00117036", "r01c01f02p01-ch1sk1fk1fl1.tiff"),
        None
    );
    // A lookup table sharing no column with earlier files is unusable, and says so.
    let mut u = MetadataTable::new();
    assert_eq!(u.add_csv("compound.csv", compound.as_bytes()).unwrap(), 0);
    assert!(
        u.row_errors[0]
            .to_string()
            .contains("a column of an earlier file to join on"),
        "{:?}",
        u.row_errors
    );
}
