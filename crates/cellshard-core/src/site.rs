//! Keys of the units cellshard works on: a site (one field of view, six channel files)
//! and a plate (the unit of normalization, of work and of rebuild).

use std::fmt;

/// One plate of one experiment.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PlateKey {
    /// Experiment (batch) name, e.g. `HUVEC-01`.
    pub experiment: String,
    /// Plate number within the experiment.
    pub plate: u32,
}

impl fmt::Display for PlateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}_{}", self.experiment, self.plate)
    }
}

/// One imaging site. Orders by plate, then well, then site: the store's row order.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SiteKey {
    /// Experiment (batch) name.
    pub experiment: String,
    /// Plate number.
    pub plate: u32,
    /// Well address, e.g. `B02`.
    pub well: String,
    /// Site number within the well.
    pub site: u32,
}

impl SiteKey {
    /// The RxRx1 site id: `{experiment}_{plate}_{well}_{site}`.
    pub fn site_id(&self) -> String {
        format!(
            "{}_{}_{}_{}",
            self.experiment, self.plate, self.well, self.site
        )
    }

    /// The RxRx1 well id: `{experiment}_{plate}_{well}`.
    pub fn well_id(&self) -> String {
        format!("{}_{}_{}", self.experiment, self.plate, self.well)
    }

    /// The plate the site is on.
    pub fn plate_key(&self) -> PlateKey {
        PlateKey {
            experiment: self.experiment.clone(),
            plate: self.plate,
        }
    }
}

impl fmt::Display for SiteKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}_{}_{}_{}",
            self.experiment, self.plate, self.well, self.site
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_follow_rxrx1() {
        let k = SiteKey {
            experiment: "HUVEC-01".into(),
            plate: 1,
            well: "B02".into(),
            site: 2,
        };
        assert_eq!(k.site_id(), "HUVEC-01_1_B02_2");
        assert_eq!(k.well_id(), "HUVEC-01_1_B02");
        assert_eq!(k.plate_key().to_string(), "HUVEC-01_1");
    }

    #[test]
    fn orders_by_plate_well_site() {
        let a = SiteKey {
            experiment: "E".into(),
            plate: 1,
            well: "C02".into(),
            site: 2,
        };
        let b = SiteKey {
            experiment: "E".into(),
            plate: 2,
            well: "B02".into(),
            site: 1,
        };
        let c = SiteKey {
            experiment: "E".into(),
            plate: 1,
            well: "C02".into(),
            site: 1,
        };
        let mut v = vec![a.clone(), b.clone(), c.clone()];
        v.sort();
        assert_eq!(v, vec![c, a, b]);
    }
}
