//! Tests of [`crate::layout`]: RxRx1, RxRx3 and instrument keys, and template errors.

use super::*;

fn rx() -> LayoutTemplate {
    LayoutTemplate::parse(RXRX1_LAYOUT).unwrap()
}

#[test]
fn matches_rxrx1_keys() {
    let m = rx().match_key("train/HEPG2-01/Plate1/B02_s2_w6.png");
    let KeyMatch::Matched(f) = m else {
        panic!("{m:?}")
    };
    assert_eq!(f.dataset.as_deref(), Some("train"));
    assert_eq!(f.experiment, "HEPG2-01");
    assert_eq!(
        (f.plate, f.well.as_str(), f.site, f.channel),
        (1, "B02", 2, 6)
    );
    assert_eq!(rx().render(&f), "train/HEPG2-01/Plate1/B02_s2_w6.png");
}

#[test]
fn literal_case_does_not_matter() {
    let KeyMatch::Matched(f) = rx().match_key("train/HEPG2-01/plate1/B02_S2_W6.PNG") else {
        panic!()
    };
    assert_eq!((f.plate, f.site, f.channel), (1, 2, 6));
}

#[test]
fn ignores_other_keys() {
    for key in [
        "metadata.csv",
        "train/HEPG2-01/Plate1/B02_s2_w6.png.tmp",
        "train/HEPG2-01/PlateX/B02_s2_w6.png",
        "train/HEPG2-01/Plate1/B02_s_w6.png",
        "train/HEPG2-01/Plate1/sub/B02_s1_w6.png",
        "train/HEPG2-01/Plate1/B02_s1_w6.tif",
    ] {
        assert_eq!(rx().match_key(key), KeyMatch::Ignored, "{key}");
    }
}

#[test]
fn rejects_traversal_control_characters_and_huge_numbers() {
    assert!(matches!(
        rx().match_key("train/../Plate1/B02_s1_w1.png"),
        KeyMatch::Invalid(_)
    ));
    assert!(matches!(
        rx().match_key("train/exp\u{1}/Plate1/B02_s1_w1.png"),
        KeyMatch::Invalid(_)
    ));
    // Any other name is a name: partition paths percent-encode it.
    let KeyMatch::Matched(f) = rx().match_key("train/exp=1 é%'/Plate1/B02_s1_w1.png") else {
        panic!("a name with '=', a space, 'é', '%' and a quote is matched")
    };
    assert_eq!(f.experiment, "exp=1 é%'");
    assert!(matches!(
        rx().match_key("train/HEPG2-01/Plate1234567890/B02_s1_w1.png"),
        KeyMatch::Invalid(_)
    ));
}

#[test]
fn instrument_layouts_name_wells_by_row_and_column_and_sites_by_field() {
    let phenix = LayoutTemplate::parse(
        "{experiment}/Plate{plate}/r{row:02}c{col:02}f{field:02}p{plane:02}-ch{channel}sk1fk1fl1.tiff",
    )
    .unwrap();
    let key = "BR00117035/Plate1/r02c03f04p01-ch5sk1fk1fl1.tiff";
    let KeyMatch::Matched(f) = phenix.match_key(key) else {
        panic!("{key}")
    };
    assert_eq!(
        (f.well.as_str(), f.site, f.plane, f.channel, f.plate),
        ("B03", 4, Some(1), 5, 1)
    );
    assert_eq!(phenix.render(&f), key);
    // Row 30 of a 1536-well plate is AD.
    let KeyMatch::Matched(f) = phenix.match_key("X/Plate1/r30c27f01p01-ch1sk1fk1fl1.tiff") else {
        panic!()
    };
    assert_eq!(f.well, "AD27");
    for bad in [
        "X/Plate1/r00c01f01p01-ch1sk1fk1fl1.tiff",
        "X/Plate1/r33c01f01p01-ch1sk1fk1fl1.tiff",
        "X/Plate1/r01c49f01p01-ch1sk1fk1fl1.tiff",
    ] {
        assert!(
            matches!(phenix.match_key(bad), KeyMatch::Invalid(_)),
            "{bad}"
        );
    }
    let ixm = LayoutTemplate::parse("{experiment}/{plate}_{well}_s{site}_w{channel}.tif").unwrap();
    let KeyMatch::Matched(f) = ixm.match_key("exp1/3_B02_s1_w2.tif") else {
        panic!()
    };
    assert_eq!(
        (f.plate, f.well.as_str(), f.site, f.channel),
        (3, "B02", 1, 2)
    );
    for bad in [
        "{experiment}/Plate{plate}/{well}r{row}c{col}_s{site}_w{channel}.png",
        "{experiment}/Plate{plate}/r{row}_s{site}_w{channel}.png",
        "{experiment}/Plate{plate}/{well}_s{site}f{field}_w{channel}.png",
        "{experiment}/Plate{plate}/{well}_w{channel}.png",
        "{experiment:02}/Plate{plate}/{well}_s{site}_w{channel}.png",
        "{experiment}/Plate{plate:0}/{well}_s{site}_w{channel}.png",
    ] {
        assert!(LayoutTemplate::parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn rxrx3_layout_without_dataset() {
    let t =
        LayoutTemplate::parse("{experiment}/Plate{plate}/{well}_s{site}_w{channel}.png").unwrap();
    assert!(!t.has_dataset());
    let KeyMatch::Matched(f) = t.match_key("gene-079/Plate8/H29_s1_w3.png") else {
        panic!()
    };
    assert_eq!(
        (f.experiment.as_str(), f.plate, f.well.as_str()),
        ("gene-079", 8, "H29")
    );
}

#[test]
fn bad_templates_are_errors() {
    assert!(LayoutTemplate::parse("{experiment}/{plate}{well}_s{site}_w{channel}").is_err());
    assert!(LayoutTemplate::parse("{experiment}/Plate{plate}/{well}_s{site}.png").is_err());
    assert!(LayoutTemplate::parse("{experiment}/{bogus}/{well}_s{site}_w{channel}").is_err());
    assert!(LayoutTemplate::parse("{experiment/Plate{plate}").is_err());
}

#[test]
fn jump_tree_names_plates_by_barcode() {
    let t = LayoutTemplate::parse(JUMP_LAYOUT).unwrap();
    let key = "source_4/images/2021_04_26_Batch1/images/BR00117035__2021-05-02T16_02_51-Measurement1/Images/r16c24f09p01-ch5sk1fk1fl1.tiff";
    let KeyMatch::Matched(f) = t.match_key(key) else {
        panic!("{key}")
    };
    assert_eq!(
        (
            f.dataset.as_deref(),
            f.experiment.as_str(),
            f.plate,
            f.well.as_str(),
            f.site,
            f.channel
        ),
        (Some("source_4"), "BR00117035", 1, "P24", 9, 5)
    );
    // The wildcard never crosses a '/', and the barcode needs its `__`.
    for other in [
        "source_4/images/a/b/images/BR1__t/Images/r01c01f01p01-ch1sk1fk1fl1.tiff",
        "source_4/images/B1/images/BR00117035/Images/r01c01f01p01-ch1sk1fk1fl1.tiff",
    ] {
        assert_eq!(t.match_key(other), KeyMatch::Ignored, "{other}");
    }
    // `{*}` may repeat; every other placeholder may not.
    assert!(LayoutTemplate::parse("{*}/{*}/{experiment}/{well}_s{site}_w{channel}.png").is_ok());
    assert!(LayoutTemplate::parse("{experiment}/{*}{well}_s{site}_w{channel}.png").is_err());
}
