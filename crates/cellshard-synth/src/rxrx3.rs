//! An RxRx3-shaped design: 1536-well plates (rows `A`..`AF`, columns 1..48) in RxRx3's
//! `metadata.csv` dialect (one row per well: `well_id, experiment_name, plate, address,
//! gene, treatment, SMILES, concentration, perturbation_type, cell_type`), for the
//! `{experiment}/Plate{plate}/{well}_s{site}_w{channel}.png` layout.

use cellshard_core::MetadataTable;
use cellshard_core::plate::{PlateFormat, well_name};

use crate::Result;

/// RxRx3's bucket layout (no dataset directory).
pub const RXRX3_LAYOUT: &str = "{experiment}/Plate{plate}/{well}_s{site}_w{channel}.png";

/// The experiment of the synthetic RxRx3 design.
pub const RXRX3_EXPERIMENT: &str = "gene-001";

/// A design of `plates` 1536-well plates of one CRISPR experiment: column 1 holds the
/// controls, the other wells knock out one of a few dozen genes each, and every tenth
/// well is a compound with its SMILES (quoted: it has commas).
pub fn rxrx3_design(plates: u32) -> Result<MetadataTable> {
    let f = PlateFormat::W1536;
    let mut csv = String::from(
        "well_id,experiment_name,plate,address,gene,treatment,SMILES,concentration,perturbation_type,cell_type\n",
    );
    for plate in 1..=plates.max(1) {
        for r in 0..f.rows {
            for c in 0..f.cols {
                let well = well_name(r, c);
                let id = format!("{RXRX3_EXPERIMENT}_{plate}_{well}");
                let i = r * f.cols + c;
                let row = if c == 0 {
                    format!("{id},{RXRX3_EXPERIMENT},{plate},{well},EMPTY_control,,,,CONTROL,HUVEC")
                } else if i.is_multiple_of(10) {
                    format!(
                        "{id},{RXRX3_EXPERIMENT},{plate},{well},,compound-{:03},\"CC(=O)O,c1ccccc1N{}\",{}.0,COMPOUND,HUVEC",
                        i % 97,
                        i % 7,
                        1 + i % 5
                    )
                } else {
                    format!(
                        "{id},{RXRX3_EXPERIMENT},{plate},{well},GENE{:03},,,,CRISPR,HUVEC",
                        i % 40
                    )
                };
                csv.push_str(&row);
                csv.push('\n');
            }
        }
    }
    let mut design = MetadataTable::new();
    design.add_csv("rxrx3/metadata.csv", csv.as_bytes())?;
    Ok(design)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plate_of_1536_wells_with_controls_genes_and_compounds() {
        let d = rxrx3_design(1).unwrap();
        assert_eq!(d.len(), 1536);
        assert_eq!(
            d.extra_columns(),
            [
                "gene",
                "treatment",
                "SMILES",
                "concentration",
                "perturbation_type"
            ]
        );
        let wells: Vec<&str> = d.rows().map(|r| r.well.as_str()).collect();
        assert!(wells.contains(&"AF48") && wells.contains(&"AD27"));
        assert!(
            d.rows()
                .any(|r| r.extra[2].as_deref().is_some_and(|s| s.contains(',')))
        );
    }
}
